//! firewall4 as it is: the recorded `fw4 print` output with rupnpd's
//! include files where fw4 places them, and what fw4 does to its table
//! (reload, restart, stop) with the daemon running; a user's port forward
//! next to the daemon's mappings.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::fw4::{self, Print};
use common::*;
use support::ubusd::{Broker, rupnpd_status, socket_path};
use support::wire::Value;

/// What the user's port forward (WAN 8022 → 192.168.1.10:22) added to the
/// recorded print, besides our include lines: the reflection and WAN
/// redirect chains, their jumps, and fw4's `ct status dnat accept` in the
/// zones' input and forward chains.
const REDIRECT_LINES: [&str; 13] = [
    "ct status dnat accept comment \"!fw4: Accept port redirections\"",
    "ct status dnat accept comment \"!fw4: Accept port forwards\"",
    "ct status dnat accept comment \"!fw4: Accept port redirections\"",
    "ct status dnat accept comment \"!fw4: Accept port forwards\"",
    "iifname \"br-lan\" jump dstnat_lan comment \"!fw4: Handle lan IPv4/IPv6 dstnat traffic\"",
    "iifname \"eth1\" jump dstnat_wan comment \"!fw4: Handle wan IPv4/IPv6 dstnat traffic\"",
    "oifname \"br-lan\" jump srcnat_lan comment \"!fw4: Handle lan IPv4/IPv6 srcnat traffic\"",
    "chain dstnat_lan {",
    "ip saddr 192.168.1.0/24 ip daddr 192.0.4.1 tcp dport 8022 dnat 192.168.1.10:22 comment \"!fw4: realwrt-fwd (reflection)\"",
    "chain srcnat_lan {",
    "ip saddr 192.168.1.0/24 ip daddr 192.168.1.10 tcp dport 22 snat 192.168.1.1 comment \"!fw4: realwrt-fwd (reflection)\"",
    "chain dstnat_wan {",
    "meta nfproto ipv4 tcp dport 8022 counter dnat 192.168.1.10:22 comment \"!fw4: realwrt-fwd\"",
];

/// Our include files placed into the default print land exactly where the
/// real fw4 put them in the print recorded with them installed: that
/// print is the placed one plus the redirect's lines, nothing else.
#[test]
fn our_includes_go_where_fw4_put_them() {
    let includes = fw4::package_includes();
    assert_eq!(
        includes,
        [
            "chain-post/dstnat/20-rupnpd.nft",
            "chain-post/forward/20-rupnpd.nft",
            "chain-pre/input/20-rupnpd.nft",
            "chain-pre/srcnat/20-rupnpd.nft",
            "table-post/20-rupnpd.nft",
        ]
    );
    // The recording was made with the four files of 0.1.0; the STUN
    // accept (chain-pre/input) came later and goes where fw4's template
    // puts every chain-pre file, as the recorded srcnat one shows: before
    // the chain's first rule.
    let recorded: Vec<String> = includes
        .iter()
        .filter(|i| !i.starts_with("chain-pre/input/"))
        .cloned()
        .collect();
    let with_input = fw4::place_includes(fw4::PRINT_DEFAULT, &includes);
    assert!(with_input.contains(
        "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\n\t\tinclude \"/usr/share/nftables.d/chain-pre/input/20-rupnpd.nft\"\n\t\tiif \"lo\" accept"
    ), "{with_input}");
    let placed = fw4::place_includes(fw4::PRINT_DEFAULT, &recorded);
    let placed: Vec<&str> = placed.lines().collect();
    // `placed` must be a subsequence of the recorded print…
    let mut next = 0;
    let mut extra = Vec::new();
    for line in fw4::PRINT_WITH_REDIRECT.lines() {
        if placed.get(next) == Some(&line) {
            next += 1;
        } else {
            extra.push(line.trim());
        }
    }
    assert_eq!(
        next,
        placed.len(),
        "the recorded print lacks {:?} at that place",
        placed.get(next)
    );
    // …and what the print has besides is the redirect's.
    extra.retain(|l| !l.is_empty() && *l != "}");
    assert_eq!(extra, REDIRECT_LINES);
}

