//! The store's error helper, shared by the store, its schema migrations and its history part.

use crate::ports::StoreError;
use std::fmt::Display;
use std::path::Path;

/// A [`StoreError`] naming the file and the operation.
pub(super) fn store_err(path: &Path, op: &str, e: impl Display) -> StoreError {
    StoreError(format!("{}: {op}: {e}", path.display()))
}
