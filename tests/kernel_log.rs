//! The kernel side of `log_packets` and `log_connections`: packets through
//! a mapping produce kernel log lines with the documented prefixes
//! (`rupnpd pkt: `, limited to 20/s with a burst of 50; `rupnpd conn: `),
//! read back from /dev/kmsg.
//!
//! The kernel drops `log` output from every network namespace but the
//! host's unless the host-wide sysctl `net.netfilter.nf_log_all_netns` is
//! set to 1. [`AllNetns`] sets it and puts the old value back on every exit path:
//! its `Drop` runs on a failing assertion too, and a run killed before
//! that leaves a note in /run that the next run of this test, and
//! scripts/test.sh, use to restore the value.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_log_all_netns";
/// Notes of the old value, one per test process: `<NOTE_PREFIX><pid>`.
const NOTE_DIR: &str = "/run";
const NOTE_PREFIX: &str = "rupnpd-test-nf_log_all_netns.";
/// Serialises this test across checkouts running at once (the sysctl is
/// one for the whole host).
const LOCK: &str = "/run/rupnpd-test-nf_log_all_netns.lock";

/// `net.netfilter.nf_log_all_netns = 1` while it lives, the old value
/// after.
struct AllNetns {
    old: String,
    note: PathBuf,
    _lock: File,
}

impl AllNetns {
    fn set() -> AllNetns {
        let lock = File::create(LOCK).unwrap_or_else(|e| panic!("{LOCK}: {e}"));
        // SAFETY: flock on a descriptor we own; released when it closes.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {LOCK}");
        // A run killed while it held the setting left a note: its old
        // value is the host's, not what the sysctl says now.
        restore_from_dead_runs();
        let old = std::fs::read_to_string(SYSCTL)
            .unwrap_or_else(|e| panic!("{SYSCTL}: {e}"))
            .trim()
            .to_string();
        let note = Path::new(NOTE_DIR).join(format!("{NOTE_PREFIX}{}", std::process::id()));
        std::fs::write(&note, &old).unwrap();
        std::fs::write(SYSCTL, "1").unwrap();
        AllNetns {
            old,
            note,
            _lock: lock,
        }
    }
}

impl Drop for AllNetns {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(SYSCTL, &self.old) {
            eprintln!("restoring {SYSCTL} to {}: {e}", self.old);
            return; // keep the note for scripts/test.sh
        }
        let _ = std::fs::remove_file(&self.note);
    }
}

/// Puts back the value noted by runs that are gone, and removes their
/// notes (what scripts/test.sh does too).
fn restore_from_dead_runs() {
    let Ok(dir) = std::fs::read_dir(NOTE_DIR) else {
        return;
    };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(NOTE_PREFIX)
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if alive(pid) {
            continue;
        }
        if let Ok(v) = std::fs::read_to_string(e.path()) {
            std::fs::write(SYSCTL, v.trim()).unwrap();
        }
        let _ = std::fs::remove_file(e.path());
    }
}

/// The router namespace logs IPv4 and IPv6 through the kernel's syslog
/// logger (`nf_log_syslog`). A fresh namespace selects it when the kernel
/// has it; if it has not been loaded, it is loaded (and unloaded again).
struct SyslogLogger {
    loaded: bool,
}

impl SyslogLogger {
    fn select(bed: &Bed) -> SyslogLogger {
        let list = |bed: &Bed| {
            let o = bed.exec(&bed.r, &["cat", "/proc/net/netfilter/nf_log"]);
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        let mut loaded = false;
        if !list(bed).contains("nf_log_ipv4") {
            let o = std::process::Command::new("modprobe")
                .arg("nf_log_syslog")
                .output();
            loaded = o.is_ok_and(|o| o.status.success());
            assert!(
                list(bed).contains("nf_log_ipv4"),
                "the kernel has no nf_log_syslog:\n{}",
                list(bed)
            );
        }
        for (family, logger) in [("2", "nf_log_ipv4"), ("10", "nf_log_ipv6")] {
            let path = format!("/proc/sys/net/netfilter/nf_log/{family}");
            let o = bed.exec(&bed.r, &["cat", &path]);
            if String::from_utf8_lossy(&o.stdout).trim() != logger {
                // the router's own namespace: gone with the bed
                let o = bed.exec(&bed.r, &["sh", "-c", &format!("echo {logger} > {path}")]);
                assert!(o.status.success(), "selecting {logger} for family {family}");
            }
        }
        SyslogLogger { loaded }
    }
}

impl Drop for SyslogLogger {
    fn drop(&mut self) {
        if self.loaded {
            let _ = std::process::Command::new("modprobe")
                .args(["-r", "nf_log_syslog"])
                .status();
        }
    }
}

/// Kernel log records from the moment it was opened.
struct Kmsg(File);

/// One record of /dev/kmsg: its syslog priority and its text.
struct Record {
    prio: u32,
    text: String,
}

impl Kmsg {
    fn open_at_end() -> Kmsg {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .expect("/dev/kmsg");
        // SAFETY: seeking our own descriptor; SEEK_END skips what is there.
        let rc = unsafe { libc::lseek(f.as_raw_fd(), 0, libc::SEEK_END) };
        assert!(rc >= 0, "seeking /dev/kmsg");
        Kmsg(f)
    }