/// The default print with our include lines placed, for the shell beds
/// (scripts/netns.sh, bench/compare.sh), which cannot place them: it must
/// be what [`fw4::place_includes`] makes of the recorded print. Written
/// anew with `RUPNPD_BLESS=1`.
#[test]
fn the_placed_print_for_the_scripts_is_current() {
    let path = root().join("tests/fixtures/fw4/derived/fw4-print-default-with-includes.nft");
    let placed = fw4::place_includes(fw4::PRINT_DEFAULT, &fw4::package_includes());
    let header = "# DERIVED, not recorded: fw4-print-default.nft with rupnpd's include lines placed as\n\
# firewall4 places them (tests/common/fw4.rs, checked by tests/fw4.rs). Regenerate with\n\
# RUPNPD_BLESS=1 cargo test --test fw4 the_placed_print.\n";
    let want = format!("{header}{placed}");
    if std::env::var_os("RUPNPD_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is stale: run RUPNPD_BLESS=1 cargo test --test fw4 the_placed_print",
        path.display()
    );
}

/// The rulesets the bed loads: include lines replaced by our files' text,
/// the capture's addresses by the bed's, the devices kept as recorded.
#[test]
fn the_loaded_rulesets_are_the_captures_with_our_files() {
    let upnp_chain = std::fs::read_to_string(
        root().join("openwrt-pkg/rupnpd/files/nftables.d/table-post/20-rupnpd.nft"),
    )
    .unwrap();
    for print in [Print::Default, Print::WithRedirect] {
        let text = fw4::ruleset(print, LAN_DEV, WAN_DEV);
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with("include ")),
            "{print:?}"
        );
        assert!(text.contains(&upnp_chain), "{print:?}");
        for old in ["192.168.1.", "192.0.4."] {
            assert!(!text.contains(old), "{print:?}: {old} left");
        }
        assert!(text.starts_with("table inet fw4\nflush table inet fw4\n"));
        assert!(text.contains("iifname \"eth1\" jump forward_wan"));
    }
    let redirect = fw4::ruleset(Print::WithRedirect, LAN_DEV, WAN_DEV);
    assert!(redirect.contains(&format!(
        "ip saddr 192.168.77.0/24 ip daddr {WAN_IP} tcp dport 8022 dnat {CLIENT_IP}:22"
    )));
    assert!(redirect.contains(&format!(
        "ip daddr {CLIENT_IP} tcp dport 22 snat {LAN_IP} comment"
    )));
    // a bed with other devices gets them where the capture has its own
    let pppoe = fw4::ruleset(Print::Default, "eth0", "pppoe-wan");
    assert!(pppoe.contains("iifname \"pppoe-wan\" jump forward_wan"));
    assert!(pppoe.contains("oifname \"eth0\" counter accept"));
    assert!(!pppoe.contains("\"eth1\"") && !pppoe.contains("\"br-lan\""));
}

const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

fn config(bed: &Bed) -> String {
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption upnp_lease_file '{}'\n\toption external_iface 'wan'\n\n{RULES}",
        bed.dir.join("leases").display()
    ));
    dir.to_str().unwrap().to_string()
}

fn add(bed: &Bed, eport: &str, proto: &str, iport: &str) -> (u16, String) {
    bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args(eport, proto, iport, CLIENT_IP, "600", "fw4-test"),
    )
}

