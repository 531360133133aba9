//! Lease files on disk (`/var/run/miniupnpd.leases[6]`, tmpfs): bounded
//! reads, a [`Writer`] that changes a file in place or replaces it
//! atomically, and the durability each kind of file system gets.
//!
//! Owns: [`read`], [`Writer`] and [`replace_atomic`] (also used by
//! `sys::uci`). The line formats are `proto::lease`'s; what to write is
//! decided by `core::persist`. Blocking `std::fs` calls: the writes are a
//! line or a small file, on tmpfs by default. Must not import `core` or
//! `daemon`.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Largest lease file read (a full table is about 2 × 65535 short lines).
pub const MAX_FILE: u64 = 16 << 20;

/// Mode of the lease files. The IPv4 file holds PCP nonces, which
/// authorise renewals and deletions (RFC 6887 §11.1), so only root reads
/// it — the daemon, and rpcd for LuCI (luci-app-upnp's backend runs as
/// root). miniupnpd's 0644 is not kept.
const LEASE_MODE: u32 = 0o600;

/// An error that says which file and what failed.
pub(crate) fn ctx(path: &Path, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {what}: {e}", path.display()))
}

/// Reads at most `max` bytes of a file, failing if it holds more.
pub(crate) fn read_bounded(path: &Path, file: &mut File, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ctx(path, "read", e))?;
    if buf.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        ));
    }
    Ok(buf)
}

/// The file's text; a missing file reads as empty. Bytes that are not
/// UTF-8 (a client's description written by another daemon) become
/// U+FFFD rather than failing the whole file.
pub fn read(path: &Path) -> io::Result<String> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(ctx(path, "open", e)),
    };
    let buf = read_bounded(path, &mut f, MAX_FILE)?;
    Ok(match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// statfs(2) `f_type` of the file systems that live in memory.
const TMPFS_MAGIC: u32 = 0x0102_1994;
const RAMFS_MAGIC: u32 = 0x8584_58f6;

/// Longest a change to a lease file on flash waits for its fsync.
pub const SYNC_DELAY_MS: u64 = 5000;

/// Whether `dir` is on a file system in memory (tmpfs, ramfs), where
/// fsync has nothing to do and nothing survives a power cut anyway.
fn in_memory(dir: &Path) -> bool {
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a zeroed statfs is a valid out-buffer.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return false;
    }
    // f_type is signed or unsigned, 32 or 64 bits, depending on the
    // target; the magic numbers are 32-bit patterns.
    matches!(st.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC)
}

/// A lease file kept open between writes, so that a turn's changes are
/// a few small writes where they belong, not a new file. What a change
/// survives:
///
/// - on tmpfs (`/var/run`, the default): a written line is in the page
///   cache, which every later reader sees and which a `kill -9` of the
///   daemon cannot lose; fsync has nothing to do there and is never
///   called, and nothing on tmpfs survives a power cut anyway;
/// - elsewhere (a path on flash: overlayfs over jffs2 or UBIFS): the same
///   writes, then one fdatasync at most [`SYNC_DELAY_MS`] after the first
///   unsynced change (the caller asks [`Writer::sync_due`]): a power cut
///   loses at most the last seconds, and the flash is not written and
///   flushed for every change. A whole replacement is synced, renamed
///   over the file and its directory synced.
///
/// A whole replacement is a temporary file renamed over the path, so a
/// reader sees the old file or the new one. An in-place change is one
/// `pwrite` per line: a reader may catch a line half changed, and a
/// `kill -9` inside a write that crosses a page may cut the line written
/// (never a line a client was told about: the reply waits for the write).
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    /// The file at `path` as we last left it, and its length then.
    file: Option<(File, u64)>,
    /// Whether the directory is on tmpfs; learnt at the first replacement.
    volatile: Option<bool>,
    /// On flash: since when (the caller's clock, ms) a change waits for
    /// its fsync.
    unsynced: Option<u64>,
}

impl Writer {
    pub fn new(path: &Path) -> Writer {
        Writer {
            path: path.to_path_buf(),
            file: None,
            volatile: None,
            unsynced: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the file with `data` atomically, creating its directory
    /// if missing. The file gets mode 0600 whatever it had (one written by
    /// miniupnpd or an older rupnpd was world-readable), and stays open
    /// for [`Writer::patch`].
    pub fn replace(&mut self, data: &[u8]) -> io::Result<()> {
        self.file = None;
        let dir = parent(&self.path);
        let volatile = match self.volatile {
            Some(v) => v,
            None => {
                fs::create_dir_all(&dir).map_err(|e| ctx(&dir, "create directory", e))?;
                *self.volatile.insert(in_memory(&dir))
            }
        };
        let file = match replace(&self.path, data, LEASE_MODE, !volatile) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // The directory went away since (tmpfs cleaned up by hand).
                fs::create_dir_all(&dir).map_err(|e| ctx(&dir, "create directory", e))?;
                replace(&self.path, data, LEASE_MODE, !volatile)?
            }
            r => r?,
        };
        self.file = Some((file, data.len() as u64));
        self.unsynced = None;
        Ok(())
    }

