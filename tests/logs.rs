//! Quiet, bounded logs on a busy router: refusals limited per client and
//! in all, with a summary of what was left out; renewals at debug level;
//! foreign nftables transactions that do not touch the daemon's table,
//! chains or sets (dnsmasq's nftset, banIP, adblock) logged not at all,
//! and a firewall reload logged once.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;

const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

/// A `/etc/config/firewall` as fw4 reads it: a WAN zone (the daemon
/// reads the ports it opens itself from here).
const FIREWALL: &str = "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\
\toption input 'REJECT'\n\toption forward 'REJECT'\n\toption masq '1'\n";

fn started(name: &str, before_start: impl FnOnce(&Bed)) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    before_start(&bed);
    let dir = bed.config(&format!("config upnpd 'config'\n{RULES}"));
    std::fs::write(dir.join("firewall"), FIREWALL).unwrap();
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    bed
}

/// The lines at level info and above from byte `from` of the log (the
/// bed runs the daemon with --debug, so debug lines are there too).
fn loud(log: &str, from: usize) -> Vec<String> {
    log[from..]
        .lines()
        .filter(|l| !l.starts_with("debug "))
        .map(String::from)
        .collect()
}

/// A NAT-PMP TCP mapping request, sent and answered: the result code.
fn natpmp(sock: &UdpSocket, iport: u16) -> u16 {
    let mut b = vec![0, 2, 0, 0];
    b.extend_from_slice(&iport.to_be_bytes());
    b.extend_from_slice(&iport.to_be_bytes());
    b.extend_from_slice(&600u32.to_be_bytes());
    sock.send_to(&b, (LAN_IP, 5351)).unwrap();
    let mut r = [0u8; 16];
    let n = loop {
        match sock.recv(&mut r) {
            Ok(n) => break n,
            // a signal to the test process (a child ending) is no answer
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!("no answer: {e}"),
        }
    };
    assert_eq!(n, 16);
    u16::from_be_bytes([r[2], r[3]])
}

/// 50 refused requests from one client leave a few warnings (the rest at
/// debug level), another client's refusal is still logged, and the stop
/// reports how many lines were left out.
#[test]
fn refusals_are_limited_per_client_with_a_summary() {
    let mut bed = started("logref", |_| {});
    let from = bed.log().len();
    let sock = udp_in(&bed.c, CLIENT_IP);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..50 {
        // internal port 80: no rule allows it
        assert_eq!(natpmp(&sock, 80), 2);
    }
    let other = udp_in(&bed.c, CLIENT2_IP);
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(natpmp(&other, 81), 2);
    bed.stop();
    let log = bed.log();
    let warned: Vec<String> = loud(&log, from)
        .into_iter()
        .filter(|l| l.contains("refuse TCP"))
        .collect();
    assert!(warned.len() <= 6, "{}", warned.join("\n"));
    assert!(
        warned.iter().any(|l| l.contains("client 192.168.77.3")),
        "{}",
        warned.join("\n")
    );
    // every refusal is still there at debug level
    assert_eq!(log[from..].matches("refuse TCP").count(), 51, "{log}");
    assert!(
        loud(&log, from)
            .iter()
            .any(|l| l.contains("suppressed") && l.contains("refus")),
        "{log}"
    );
}

/// Six foreign nftables transactions that leave the daemon's objects
/// alone (elements of a set dnsmasq fills in fw4's table, a table and set
/// of banIP's) log nothing; a renewal logs at debug level only; a fw4
/// reload logs one line.
#[test]
fn foreign_nftables_commits_log_nothing_and_renewals_go_to_debug() {
    let bed = started("lognft", |bed| {
        bed.nft_load("add set inet fw4 dnsmasq_v4 { type ipv4_addr; }\n");
    });
    let sock = udp_in(&bed.c, CLIENT_IP);
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(natpmp(&sock, 8080), 0);
    // its line follows the reply
    assert!(bed.wait_log("add TCP 8080", Duration::from_secs(5)));
    let from = bed.log().len();
    assert_eq!(natpmp(&sock, 8080), 0);
    for cmd in [
        "add element inet fw4 dnsmasq_v4 { 198.51.100.1 }",
        "add element inet fw4 dnsmasq_v4 { 198.51.100.2 }",
        "add element inet fw4 dnsmasq_v4 { 198.51.100.3 }",
        "add table inet banip_test",
        "add set inet banip_test blocked { type ipv4_addr; }",
        "add element inet banip_test blocked { 203.0.113.9 }",
    ] {
        bed.nft_load(&format!("{cmd}\n"));
    }
    // a fw4 reload does concern the daemon: once its line is there, every
    // notification before it has been read
    bed.fw4_reload();
    assert!(
        bed.wait_log("reinstalled", Duration::from_secs(5)),
        "{}",
        bed.log()
    );
    let log = bed.log();
    let lines = loud(&log, from);
    assert_eq!(lines.len(), 1, "{}", lines.join("\n"));
    assert!(lines[0].contains("firewall was reloaded"), "{lines:?}");
    assert!(log[from..].contains("renew TCP 8080"), "{log}");
}
