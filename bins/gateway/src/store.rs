//! The gateway's state store: one line in a file, written atomically.
//!
//! Save = write `<file>.tmp`, fsync it, rename over `<file>`, fsync the directory. After a crash
//! either the old or the new line is found, never a torn one. A file that cannot be parsed is
//! never overwritten silently: it is moved aside to `<file>.corrupt` and the error names it.

use ems_core::persist::{DecodeError, PersistedState, StateStore};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// A state-file error, naming the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// Reading or writing failed.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The content could not be parsed (the file was moved to `moved_to`).
    #[error("state file {path}: {source} (kept as {moved_to})")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Where the unreadable content was kept.
        moved_to: PathBuf,
        /// What was wrong.
        source: DecodeError,
    },
}

/// A state store backed by one file.
#[derive(Debug, Clone)]
pub(crate) struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (created on first save).
    #[must_use]
    pub(crate) fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    #[must_use]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: io::Error) -> StoreError {
        StoreError::Io { path: self.path.clone(), source }
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        with_suffix(&self.path, suffix)
    }
}

/// `path` with `suffix` appended to its file name (`gw.state` + `.running`): the files the
/// gateway keeps beside its state file.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

impl StateStore for FileStore {
    type Error = StoreError;

    fn load(&mut self) -> Result<Option<PersistedState>, StoreError> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        match PersistedState::decode(&text) {
            Ok(p) => Ok(Some(p)),
            Err(source) => {
                let moved_to = self.sibling(".corrupt");
                fs::rename(&self.path, &moved_to).map_err(|e| self.io(e))?;
                Err(StoreError::Corrupt { path: self.path.clone(), moved_to, source })
            }
        }
    }

    fn save(&mut self, state: &PersistedState) -> Result<(), StoreError> {
        let tmp = self.sibling(".tmp");
        let line = state.encode();
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| self.io(e))?;
            f.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
            f.write_all(b"\n").map_err(|e| self.io(e))?;
            f.sync_all().map_err(|e| self.io(e))?;
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        // The rename is durable only once the directory entry is on disk.
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ems_core::{State, TripReason};

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FileStore::new(dir.path().join("state"));
        assert!(s.load().unwrap().is_none());
        let mut latched = heapless::Vec::new();
        latched.push(TripReason::InverterFault).unwrap();
        let p = PersistedState { state: State::Stopped, latched };
        s.save(&p).unwrap();
        assert_eq!(s.load().unwrap(), Some(p));
        assert!(!dir.path().join("state.tmp").exists());
    }

    #[test]
    fn corrupt_file_is_kept_aside_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, "ems-state v1 PARK\n").unwrap();
        let mut s = FileStore::new(&path);
        let err = s.load().unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'state'"), "{text}");
        assert!(text.contains(".corrupt"), "{text}");
        assert_eq!(std::fs::read_to_string(dir.path().join("state.corrupt")).unwrap(), "ems-state v1 PARK\n");
    }
}
