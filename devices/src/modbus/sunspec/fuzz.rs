//! The fuzz entry point (feature `_fuzz`, not for production): decoding and the whole scan over
//! an in-memory register image. Its own module, not part of [`super::decode`], because it runs
//! [`super::discovery`]'s scan and discovery uses decode: in decode it would close a circle.

use super::decode::{decode_block, decode_model};
use super::discovery::scan;
use super::model;

/// Fuzzing entry point (feature `_fuzz`, not for production): never panics, whatever the bytes.
///
/// The first two bytes (big-endian) choose the model: a supported id is used as is, any other
/// value picks a supported model by index. The rest is the register block (pairs of bytes,
/// big-endian). The block is decoded as that model, as the model its own `ID` register names,
/// and, with its `ID` register forced to the model id, as that model again; then the bytes are
/// laid out behind a `SunS` marker at 40000 and scanned ([`scan`]) over an in-memory
/// register image.
pub fn fuzz_entry(data: &[u8]) {
    let Some((head, rest)) = data.split_first_chunk::<2>() else { return };
    let supported = model::supported_models();
    let sel = u16::from_be_bytes(*head);
    let id = if supported.contains(&sel) {
        sel
    } else {
        let n = supported.len().max(1);
        supported.get(usize::from(sel) % n).copied().unwrap_or(1)
    };
    let mut regs: Vec<u16> = rest.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    let _ = decode_model(id, &regs);
    let _ = decode_block(&regs);
    if let Some(first) = regs.first_mut() {
        *first = id;
    }
    let _ = decode_model(id, &regs);

    let mut image = crate::modbus::MemoryRegisters::default();
    image.put(40_000, &[0x5375, 0x6E53]);
    image.put(40_002, &regs);
    let _ = block_on_ready(scan(&mut image));
}

/// Drive a future that never waits (e.g. one over [`crate::modbus::MemoryRegisters`]) to
/// completion without an executor; `None` if it is still pending after many polls.
fn block_on_ready<F: core::future::Future>(f: F) -> Option<F::Output> {
    use std::task::{Context, Poll, Wake, Waker};
    struct Noop;
    impl Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = Waker::from(std::sync::Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut f = core::pin::pin!(f);
    for _ in 0..1024 {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return Some(v);
        }
    }
    None
}
