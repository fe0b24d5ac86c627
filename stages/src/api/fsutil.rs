//! The one way `tw` writes a file that others may be reading: into a temp file
//! beside it, synced, then moved into place, so a reader never sees half a
//! file and a crash leaves at most a stray temp file (`*.tmp-*`, which git
//! ignores). The store's manifests, node records and task files and the
//! completion ledger all go through here.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temp path beside `path`, unique in this process and across processes
/// (the pid), and across hosts sharing a file system (the host name).
fn temp_beside(path: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let host = hostname();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!("{name}.tmp-{host}-{}-{n}", std::process::id()))
}

/// This machine's name, which marks what a process leaves on a file system
/// that several hosts share (`-` and `/` replaced, so it can sit between
/// dashes in a file name).
pub fn hostname() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(['-', '/'], "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Write `bytes` to `path` and sync them to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = fs_err::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Write `path` atomically, replacing what is there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = temp_beside(path);
    write_synced(&tmp, bytes)?;
    fs_err::rename(&tmp, path).inspect_err(|_| {
        let _ = fs_err::remove_file(&tmp);
    })
}

/// Write `path` atomically unless it exists: the first writer wins. Returns
/// `false`, writing nothing, when `path` was already there.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let tmp = temp_beside(path);
    write_synced(&tmp, bytes)?;
    // A hard link fails if the target exists, where a rename would replace it.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = fs_err::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot link {} to {}: {e}", tmp.display(), path.display()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_overwrites_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomic(&path, b"1").unwrap();
        write_atomic(&path, b"2").unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"2");
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_first_writer_wins_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        assert!(write_new(&path, b"first").unwrap());
        assert!(!write_new(&path, b"second").unwrap());
        assert_eq!(fs_err::read(&path).unwrap(), b"first");
        assert_eq!(fs_err::read_dir(dir.path()).unwrap().count(), 1);
    }
}