/// Waits until the daemon's rules are back in its chain (it repairs a
/// reloaded table on its own, from the nf_tables events it watches).
fn restored(bed: &Bed, what: &str) {
    let t = Instant::now();
    while !bed
        .nft("list chain inet fw4 upnp_prerouting")
        .contains("rupnpd")
    {
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "rules not restored after {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The packets counted on the `upnp_fwd` element for `proto . port`, the
/// one the daemon's forward rule matches.
fn fwd_packets(bed: &Bed, proto: &str, port: u16) -> u64 {
    let text = bed.nft("list set inet fw4 upnp_fwd");
    let key = format!(" . {proto} . {port} counter packets ");
    let at = text
        .find(&key)
        .unwrap_or_else(|| panic!("no {proto} {port} in upnp_fwd: {text}"));
    text[at + key.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// fw4 reload, restart and stop + start with a mapping in place: traffic
/// comes back each time, the elements are the daemon's, and the daemon's
/// forward rule is what accepts the mapping's traffic (the default fw4
/// config has no `ct status dnat accept` of its own on the WAN).
#[test]
fn reload_restart_and_stop_start_keep_the_mapping() {
    let mut bed = Bed::new("f4cyc");
    bed.fw4_start();
    let dir = config(&bed);
    bed.start(&["--config-dir", &dir]);
    assert_eq!(add(&bed, "18080", "TCP", "8080").0, 200);
    assert!(bed.tcp_through(18080, 8080));
    assert!(fwd_packets(&bed, "tcp", 8080) > 0);

    bed.fw4_reload();
    restored(&bed, "fw4 reload");
    assert!(bed.tcp_through(18080, 8080));

    bed.fw4_restart();
    restored(&bed, "fw4 restart");
    assert_eq!(bed.dnat_elements(), ["tcp . 18080"]);
    assert!(bed.tcp_through(18080, 8080));

    bed.fw4_stop();
    bed.fw4_start();
    restored(&bed, "fw4 stop and start");
    assert_eq!(bed.dnat_elements(), ["tcp . 18080"]);
    let before = fwd_packets(&bed, "tcp", 8080);
    assert!(bed.tcp_through(18080, 8080));
    assert!(fwd_packets(&bed, "tcp", 8080) > before);
}

/// Waits until `status` says the firewall is `state`.
async fn firewall_becomes(sock: &std::path::Path, state: &str) {
    let t = Instant::now();
    loop {
        let s = rupnpd_status(sock).await;
        if s.get("firewall").and_then(Value::as_str) == Some(state) {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(3), "not {state}: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A NAT-PMP TCP mapping request from the LAN host: the result code.
fn natpmp_map(bed: &Bed, iport: u16, eport: u16) -> u16 {
    let sock = udp_in(&bed.c, CLIENT_IP);
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut req = vec![0, 2, 0, 0];
    req.extend_from_slice(&iport.to_be_bytes());
    req.extend_from_slice(&eport.to_be_bytes());
    req.extend_from_slice(&600u32.to_be_bytes());
    sock.send_to(&req, (LAN_IP, 5351)).unwrap();
    let mut buf = [0u8; 64];
    let n = sock.recv(&mut buf).expect("a NAT-PMP answer");
    assert!(n >= 4 && buf[1] == 130, "{:?}", &buf[..n]);
    u16::from_be_bytes([buf[2], buf[3]])
}

/// Issue 17.3: while fw4 is stopped the daemon leaves `table inet fw4`
/// alone (rupnpd 0.1.0 created it again with only its own sets, maps and
/// unhooked chains: tests/fixtures/fw4/ruleset-2s-after-fw4-stop.nft),
/// keeps its leases (a renewal too), refuses new mappings with the
/// protocols' "try again later" (UPnP 501, NAT-PMP 3 Network Failure),
/// says `"firewall": "down"`, and puts everything back when fw4 starts.
#[tokio::test(flavor = "current_thread")]
async fn while_fw4_is_stopped_the_table_stays_gone() {
    let mut bed = Bed::new("f4stop");
    bed.fw4_start();
    let dir = config(&bed);
    let sock = socket_path("f4stop");
    let _broker = Broker::start(&sock);
    let ubus = sock.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &dir, "--ubus-socket", &ubus]);
    firewall_becomes(&sock, "fw4").await;
    assert_eq!(add(&bed, "18080", "TCP", "8080").0, 200);
    bed.fw4_stop();
    firewall_becomes(&sock, "down").await;
    // 0.1.0 had the table back within two seconds; watch that long
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        let left = bed.nft("list ruleset");
        assert!(!left.contains("table inet fw4"), "{left}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(bed.log().contains("firewall stopped"), "{}", bed.log());
    // the lease is kept: listed, renewed; new mappings wait for fw4
    let out = bed.upnpc(&["-l"]);
    assert!(out.contains("18080->192.168.77.2:8080"), "{out}");
    assert_eq!(add(&bed, "18080", "TCP", "8080").0, 200);
    let (_, text) = add(&bed, "18081", "TCP", "8081");
    assert_eq!(fault_code(&text), Some(501), "{text}");
    assert_eq!(natpmp_map(&bed, 8082, 18082), 3);
    assert!(!bed.nft("list ruleset").contains("table inet fw4"));
    bed.fw4_start();
    restored(&bed, "fw4 start");
    firewall_becomes(&sock, "fw4").await;
    assert_eq!(bed.dnat_elements(), ["tcp . 18080"]);
    assert!(bed.tcp_through(18080, 8080));
    // and new mappings are taken again
    assert_eq!(add(&bed, "18081", "TCP", "8081").0, 200);
    assert_eq!(natpmp_map(&bed, 8082, 18082), 0);
    assert!(bed.tcp_through(18081, 8081));
}

/// A daemon (re)started while fw4 is stopped finds no table and hooks in
/// itself, as on a router without fw4. When fw4 starts, its hooks take
/// over: ours go (no mapping is translated twice), the mappings stay, and
/// from then on a fw4 stop leaves the table gone.
#[tokio::test(flavor = "current_thread")]
async fn fw4_starting_after_the_daemon_takes_over_the_hooks() {
    let mut bed = Bed::new("f4late");
    let dir = config(&bed);
    let sock = socket_path("f4late");
    let _broker = Broker::start(&sock);
    let ubus = sock.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &dir, "--ubus-socket", &ubus]);
    firewall_becomes(&sock, "own").await;
    assert_eq!(add(&bed, "18080", "TCP", "8080").0, 200);
    assert!(bed.tcp_through(18080, 8080));
    bed.fw4_start();
    firewall_becomes(&sock, "fw4").await;
    restored(&bed, "fw4 start");
    let table = bed.nft("list table inet fw4");
    assert!(!table.contains("rupnpd_forward"), "{table}");
    assert_eq!(bed.dnat_elements(), ["tcp . 18080"]);
    assert!(bed.tcp_through(18080, 8080));
    assert!(fwd_packets(&bed, "tcp", 8080) > 0);
    bed.fw4_stop();
    firewall_becomes(&sock, "down").await;
    assert!(!bed.nft("list ruleset").contains("table inet fw4"));
}

/// The UCI section behind the recorded port forward, with the bed's LAN
/// host as its target.
fn firewall_with_redirect() -> String {
    format!(
        "config zone\n\toption name 'lan'\n\tlist network 'lan'\n\toption input 'ACCEPT'\n\toption forward 'ACCEPT'\n\n\
config zone\n\toption name 'wan'\n\tlist network 'wan'\n\toption input 'REJECT'\n\toption forward 'REJECT'\n\n\
config redirect\n\toption name 'realwrt-fwd'\n\toption src 'wan'\n\toption src_dport '8022'\n\
\toption dest 'lan'\n\toption dest_ip '{CLIENT_IP}'\n\toption dest_port '22'\n\toption proto 'tcp'\n"
    )
}

/// The recorded print with the user's port forward: a mapping on its port
/// is refused (the redirect would win in fw4's dstnat chain, which runs
/// before the daemon's), the forward itself works, and the daemon's
/// mappings work too, accepted by fw4's `ct status dnat accept` in
/// `forward_wan` before the daemon's forward rule sees them.
#[test]
fn a_user_redirect_collides_and_fw4_accepts_the_dnat_flows() {
    let mut bed = Bed::new("f4red");
    bed.fw4_print = Print::WithRedirect;
    bed.fw4_start();
    let dir = config(&bed);
    std::fs::write(
        std::path::Path::new(&dir).join("firewall"),
        firewall_with_redirect(),
    )
    .unwrap();
    bed.start(&["--config-dir", &dir]);

    // the collision check
    let (_, text) = add(&bed, "8022", "TCP", "8022");
    assert_eq!(fault_code(&text), Some(729), "{text}");
    assert!(
        bed.log()
            .contains("port held by firewall redirect 'realwrt-fwd'"),
        "{}",
        bed.log()
    );
    // the redirect is TCP only: UDP 8022 is free
    assert_eq!(add(&bed, "8022", "UDP", "8022").0, 200);
    // the user's forward carries WAN 8022 to the LAN host's port 22
    assert!(bed.tcp_through(8022, 22));

    // a mapping: traffic flows, accepted by fw4 before the daemon's rule
    assert_eq!(add(&bed, "18080", "TCP", "8080").0, 200);
    assert!(bed.tcp_through(18080, 8080));
    assert!(bed.udp_through(8022, 8022));
    assert_eq!(fwd_packets(&bed, "tcp", 8080), 0);
    let fwd = bed.nft("list chain inet fw4 forward_wan");
    assert!(fwd.contains("ct status dnat accept"), "{fwd}");
    // and stops with the mapping: nothing is DNATed any more
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "18080"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(code, 200, "{text}");
    assert!(!bed.tcp_through(18080, 8080));

    // a fw4 reload keeps all of it
    bed.fw4_reload();
    restored(&bed, "fw4 reload");
    assert!(bed.tcp_through(8022, 22));
    assert!(bed.udp_through(8022, 8022));
}