    /// The records written since the last call.
    fn read(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.0.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    // "prio,seq,usec,flags;text\n" then continuation lines
                    let rec = String::from_utf8_lossy(&buf[..n]);
                    let Some((head, text)) = rec.split_once(';') else {
                        continue;
                    };
                    let prio = head
                        .split(',')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(u32::MAX);
                    let text = text.lines().next().unwrap_or("").to_string();
                    out.push(Record { prio, text });
                }
                // overwritten before we read it: go on with the next one
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("reading /dev/kmsg: {e}"),
            }
        }
        out
    }
}

/// The lines with `prefix` for packets to the LAN host's `proto` port
/// `port` (after the DNAT), among `records`.
fn lines<'a>(records: &'a [Record], prefix: &str, proto: &str, port: u16) -> Vec<&'a Record> {
    let dst = format!(" DST={CLIENT_IP} ");
    let p = format!(" PROTO={proto} ");
    let dpt = format!(" DPT={port} ");
    records
        .iter()
        .filter(|r| {
            r.text.starts_with(prefix)
                && r.text.contains(&dst)
                && r.text.contains(&p)
                && r.text.contains(&dpt)
        })
        .collect()
}

/// Reads the kernel log until `done` holds for everything read so far,
/// or 5 s have passed.
fn collect(kmsg: &mut Kmsg, done: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let mut all = Vec::new();
    let t = Instant::now();
    loop {
        all.extend(kmsg.read());
        if done(&all) || t.elapsed() > Duration::from_secs(5) {
            return all;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn log_packets_and_log_connections_reach_the_kernel_log() {
    let mut bed = Bed::new("klog");
    bed.fw4_start();
    let leases = bed.dir.join("leases");
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption upnp_lease_file '{}'\n\
\toption log_packets '1'\n\toption log_connections '1'\n\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n",
        leases.display()
    ));
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    // ports of this test process only, so the lines are ours
    let tcp = 20000 + (std::process::id() % 20000) as u16;
    let udp = tcp + 1;
    for (port, proto) in [(tcp, "TCP"), (udp, "UDP")] {
        let p = port.to_string();
        let (code, text) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(&p, proto, &p, CLIENT_IP, "600", "klog"),
        );
        assert_eq!(code, 200, "{text}");
    }
    let _logger = SyslogLogger::select(&bed);
    let _all_netns = AllNetns::set();
    let mut kmsg = Kmsg::open_at_end();

    // One TCP connection with data: one `conn` line, and one `pkt` line,
    // for the SYN. Every later packet of the connection is established,
    // and fw4's forward chain accepts those (`ct state vmap`) before its
    // jump to the daemon's chain.
    let t0 = Instant::now();
    assert!(bed.tcp_through(tcp, tcp));
    let got = collect(&mut kmsg, |r| {
        !lines(r, "rupnpd conn: ", "TCP", tcp).is_empty()
            && !lines(r, "rupnpd pkt: ", "TCP", tcp).is_empty()
    });
    let conn = lines(&got, "rupnpd conn: ", "TCP", tcp);
    let pkt = lines(&got, "rupnpd pkt: ", "TCP", tcp);
    assert_eq!(conn.len(), 1, "conn lines for TCP {tcp}");
    assert_eq!(pkt.len(), 1, "pkt lines for TCP {tcp}");
    for r in conn.iter().chain(&pkt) {
        // `level info`: kernel facility, priority 6
        assert_eq!(r.prio, 6, "{}", r.text);
        assert!(r.text.contains(" IN=eth1 OUT=br-lan "), "{}", r.text);
        assert!(r.text.contains(" SYN "), "{}", r.text);
    }

    // More than the burst: 200 datagrams of one flow that nobody answers,
    // so every one is still `ct state new` and reaches the daemon's chain.
    // The `pkt` lines stop at the limit (a burst of 50, then 20 a second,
    // one budget for every packet the rule sees: the SYN's line above
    // spent one); the `conn` rule has no limit and logs every one.
    const SENT: usize = 200;
    let _quiet = in_netns(&bed.c, move || {
        bind_retry(|| UdpSocket::bind((CLIENT_IP, udp)))
    });
    let tx = in_netns(&bed.w, || UdpSocket::bind((PEER_IP, 0)).unwrap());
    let t = Instant::now();
    for _ in 0..SENT {
        tx.send_to(b"klog", (WAN_IP, udp)).unwrap();
    }
    let (sending, since_t0) = (t.elapsed(), t0.elapsed());
    let got = collect(&mut kmsg, |r| {
        lines(r, "rupnpd conn: ", "UDP", udp).len() >= SENT
    });
    let conn = lines(&got, "rupnpd conn: ", "UDP", udp).len();
    let pkt = lines(&got, "rupnpd pkt: ", "UDP", udp).len();
    eprintln!("{SENT} datagrams sent in {sending:?}: {pkt} pkt lines, {conn} conn lines");
    assert_eq!(conn, SENT, "every unanswered datagram is a new connection");
    // All the rule logged since the SYN: at least the burst (the bucket is
    // full when the rule is new, and 200 datagrams empty it), at most the
    // burst and 20 a second for the time since (rounded up to a second).
    let logged = pkt + 1;
    let refill = 20 * (since_t0.as_millis() as usize / 1000 + 1);
    assert!(
        (50..=50 + refill).contains(&logged),
        "{logged} pkt lines in {since_t0:?} (burst 50, 20/s)"
    );
    assert!(pkt < SENT);
}