    /// Brings the file from `data[..from]` (with `patches` as they were)
    /// to `data`: writes `data[from..]` at `from` and each patch, a range
    /// whose length did not change, where it is. A file that is not as we
    /// left it (replaced, removed or changed by someone else, or a write
    /// of ours failed) is replaced whole instead. `now` is the caller's
    /// clock in ms, for [`Writer::sync_due`].
    pub fn patch(
        &mut self,
        data: &[u8],
        from: usize,
        patches: &[Range<usize>],
        now: u64,
    ) -> io::Result<()> {
        let Some((file, len)) = &mut self.file else {
            return self.replace(data);
        };
        // One fstat: still at the path (a rename over it or an unlink
        // drops the link count to 0) and of the length we left.
        let intact = file
            .metadata()
            .is_ok_and(|m| m.nlink() > 0 && m.len() == *len && *len == from as u64);
        let tail = data.get(from..);
        let pieces: Option<Vec<(&[u8], u64)>> = patches
            .iter()
            .map(|r| data.get(r.clone()).map(|b| (b, r.start as u64)))
            .collect();
        let (Some(tail), Some(pieces), true) = (tail, pieces, intact) else {
            return self.replace(data);
        };
        let written = file.write_all_at(tail, from as u64).and_then(|()| {
            pieces
                .iter()
                .try_for_each(|(b, at)| file.write_all_at(b, *at))
        });
        if let Err(e) = written {
            self.file = None;
            return Err(ctx(&self.path, "write", e));
        }
        *len = data.len() as u64;
        if self.volatile == Some(false) {
            self.unsynced.get_or_insert(now);
        }
        Ok(())
    }

    /// When (the caller's clock, ms) changes on flash are due to be
    /// synced; `None` when nothing waits.
    pub fn sync_due(&self) -> Option<u64> {
        self.unsynced.map(|t| t.saturating_add(SYNC_DELAY_MS))
    }

