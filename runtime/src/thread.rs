//! The control thread: its own OS thread with its own single-threaded tokio runtime, so that
//! the cycle, the E-stop watch and device I/O never share a thread or a runtime with HTTP,
//! WebSocket, SQLite or planning.

use std::future::Future;
use std::thread::JoinHandle;

/// Spawn `f` on a new thread named `ems-control`, inside a fresh current-thread tokio runtime
/// (timer and I/O enabled). The devices are built inside `f`, on that thread, so they need not
/// be `Send`.
///
/// # Errors
/// When the thread or the runtime cannot be created.
pub fn spawn_control<F, Fut, T>(f: F) -> std::io::Result<JoinHandle<std::io::Result<T>>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    std::thread::Builder::new().name("ems-control".to_owned()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(runtime.block_on(f()))
    })
}
