//! UCI packages on disk: which file a package is read from, and writing
//! one option back the way `uci commit` does (lock, temp file, rename).
//!
//! Owns: [`Dirs`], [`read`], [`load`] and [`set_option_atomic`]. The
//! syntax is `proto::uci`'s. Blocking `std::fs` calls on small files. Must
//! not import `core` or `daemon`.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::leasefile::{ctx, read_bounded, replace_atomic};
use crate::proto::uci::{self, MAX_FILE_SIZE, Package, SectionRef};

/// Where packages live. Both directories are settable for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    /// Committed configuration (uci's `UCI_CONFDIR`).
    pub confdir: PathBuf,
    /// Runtime override directory (uci's `UCI_CONF2DIR`, uci commit
    /// fb3c234): a package there is used instead of the committed one.
    pub override_dir: PathBuf,
}

impl Default for Dirs {
    fn default() -> Self {
        Dirs {
            confdir: "/etc/config".into(),
            override_dir: "/var/run/uci".into(),
        }
    }
}

impl Dirs {
    /// The file package `name` is read from: `<override_dir>/<name>` if
    /// it exists, else `<confdir>/<name>`.
    pub fn path(&self, name: &str) -> io::Result<PathBuf> {
        if !uci::valid_package(name) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid UCI package name \"{}\"", name.escape_debug()),
            ));
        }
        let over = self.override_dir.join(name);
        match fs::symlink_metadata(&over) {
            Ok(_) => Ok(over),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(self.confdir.join(name)),
            Err(e) => Err(ctx(&over, "stat", e)),
        }
    }
}

/// A package's text and the file it came from (bounded to
/// [`MAX_FILE_SIZE`]). A missing package is a `NotFound` error naming the
/// path.
pub fn read(dirs: &Dirs, package: &str) -> io::Result<(String, PathBuf)> {
    let path = dirs.path(package)?;
    let mut f = File::open(&path).map_err(|e| ctx(&path, "open", e))?;
    let buf = read_bounded(&path, &mut f, MAX_FILE_SIZE as u64)?;
    let text = String::from_utf8(buf).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not UTF-8 text", path.display()),
        )
    })?;
    Ok((text, path))
}

/// [`read`] and parse. A syntax error is an `InvalidData` error saying
/// which file and line.
pub fn load(dirs: &Dirs, package: &str) -> io::Result<(Package, PathBuf)> {
    let (text, path) = read(dirs, package)?;
    let pkg = uci::parse(package, &text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    })?;
    Ok((pkg, path))
}

/// Sets one option in the file at `path` (normally the path [`read`]
/// returned), leaving every other byte as it was. Holds uci's exclusive
/// lock on the file while editing (never waiting more than a few
/// milliseconds for it), writes a temporary file in the same
/// directory with the same mode, fsyncs it, renames it over the file and
/// fsyncs the directory. A symlink is followed, as `uci commit` does.
pub fn set_option_atomic(
    path: &Path,
    section: &SectionRef,
    option: &str,
    value: &str,
) -> io::Result<()> {
    set_options_atomic(path, section, &[(option, value)])
}

/// Sets several options of one section in one atomic write: either every
/// one of them is stored, or (on any error) the file is left as it was.
pub fn set_options_atomic(
    path: &Path,
    section: &SectionRef,
    options: &[(&str, &str)],
) -> io::Result<()> {
    let real = fs::canonicalize(path).map_err(|e| ctx(path, "resolve", e))?;
    let mut f = File::open(&real).map_err(|e| ctx(&real, "open", e))?;
    lock_exclusive(&f).map_err(|e| ctx(&real, "lock", e))?;
    let mode = f
        .metadata()
        .map_err(|e| ctx(&real, "stat", e))?
        .permissions()
        .mode()
        & 0o7777;
    let buf = read_bounded(&real, &mut f, MAX_FILE_SIZE as u64)?;
    // Invalid UTF-8 would not survive the edit byte for byte: refuse it.
    let text = String::from_utf8(buf).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: not UTF-8 text", real.display()),
        )
    })?;
    let mut edited = text.clone();
    for (option, value) in options {
        edited = uci::set_option(&edited, section, option, value).map_err(|e| {
            let kind = match e {
                uci::EditError::Parse(_) => io::ErrorKind::InvalidData,
                _ => io::ErrorKind::InvalidInput,
            };
            io::Error::new(
                kind,
                format!("{}: set {section}.{option}: {e}", real.display()),
            )
        })?;
    }
    if edited == text {
        return Ok(());
    }
    // The lock is released when `f` drops, after the rename.
    replace_atomic(&real, edited.as_bytes(), mode)
}

