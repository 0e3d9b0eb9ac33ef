//! The independent SunSpec device of the interoperability tests: testing/interop/sunspec_server.py
//! on pymodbus, started on a free port with the quirks asked for and killed on drop.
#![allow(clippy::unwrap_used)] // test helper: a server that cannot start should fail the test loudly
#![allow(dead_code)] // each test file uses its own subset

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A running server; `port` is where it listens.
pub(crate) struct PyServer {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python with pymodbus (`EMS_PYTHON`), or `None` after saying the test is skipped.
pub(crate) fn python() -> Option<String> {
    match std::env::var("EMS_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            eprintln!("skipped: EMS_PYTHON is not set (scripts/test installs pymodbus and sets it)");
            None
        }
    }
}

/// Start the server with `quirks` and wait for its READY line.
pub(crate) fn start(py: &str, quirks: &[&str]) -> PyServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testing/interop/sunspec_server.py");
    let mut cmd = Command::new(py);
    cmd.arg(script).arg("--port").arg(port.to_string());
    for q in quirks {
        cmd.arg("--quirk").arg(q);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.starts_with("READY"), "pymodbus server did not start: {line:?}");
    PyServer { child, port }
}
