//! Nothing on the daemon's loop blocks (issue 13 item 9): a syslog daemon
//! that stops reading or restarts (OpenWrt's logd does, recreating
//! `/dev/log`) costs log lines at worst, never service, and logging
//! resumes on the new socket. The daemon logs to a fake `/dev/log`, a
//! Unix datagram socket of the test's own.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// Adds a mapping whose description is `desc`, so the daemon logs a line
/// holding it; the request must be answered.
fn add(bed: &Bed, port: u16, desc: &str) {
    let p = port.to_string();
    let (code, t) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args(&p, "TCP", &p, CLIENT_IP, "600", desc),
    );
    assert_eq!(code, 200, "{t}");
}

/// Every datagram waiting on `logd`.
fn drain(logd: &UnixDatagram) -> Vec<String> {
    logd.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut out = Vec::new();
    while let Ok(n) = logd.recv(&mut buf) {
        out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    out
}

/// Waits up to 5 s for a datagram containing `what`; returns the lines
/// read meanwhile.
fn wait_line(logd: &UnixDatagram, what: &str) -> Vec<String> {
    logd.set_nonblocking(false).unwrap();
    logd.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok(n) = logd.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if seen.last().is_some_and(|l| l.contains(what)) {
                return seen;
            }
        }
    }
    panic!("no log line with {what:?}; got {seen:#?}");
}

#[test]
fn logging_survives_a_stalled_and_a_restarted_logd() {
    let mut bed = Bed::new("slog");
    bed.fw4_start();
    let path = bed.dir.join("log");
    // A logd that does not read: its queue (net.unix.max_dgram_qlen
    // datagrams) is full after the first lines of the start.
    let logd = UnixDatagram::bind(&path).unwrap();
    bed.start_syslog(&path, &[]);
    for i in 0..20 {
        add(&bed, 20000 + i, &format!("stalled {i}"));
    }
    // logd reads again: the next line gets through, after the count of
    // those that were dropped
    let early = drain(&logd);
    assert!(
        early
            .iter()
            .any(|l| l.contains("rupnpd") && l.starts_with('<')),
        "{early:#?}"
    );
    add(&bed, 20100, "after the stall");
    let seen = wait_line(&logd, "after the stall");
    // the count comes first once logd reads again (lines logged after the
    // stall's last reply may have been in the early drain already)
    assert!(
        early
            .iter()
            .chain(&seen)
            .any(|l| l.contains("log lines dropped")),
        "{early:#?}\n{seen:#?}"
    );

    // logd restarts: the socket goes away, then a new one takes the path
    drop(logd);
    std::fs::remove_file(&path).unwrap();
    add(&bed, 20200, "while logd is away");
    // what is logged meanwhile goes to stderr (procd forwards it); the
    // line is written after the reply has left, so it is waited for
    // before the new logd takes the path
    assert!(
        bed.wait_log("while logd is away", Duration::from_secs(5)),
        "{}",
        bed.log()
    );
    let logd = UnixDatagram::bind(&path).unwrap();
    add(&bed, 20300, "after the restart");
    wait_line(&logd, "after the restart");
}
