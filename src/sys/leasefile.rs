//! Lease files on disk (`/var/run/miniupnpd.leases[6]`, tmpfs): bounded
//! reads and atomic replacement, so LuCI never reads half a file.
//!
//! Owns: [`read`], [`write_atomic`] and [`replace_atomic`] (also used by
//! `sys::uci`). The line formats are `proto::lease`'s. Blocking `std::fs`
//! calls: the files are small and live on tmpfs. Must not import `core`
//! or `daemon`.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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

/// Replaces the file with `contents` atomically, creating its directory
/// if missing. The file gets mode 0600 whatever it had (one written by
/// miniupnpd or an older rupnpd was world-readable).
pub fn write_atomic(path: &Path, contents: &str) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ctx(dir, "create directory", e))?;
    }
    replace_atomic(path, contents.as_bytes(), LEASE_MODE)
}

static TMP_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Writes `data` to a temporary file in the same directory, fsyncs it,
/// renames it over `path` and fsyncs the directory: readers see the old
/// file or the new one, never a mix, and a power cut keeps one of them.
pub fn replace_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
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
        file.sync_all().map_err(|e| ctx(&tmp, "fsync", e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| ctx(path, "rename temporary file over", e))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| ctx(&dir, "fsync directory", e))
    })();
    if result.is_err() {
        // Best effort: the temporary file may already be renamed.
        let _ = fs::remove_file(&tmp);
    }
    result
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
        write_atomic(&path, "TCP:1:10.0.0.1:1:0:a\n").unwrap();
        assert_eq!(read(&path).unwrap(), "TCP:1:10.0.0.1:1:0:a\n");
        // PCP nonces are in it: only root (the daemon, rpcd for LuCI) reads it
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // a file left readable (by miniupnpd, an older rupnpd) is made private
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, "").unwrap();
        assert_eq!(read(&path).unwrap(), "");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // no temporary files are left behind
        assert_eq!(names(&d.0.join("run/sub")), ["miniupnpd.leases"]);
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
        let e = write_atomic(&blocker.join("x"), "a").unwrap_err();
        assert!(e.to_string().contains("blocker"), "{e}");
        assert!(e.to_string().contains("create directory"), "{e}");
    }
}