    /// Syncs the file's data if its time has come.
    pub fn sync_if_due(&mut self, now: u64) -> io::Result<()> {
        if self.sync_due().is_none_or(|due| now < due) {
            return Ok(());
        }
        self.unsynced = None;
        match &self.file {
            Some((f, _)) => f.sync_data().map_err(|e| ctx(&self.path, "fsync", e)),
            None => Ok(()),
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Writes `data` to a temporary file in the same directory, fsyncs it,
/// renames it over `path` and fsyncs the directory: readers see the old
/// file or the new one, never a mix, and a power cut keeps one of them.
pub fn replace_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, true).map(drop)
}

/// [`replace_atomic`], syncing only if `sync`; returns the new file, open
/// for writing.
fn replace(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<File> {
    let dir = parent(path);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let (tmp, mut file) = create_temp(&dir, &name.to_string_lossy(), mode)?;
    let result = (|| {
        file.write_all(data).map_err(|e| ctx(&tmp, "write", e))?;
        // The umask may have narrowed the mode given at creation.
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(|e| ctx(&tmp, "chmod", e))?;
        if sync {
            file.sync_all().map_err(|e| ctx(&tmp, "fsync", e))?;
        }
        fs::rename(&tmp, path).map_err(|e| ctx(path, "rename temporary file over", e))?;
        if sync {
            File::open(&dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| ctx(&dir, "fsync directory", e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(file),
        Err(e) => {
            // Best effort: the temporary file may already be renamed.
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A new, exclusively created `.<name>.rupnpd-<pid>-<n>` in `dir`.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..16 {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{name}.rupnpd-{}-{n}", std::process::id()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(ctx(&tmp, "create temporary file", e)),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists));
    Err(ctx(dir, "create temporary file", e))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> TempDir {
            static N: AtomicU32 = AtomicU32::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let p =
                std::env::temp_dir().join(format!("rupnpd-test-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }

    /// Names in a directory, sorted.
    pub(crate) fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn missing_file_reads_empty() {
        let d = TempDir::new("lease-missing");
        assert_eq!(read(&d.0.join("nope")).unwrap(), "");
    }

    #[test]
    fn write_then_read() {
        let d = TempDir::new("lease-write");
        let path = d.0.join("run/sub/miniupnpd.leases");
        let mut w = Writer::new(&path);
        w.replace(b"TCP:1:10.0.0.1:1:0:a\n").unwrap();
        assert_eq!(read(&path).unwrap(), "TCP:1:10.0.0.1:1:0:a\n");
        // PCP nonces are in it: only root (the daemon, rpcd for LuCI) reads it
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // a file left readable (by miniupnpd, an older rupnpd) is made private
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        w.replace(b"").unwrap();
        assert_eq!(read(&path).unwrap(), "");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temporary files are left behind
        assert_eq!(names(&d.0.join("run/sub")), ["miniupnpd.leases"]);
    }

    /// Changes land in the open file where they belong; a file that is
    /// not as the writer left it is replaced whole.
    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one patch, a range of bytes
    fn patches_in_place_and_replaces_what_changed_under_it() {
        let d = TempDir::new("lease-patch");
        let path = d.0.join("leases");
        let mut w = Writer::new(&path);
        w.replace(b"TCP:1:a\n").unwrap();
        let ino = fs::metadata(&path).unwrap().ino();
        // an append and a line changed where it is: the same file
        w.patch(b"TCP:2:a\nUDP:3:b\n", 8, &[0..8], 0).unwrap();
        assert_eq!(read(&path).unwrap(), "TCP:2:a\nUDP:3:b\n");
        assert_eq!(fs::metadata(&path).unwrap().ino(), ino);
        // a line blanked
        w.patch(b"       \nUDP:3:b\n", 16, &[0..8], 0).unwrap();
        assert_eq!(read(&path).unwrap(), "       \nUDP:3:b\n");
        // someone else's edit (LuCI's `sed -i`, an admin): replaced whole
        fs::write(&path, "UDP:3:b\n").unwrap();
        w.patch(b"       \nUDP:3:b\nTCP:4:c\n", 16, &[], 0).unwrap();
        assert_eq!(read(&path).unwrap(), "       \nUDP:3:b\nTCP:4:c\n");
        // removed: written again
        fs::remove_file(&path).unwrap();
        w.patch(b"       \nUDP:3:b\nTCP:4:c\nTCP:5:d\n", 24, &[], 0)
            .unwrap();
        assert_eq!(read(&path).unwrap(), "       \nUDP:3:b\nTCP:4:c\nTCP:5:d\n");
        // ranges outside the text are not written, the file is made again
        w.patch(b"TCP:6:e\n", 99, &[], 0).unwrap();
        assert_eq!(read(&path).unwrap(), "TCP:6:e\n");
        assert_eq!(names(&d.0), ["leases"]);
    }

    /// fsync only where it buys something: never on tmpfs, at most every
    /// SYNC_DELAY_MS elsewhere.
    #[test]
    fn syncs_on_flash_only_and_later() {
        // the file system of /dev/shm, as the kernel lists it
        let shm_is_tmpfs = fs::read_to_string("/proc/mounts")
            .unwrap()
            .lines()
            .any(|l| {
                l.split(' ').nth(1) == Some("/dev/shm") && l.split(' ').nth(2) == Some("tmpfs")
            });
        assert_eq!(in_memory(Path::new("/dev/shm")), shm_is_tmpfs);
        let d = TempDir::new("lease-sync");
        let on_disk = !in_memory(&d.0);
        let mut w = Writer::new(&d.0.join("leases"));
        w.replace(b"a\n").unwrap();
        assert_eq!(w.sync_due(), None);
        w.patch(b"a\nb\n", 2, &[], 1000).unwrap();
        w.patch(b"a\nb\nc\n", 4, &[], 3000).unwrap();
        if on_disk {
            // the first unsynced change sets the time
            assert_eq!(w.sync_due(), Some(1000 + SYNC_DELAY_MS));
            w.sync_if_due(2000).unwrap();
            assert!(w.sync_due().is_some());
            w.sync_if_due(1000 + SYNC_DELAY_MS).unwrap();
        }
        assert_eq!(w.sync_due(), None);
        if shm_is_tmpfs {
            let path = Path::new("/dev/shm").join(format!("rupnpd-test-{}", std::process::id()));
            let mut w = Writer::new(&path.join("leases"));
            w.replace(b"a\n").unwrap();
            w.patch(b"a\nb\n", 2, &[], 1000).unwrap();
            assert_eq!(w.sync_due(), None);
            let _ = fs::remove_dir_all(&path);
        }
    }

    #[test]
    fn bounded_and_lossy_reads() {
        let d = TempDir::new("lease-read");
        let path = d.0.join("l");
        fs::write(&path, b"TCP:1:10.0.0.1:1:0:caf\xe9\n").unwrap();
        assert_eq!(read(&path).unwrap(), "TCP:1:10.0.0.1:1:0:caf\u{fffd}\n");
        let f = File::create(&path).unwrap();
        f.set_len(MAX_FILE + 1).unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than"), "{e}");
        assert!(e.to_string().starts_with(&path.display().to_string()));
    }

    #[test]
    fn errors_name_the_file() {
        let d = TempDir::new("lease-err");
        // the parent is a file, so the directory cannot be created
        let blocker = d.0.join("blocker");
        fs::write(&blocker, "").unwrap();
        let e = Writer::new(&blocker.join("x")).replace(b"a").unwrap_err();
        assert!(e.to_string().contains("blocker"), "{e}");
        assert!(e.to_string().contains("create directory"), "{e}");
    }
}
