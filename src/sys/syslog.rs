//! Logging to syslog: RFC 3164 datagrams on `/dev/log`, or lines on
//! stderr when there is no syslog (or `--stderr` is given).
//!
//! Owns: the `log::Log` implementation. We write the datagrams ourselves
//! rather than use the `syslog` crate (≈55 KiB on a router): the format is
//! one line, `<PRI>Mmm dd hh:mm:ss tag[pid]: message`, and logd/rsyslog
//! read exactly that from `/dev/log`.
//!
//! Logging never blocks the loop and never stops working:
//! - each line is sent to the socket's path (`sendto`), not over a
//!   connection, so when logd restarts and creates a new `/dev/log` the
//!   next line reaches the new one;
//! - the socket is non-blocking: while logd's queue is full (logd busy or
//!   stuck) lines are dropped and counted, and the count is logged with
//!   the next line that gets through;
//! - while nothing listens on the path (logd restarting), lines go to
//!   stderr, which procd also forwards to syslog.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// syslog facility "daemon" (RFC 3164 §4.1.1).
const FACILITY_DAEMON: u8 = 3;
/// Longest message sent in one datagram; longer ones are cut.
const MAX_LINE: usize = 1024;
/// Where syslog daemons (logd, rsyslog, syslog-ng) listen.
pub const DEV_LOG: &str = "/dev/log";

struct Syslog {
    /// `None`: stderr only.
    target: Option<(UnixDatagram, PathBuf)>,
    /// Lines dropped because the syslog daemon's queue was full, not yet
    /// reported.
    dropped: AtomicU32,
    tag: String,
}

static LOGGER: OnceLock<Syslog> = OnceLock::new();

fn severity(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `Mmm dd hh:mm:ss` in local time, as RFC 3164 §4.1.2 asks.
fn timestamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    // SAFETY: time(NULL) and localtime_r with a valid out-pointer are
    // thread-safe and cannot fail in a way that leaves `tm` unset.
    let tm = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec
    )
}

/// What became of one datagram.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The receiver's queue is full: the line is dropped.
    Busy,
    /// Nobody listens on the path (logd is restarting or absent).
    Absent,
}

fn send(sock: &UnixDatagram, path: &Path, line: &str) -> Sent {
    match sock.send_to(line.as_bytes(), path) {
        Ok(_) => Sent::Yes,
        // EAGAIN: the queue is full. ENOBUFS: the same, on some kernels.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Busy,
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Sent::Busy,
        Err(_) => Sent::Absent,
    }
}

impl Syslog {
    fn datagram(&self, level: Level, msg: &str) -> String {
        let pri = FACILITY_DAEMON * 8 + severity(level);
        format!("<{pri}>{} {}: {msg}", timestamp(), self.tag)
    }

    /// Sends one line; false if it has to go elsewhere (stderr).
    fn to_syslog(&self, sock: &UnixDatagram, path: &Path, level: Level, msg: &str) -> bool {
        let n = self.dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            let note = format!("{n} log lines dropped: the syslog daemon did not keep up");
            if send(sock, path, &self.datagram(Level::Warn, &note)) != Sent::Yes {
                self.dropped.fetch_add(n, Ordering::Relaxed);
            }
        }
        match send(sock, path, &self.datagram(level, msg)) {
            Sent::Yes => true,
            Sent::Busy => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Sent::Absent => false,
        }
    }
}

impl Log for Syslog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut msg = record.args().to_string();
        // One record is one line: a client's text can never forge another.
        msg.retain(|c| !c.is_control());
        if msg.len() > MAX_LINE {
            let mut cut = MAX_LINE;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        if let Some((sock, path)) = &self.target {
            if self.to_syslog(sock, path, record.level(), &msg) {
                return;
            }
        }
        // One write(2) per line: stderr is unbuffered, and `writeln!` on
        // it writes each formatted piece with a system call of its own.
        let line = format!(
            "{} {}: {msg}\n",
            record.level().as_str().to_ascii_lowercase(),
            self.tag
        );
        let _ = io::stderr().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Debug lines on or off (`log_output`, `--debug`), at start and on every
/// reload.
pub fn set_debug(debug: bool) {
    log::set_max_level(if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    });
}

/// Installs the logger. `socket` is the syslog daemon's datagram socket
/// (normally [`DEV_LOG`]); `None` logs to stderr only.
pub fn init(debug: bool, socket: Option<PathBuf>) {
    let target = socket.and_then(|path| {
        let sock = UnixDatagram::unbound().ok()?;
        sock.set_nonblocking(true).ok()?;
        Some((sock, path))
    });
    let logger = LOGGER.get_or_init(|| Syslog {
        target,
        dropped: AtomicU32::new(0),
        tag: format!("rupnpd[{}]", std::process::id()),
    });
    if log::set_logger(logger).is_ok() {
        set_debug(debug);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::leasefile::tests::TempDir;

    fn logger(path: &Path) -> Syslog {
        let sock = UnixDatagram::unbound().unwrap();
        sock.set_nonblocking(true).unwrap();
        Syslog {
            target: Some((sock, path.to_path_buf())),
            dropped: AtomicU32::new(0),
            tag: "rupnpd[1]".into(),
        }
    }

    fn recv(s: &UnixDatagram) -> Option<String> {
        let mut buf = [0u8; 2048];
        s.recv(&mut buf)
            .ok()
            .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    /// A syslog daemon that stops reading costs dropped lines, never a
    /// blocked caller; the loss is reported once it reads again. A new
    /// socket at the path (logd restarted) gets the next line.
    #[test]
    fn never_blocks_and_follows_a_new_socket() {
        let d = TempDir::new("syslog");
        let path = d.0.join("log");
        let logd = UnixDatagram::bind(&path).unwrap();
        logd.set_nonblocking(true).unwrap();
        let l = logger(&path);
        let (sock, p) = l.target.as_ref().unwrap();
        let mut sent = 0;
        // far more than any receive queue holds (net.unix.max_dgram_qlen)
        for i in 0..5000 {
            assert!(l.to_syslog(sock, p, Level::Info, &format!("line {i}")));
            sent += 1;
        }
        let dropped = l.dropped.load(Ordering::Relaxed);
        assert!(dropped > 0 && dropped < sent, "{dropped}");
        let mut got = 0;
        while recv(&logd).is_some() {
            got += 1;
        }
        assert_eq!(got + dropped, sent);
        assert!(l.to_syslog(sock, p, Level::Error, "after"));
        let note = recv(&logd).unwrap();
        assert!(
            note.starts_with("<28>")
                && note.ends_with(&format!(
                    "rupnpd[1]: {dropped} log lines dropped: the syslog daemon did not keep up"
                )),
            "{note}"
        );
        assert!(recv(&logd).unwrap().ends_with("rupnpd[1]: after"));

        // logd restarts: the old socket goes, a new one appears
        drop(logd);
        std::fs::remove_file(&path).unwrap();
        assert!(!l.to_syslog(sock, p, Level::Info, "while away"));
        let logd = UnixDatagram::bind(&path).unwrap();
        assert!(l.to_syslog(sock, p, Level::Info, "back"));
        assert!(recv(&logd).unwrap().ends_with("rupnpd[1]: back"));
    }
}
