//! The run marker: a file that exists while the gateway controls the site, so that a restart
//! after a crash or `kill -9` knows the previous run ended without its graceful shutdown.

use std::path::{Path, PathBuf};

/// A run in progress (see the module doc).
#[derive(Debug)]
pub struct RunMarker {
    path: PathBuf,
}

impl RunMarker {
    /// Create the marker at `path`. Returns it and whether one was already there (the previous
    /// run ended uncleanly: crash, power loss, `kill -9`).
    ///
    /// # Errors
    /// When the marker cannot be written.
    pub fn begin(path: impl AsRef<Path>) -> std::io::Result<(Self, bool)> {
        let path = path.as_ref().to_path_buf();
        let unclean = path.exists();
        std::fs::write(&path, format!("pid {}\n", std::process::id()))?;
        Ok((Self { path }, unclean))
    }

    /// The marker's path.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run ended cleanly: remove the marker.
    ///
    /// # Errors
    /// When it cannot be removed.
    pub fn finish(self) -> std::io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_left_behind_is_an_unclean_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ems.running");
        let (m, unclean) = RunMarker::begin(&p).unwrap();
        assert!(!unclean);
        m.finish().unwrap();
        let (m, unclean) = RunMarker::begin(&p).unwrap();
        assert!(!unclean, "a clean finish leaves nothing behind");
        drop(m); // a crash: never finished
        let (_m, unclean) = RunMarker::begin(&p).unwrap();
        assert!(unclean);
    }
}
