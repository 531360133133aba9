//! Logging to syslog: RFC 3164 datagrams on `/dev/log`, or lines on
//! stderr when there is no syslog (or `--stderr` is given).
//!
//! Owns: the `log::Log` implementation. We write the datagrams ourselves
//! rather than use the `syslog` crate (≈55 KiB on a router): the format is
//! one line, `<PRI>Mmm dd hh:mm:ss tag[pid]: message`, and logd/rsyslog
//! read exactly that from `/dev/log`.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::OnceLock;

use log::{Level, LevelFilter, Log, Metadata, Record};

/// syslog facility "daemon" (RFC 3164 §4.1.1).
const FACILITY_DAEMON: u8 = 3;
/// Longest message sent in one datagram; longer ones are cut.
const MAX_LINE: usize = 1024;
/// Where syslog daemons (logd, rsyslog, syslog-ng) listen.
pub const DEV_LOG: &str = "/dev/log";

struct Syslog {
    sock: Option<UnixDatagram>,
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
        if let Some(sock) = &self.sock {
            let pri = FACILITY_DAEMON * 8 + severity(record.level());
            let line = format!("<{pri}>{} {}: {msg}", timestamp(), self.tag);
            if sock.send(line.as_bytes()).is_ok() {
                return;
            }
        }
        let _ = writeln!(
            std::io::stderr(),
            "{} {}: {msg}",
            record.level().as_str().to_ascii_lowercase(),
            self.tag
        );
    }

    fn flush(&self) {}
}

/// Installs the logger. `socket` is the syslog daemon's datagram socket
/// (normally [`DEV_LOG`]); with `None`, or when it cannot be reached,
/// messages go to stderr (procd forwards that to syslog too).
pub fn init(debug: bool, socket: Option<PathBuf>) {
    let sock = socket.and_then(|p| {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(p).map(|_| s))
            .ok()
    });
    let logger = LOGGER.get_or_init(|| Syslog {
        sock,
        tag: format!("rupnpd[{}]", std::process::id()),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(if debug {
            LevelFilter::Debug
        } else {
            LevelFilter::Info
        });
    }
}