/// Attempts at uci's lock before a write gives up, [`LOCK_PAUSE`] apart.
/// `uci commit` holds the lock for milliseconds; a process that holds it
/// longer (stuck, or an editor of its own) makes the write fail with
/// `WouldBlock` after at most 8 ms rather than stall the daemon's loop.
const LOCK_TRIES: u32 = 5;
const LOCK_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// flock(LOCK_EX), which `uci commit` also takes on the file it replaces,
/// tried without blocking.
fn lock_exclusive(f: &File) -> io::Result<()> {
    for attempt in 1..=LOCK_TRIES {
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EWOULDBLOCK) if attempt < LOCK_TRIES => std::thread::sleep(LOCK_PAUSE),
            Some(libc::EWOULDBLOCK) => {}
            // Filesystems without locks: go on without, as uci does.
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) => return Ok(()),
            _ => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        "locked by another process (a uci commit?); try again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::leasefile::tests::{TempDir, names};
    use std::fs::Permissions;

    fn dirs(d: &TempDir) -> Dirs {
        let dirs = Dirs {
            confdir: d.0.join("etc/config"),
            override_dir: d.0.join("var/run/uci"),
        };
        fs::create_dir_all(&dirs.confdir).unwrap();
        fs::create_dir_all(&dirs.override_dir).unwrap();
        dirs
    }

    const UPNPD: &str = "# keep me\nconfig upnpd 'config'\n\toption port 5000 # the port\n\toption uuid ''\n\nconfig perm_rule\n\toption action allow\n";

    #[test]
    fn several_options_in_one_write_or_none() {
        let dir = std::env::temp_dir().join(format!("rupnpd-uci-multi-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("upnpd");
        let original = "# mine\nconfig upnpd 'config'\n\toption enabled '1'\n\tlist x 'a'\n";
        fs::write(&path, original).unwrap();
        let sec = SectionRef::Named("config".into());
        set_options_atomic(&path, &sec, &[("enabled", "0"), ("secure_mode", "1")]).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# mine\nconfig upnpd 'config'\n"),
            "{text}"
        );
        assert!(text.contains("\toption enabled '0'\n"), "{text}");
        assert!(text.contains("\toption secure_mode '1'\n"), "{text}");
        // the second edit fails (a list): nothing of the first is stored
        let before = fs::read_to_string(&path).unwrap();
        let bad = "config upnpd 'config'\n\toption enabled '1'\n\tlist secure_mode 'x'\n";
        fs::write(&path, bad).unwrap();
        set_options_atomic(&path, &sec, &[("enabled", "0"), ("secure_mode", "1")]).unwrap_err();
        assert_eq!(fs::read_to_string(&path).unwrap(), bad);
        assert_ne!(before, bad);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn override_dir_wins() {
        let d = TempDir::new("uci-override");
        let dirs = dirs(&d);
        fs::write(dirs.confdir.join("upnpd"), UPNPD).unwrap();
        let (text, path) = read(&dirs, "upnpd").unwrap();
        assert_eq!(text, UPNPD);
        assert_eq!(path, dirs.confdir.join("upnpd"));
        fs::write(dirs.override_dir.join("upnpd"), "config upnpd 'config'\n").unwrap();
        let (pkg, path) = load(&dirs, "upnpd").unwrap();
        assert_eq!(path, dirs.override_dir.join("upnpd"));
        assert_eq!(pkg.name, "upnpd");
        assert_eq!(pkg.sections.len(), 1);
    }

    #[test]
    fn read_errors_name_the_file() {
        let d = TempDir::new("uci-errors");
        let dirs = dirs(&d);
        let e = read(&dirs, "upnpd").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("etc/config/upnpd: open"), "{e}");
        let e = read(&dirs, "../passwd").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        fs::write(dirs.confdir.join("upnpd"), "config upnpd\n\tbogus line\n").unwrap();
        let e = load(&dirs, "upnpd").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            e.to_string()
                .ends_with("etc/config/upnpd: line 2: invalid command \"bogus\" (expected package, config, option or list)"),
            "{e}"
        );
        fs::write(dirs.confdir.join("upnpd"), b"config t\n\toption a \xff\n").unwrap();
        assert!(
            read(&dirs, "upnpd")
                .unwrap_err()
                .to_string()
                .contains("not UTF-8")
        );
        let f = File::create(dirs.confdir.join("upnpd")).unwrap();
        f.set_len(MAX_FILE_SIZE as u64 + 1).unwrap();
        assert!(
            read(&dirs, "upnpd")
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }

    #[test]
    fn set_option_keeps_everything_else() {
        let d = TempDir::new("uci-set");
        let dirs = dirs(&d);
        let path = dirs.confdir.join("upnpd");
        fs::write(&path, UPNPD).unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o600)).unwrap();
        let uuid = "2b0a1d3e-6f7c-4e1a-9d2b-0c4f5e6a7b8c";
        set_option_atomic(&path, &SectionRef::Named("config".into()), "uuid", uuid).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            UPNPD.replace("uuid ''", &format!("uuid '{uuid}'"))
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let rule = SectionRef::parse("@perm_rule[-1]").unwrap();
        set_option_atomic(&path, &rule, "comment", "it's mine").unwrap();
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .ends_with("\toption action allow\n\toption comment 'it'\\''s mine'\n")
        );
        assert_eq!(names(&dirs.confdir), ["upnpd"]);
    }

    #[test]
    fn set_option_follows_symlinks() {
        let d = TempDir::new("uci-link");
        let dirs = dirs(&d);
        let real = d.0.join("real-upnpd");
        fs::write(&real, UPNPD).unwrap();
        let link = dirs.confdir.join("upnpd");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_option_atomic(&link, &SectionRef::Named("config".into()), "port", "5001").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(
            fs::read_to_string(&real)
                .unwrap()
                .contains("\toption port '5001' # the port\n")
        );
    }

    /// Another holder of uci's lock makes the write fail at once, the
    /// file untouched; released, the write goes through.
    #[test]
    fn a_held_lock_fails_the_write_without_waiting() {
        let d = TempDir::new("uci-lock");
        let path = d.0.join("upnpd");
        fs::write(&path, "config upnpd 'config'\n\toption enabled '1'\n").unwrap();
        let holder = File::open(&path).unwrap();
        // SAFETY: flock on a descriptor the test owns.
        assert_eq!(unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_SH) }, 0);
        let section = SectionRef::Named("config".into());
        let t = std::time::Instant::now();
        let e = set_option_atomic(&path, &section, "enabled", "0").unwrap_err();
        assert!(t.elapsed() < std::time::Duration::from_millis(500));
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(
            e.to_string()
                .contains("upnpd: lock: locked by another process"),
            "{e}"
        );
        assert!(fs::read_to_string(&path).unwrap().contains("enabled '1'"));
        drop(holder);
        set_option_atomic(&path, &section, "enabled", "0").unwrap();
        assert!(fs::read_to_string(&path).unwrap().contains("enabled '0'"));
    }

    #[test]
    fn set_option_errors() {
        let d = TempDir::new("uci-set-err");
        let dirs = dirs(&d);
        let path = dirs.confdir.join("upnpd");
        let e =
            set_option_atomic(&path, &SectionRef::Named("config".into()), "a", "b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("upnpd: resolve"), "{e}");
        fs::write(&path, UPNPD).unwrap();
        let e = set_option_atomic(&path, &SectionRef::Named("nope".into()), "a", "b").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string()
                .ends_with("upnpd: set nope.a: no section nope"),
            "{e}"
        );
        // unchanged on failure, and nothing left behind
        assert_eq!(fs::read_to_string(&path).unwrap(), UPNPD);
        assert_eq!(names(&dirs.confdir), ["upnpd"]);
    }
}
