//! The nftables backend through real packets: WAN hosts reach LAN hosts
//! through mappings, and stop reaching them after a delete or an expiry;
//! hairpin; a fw4 reload; kill -9 and restart; collisions with the
//! firewall configuration; a failing firewall.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::ubusd::{Broker, rupnpd_status, socket_path};
use support::wire::Value;

const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

fn config(bed: &Bed, extra: &str) -> String {
    let leases = bed.dir.join("leases");
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption upnp_lease_file '{}'\n{extra}\n{RULES}",
        leases.display()
    ));
    dir.to_str().unwrap().to_string()
}

fn started(name: &str, extra: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let dir = config(&bed, extra);
    bed.start(&["--config-dir", &dir]);
    bed
}

fn add(bed: &Bed, eport: &str, proto: &str, iport: &str, lease: &str) {
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args(eport, proto, iport, CLIENT_IP, lease, "nft-test"),
    );
    assert_eq!(code, 200, "{text}");
}

fn delete(bed: &Bed, eport: &str, proto: &str) {
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", eport),
            ("NewProtocol", proto),
        ],
    );
    assert_eq!(code, 200, "{text}");
}

#[test]
fn packets_cross_the_mapping_until_delete_or_expiry() {
    let bed = started("pkt", "");
    // before any mapping, nothing passes
    assert!(!bed.tcp_through(18080, 8080));
    add(&bed, "18080", "TCP", "8080", "600");
    add(&bed, "19000", "UDP", "9000", "600");
    assert!(bed.tcp_through(18080, 8080), "TCP through the mapping");
    assert!(bed.udp_through(19000, 9000), "UDP through the mapping");
    // the DNAT element counts the packets that used it
    let map = bed.nft("list map inet fw4 upnp_dnat");
    assert!(!map.contains("tcp . 18080 counter packets 0 "), "{map}");

    delete(&bed, "18080", "TCP");
    assert!(!bed.tcp_through(18080, 8080), "TCP after delete");
    assert!(bed.udp_through(19000, 9000));

    // 2-second leases expire by the daemon's timer
    add(&bed, "18081", "TCP", "8081", "2");
    add(&bed, "19001", "UDP", "9001", "2");
    assert!(bed.tcp_through(18081, 8081));
    assert!(bed.udp_through(19001, 9001));
    std::thread::sleep(Duration::from_millis(2600));
    assert!(!bed.tcp_through(18081, 8081), "TCP after expiry");
    assert!(!bed.udp_through(19001, 9001), "UDP after expiry");
    assert_eq!(bed.dnat_elements(), vec!["udp . 19000"]);
    assert!(bed.log().contains("expire TCP 18081"), "{}", bed.log());
    assert!(bed.log().contains("expire UDP 19001"), "{}", bed.log());

    delete(&bed, "19000", "UDP");
    assert!(!bed.udp_through(19000, 9000), "UDP after delete");
    assert!(bed.dnat_elements().is_empty());
}

#[test]
fn remote_host_restricts_who_gets_through() {
    let bed = started("rhost", "");
    let args = [
        ("NewRemoteHost", "192.0.3.77"),
        ("NewExternalPort", "18090"),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", "8090"),
        ("NewInternalClient", CLIENT_IP),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "rh"),
        ("NewLeaseDuration", "600"),
    ];
    let (code, _) = bed.soap(CLIENT_IP, "WANIPConnection:2", "AddPortMapping", &args);
    assert_eq!(code, 200);
    assert!(
        !bed.tcp_through(18090, 8090),
        "the WAN host is not the remote host"
    );
    must_ok(bed.exec(
        &bed.w,
        &["ip", "addr", "add", "192.0.3.77/24", "dev", "w-eth0"],
    ));
    let w = bed.w.clone();
    // connect from the allowed source address
    let ok = bed.tcp_from_source(&w, "192.0.3.77", WAN_IP, 18090, 8090);
    assert!(ok, "the remote host gets through");
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", "192.0.3.77"),
            ("NewExternalPort", "18090"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(element(&text, "NewInternalPort"), Some("8090"), "{text}");
}

fn must_ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn hairpin_reaches_the_mapping_from_the_lan() {
    let bed = started("hpin", "");
    add(&bed, "18080", "TCP", "8080", "600");
    let c = bed.c.clone();
    assert!(
        bed.tcp_from(&c, WAN_IP, 18080, 8080),
        "LAN host via the external address"
    );
    drop(bed);

    let bed = started("hpof", "\toption hairpin '0'\n");
    add(&bed, "18080", "TCP", "8080", "600");
    let c = bed.c.clone();
    assert!(
        !bed.tcp_from(&c, WAN_IP, 18080, 8080),
        "no hairpin when switched off"
    );
    assert!(bed.tcp_through(18080, 8080));
}

#[test]
fn a_fw4_reload_is_repaired_within_a_second() {
    let bed = started("rld", "");
    add(&bed, "18080", "TCP", "8080", "600");
    add(&bed, "19000", "UDP", "9000", "600");
    assert!(bed.tcp_through(18080, 8080));
    // fw4 reload: the same ruleset applied again, starting with a flush
    let t = Instant::now();
    bed.fw4_reload();
    let mut restored = None;
    while t.elapsed() < Duration::from_secs(3) {
        if bed
            .nft("list chain inet fw4 upnp_prerouting")
            .contains("rupnpd")
        {
            restored = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = restored.expect("rules restored after the reload");
    assert!(took < Duration::from_secs(1), "restored after {took:?}");
    assert!(bed.tcp_through(18080, 8080));
    assert!(bed.udp_through(19000, 9000));
    // a fresh connection got through, within a second of the reload's start
    let flowed = t.elapsed();
    assert!(
        flowed < Duration::from_secs(1),
        "traffic flowed after {flowed:?}"
    );

    // fw4 restart: the whole table deleted, then created again empty
    let t = Instant::now();
    bed.fw4_restart();
    while t.elapsed() < Duration::from_secs(3) && bed.dnat_elements().len() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "restored after {:?}",
        t.elapsed()
    );
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080", "udp . 19000"]);
    assert!(bed.tcp_through(18080, 8080));
    let flowed = t.elapsed();
    assert!(
        flowed < Duration::from_secs(1),
        "traffic flowed after {flowed:?}"
    );

    // The structure, at start and after each reload, went through
    // libnftables loaded at run time, as on a router; the `nft` command is
    // only the fallback. (scripts/musl-test.sh runs this against the musl
    // build too.)
    let log = bed.log();
    assert!(log.contains(" via libnftables"), "{log}");
    assert!(!log.contains("falling back to the nft command"), "{log}");
}

#[test]
fn kill_9_and_restart_leave_exactly_the_restored_table() {
    let mut bed = Bed::new("k9");
    bed.fw4_start();
    let dir = config(&bed, "");
    bed.start(&["--config-dir", &dir]);
    add(&bed, "18080", "TCP", "8080", "600");
    add(&bed, "18081", "TCP", "8081", "600");
    add(&bed, "19000", "UDP", "9000", "0");
    bed.kill9();
    // the kernel still forwards: the elements outlive the daemon
    assert!(bed.tcp_through(18080, 8080));
    // leftovers no lease owns: an orphan element and a stale forward entry
    must_ok(bed.exec(
        &bed.r,
        &[
            "nft",
            "add element inet fw4 upnp_dnat { tcp . 4444 : 192.168.77.2 . 4444 }",
        ],
    ));
    must_ok(bed.exec(
        &bed.r,
        &[
            "nft",
            "add element inet fw4 upnp_fwd { 192.168.77.2 . tcp . 4444 }",
        ],
    ));
    bed.start(&["--config-dir", &dir]);
    assert_eq!(
        bed.dnat_elements(),
        vec!["tcp . 18080", "tcp . 18081", "udp . 19000"]
    );
    let fwd = bed.nft("list set inet fw4 upnp_fwd");
    assert!(!fwd.contains("4444"), "{fwd}");
    assert_eq!(
        fwd.matches(" . tcp . ").count() + fwd.matches(" . udp . ").count(),
        3,
        "{fwd}"
    );
    assert_eq!(
        bed.nft("list chain inet fw4 upnp_prerouting")
            .matches("rupnpd")
            .count(),
        1
    );
    assert!(bed.tcp_through(18081, 8081));
    let out = bed.upnpc(&["-l"]);
    assert!(out.contains("18080->192.168.77.2:8080"), "{out}");
    assert!(out.contains("19000->192.168.77.2:9000"), "{out}");
}

#[test]
fn a_clean_stop_removes_everything_and_a_start_restores() {
    let mut bed = Bed::new("stop");
    bed.fw4_start();
    let dir = config(&bed, "");
    bed.start(&["--config-dir", &dir]);
    add(&bed, "18080", "TCP", "8080", "600");
    assert_eq!(bed.stop().map(|s| s.success()), Some(true));
    assert!(bed.dnat_elements().is_empty());
    assert!(!bed.nft("list set inet fw4 upnp_fwd").contains("8080"));
    assert!(
        !bed.nft("list chain inet fw4 upnp_prerouting")
            .contains("dnat")
    );
    assert!(!bed.tcp_through(18080, 8080));
    bed.start(&["--config-dir", &dir]);
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080"]);
    assert!(bed.tcp_through(18080, 8080));
}

#[test]
fn without_fw4_the_daemon_hooks_in_and_cleans_up() {
    let mut bed = Bed::new("nofw");
    let dir = config(&bed, "");
    bed.start(&["--config-dir", &dir]);
    add(&bed, "18080", "TCP", "8080", "600");
    assert!(bed.tcp_through(18080, 8080));
    assert!(
        bed.nft("list chain inet fw4 rupnpd_dstnat")
            .contains("jump upnp_prerouting")
    );
    bed.stop();
    let left = bed.nft("list ruleset");
    assert!(!left.contains("fw4"), "{left}");
}

#[test]
fn collisions_with_firewall_rules_and_local_services() {
    let mut bed = Bed::new("coll");
    bed.fw4_start();
    let dir = config(&bed, "\toption external_iface 'wan'\n");
    std::fs::write(
        std::path::Path::new(&dir).join("firewall"),
        "config zone\n\toption name 'wan'\n\tlist network 'wan'\n\toption input 'REJECT'\n\toption forward 'REJECT'\n\n\
config redirect\n\toption name 'ssh-forward'\n\toption src 'wan'\n\toption src_dport '2222'\n\toption dest_ip '192.168.77.9'\n\toption dest_port '22'\n\n\
config rule\n\toption name 'Allow-HTTPS-alt'\n\toption src 'wan'\n\toption proto 'tcp'\n\toption dest_port '8443'\n\toption target 'ACCEPT'\n\n\
config rule\n\toption name 'disabled'\n\toption enabled '0'\n\toption src 'wan'\n\toption dest_port '9443'\n\toption target 'ACCEPT'\n",
    )
    .unwrap();
    bed.start(&["--config-dir", &dir, "--wan", WAN_DEV]);
    // services listening on the router's WAN side, IPv4 and IPv6 (a
    // dual-stack [::] socket takes IPv4 too), TCP and UDP
    let r = bed.r.clone();
    let _svc = in_netns(&r, || std::net::TcpListener::bind("0.0.0.0:6000").unwrap());
    let _svc6 = in_netns(&r, || std::net::TcpListener::bind("[::]:6001").unwrap());
    let _dns = in_netns(&r, || std::net::UdpSocket::bind("0.0.0.0:6002").unwrap());
    let _dns6 = in_netns(&r, || std::net::UdpSocket::bind("[::]:6003").unwrap());
    for (proto, port) in [("TCP", "6001"), ("UDP", "6002"), ("UDP", "6003")] {
        let (_, text) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(port, proto, port, CLIENT_IP, "600", "c"),
        );
        assert_eq!(fault_code(&text), Some(729), "{proto} {port}: {text}");
    }
    for (port, code) in [("2222", 729), ("8443", 729), ("6000", 729), ("9443", 0)] {
        let (status, text) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(port, "TCP", port, CLIENT_IP, "600", "c"),
        );
        if code == 0 {
            assert_eq!(status, 200, "{port}: {text}");
        } else {
            assert_eq!(fault_code(&text), Some(code), "{port}: {text}");
        }
    }
    // IGDv1 answers 718 for the same
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:1",
        "AddPortMapping",
        &add_args("2222", "TCP", "2222", CLIENT_IP, "600", "c"),
    );
    assert_eq!(fault_code(&text), Some(718), "{text}");
    // UDP 2222 is claimed too (proto tcpudp by default), UDP 8443 is not
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("2222", "UDP", "2222", CLIENT_IP, "600", "c"),
    );
    assert_eq!(fault_code(&text), Some(729), "{text}");
    let (status, _) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("8443", "UDP", "8443", CLIENT_IP, "600", "c"),
    );
    assert_eq!(status, 200);
    let log = bed.log();
    assert!(
        log.contains("port held by firewall redirect 'ssh-forward'"),
        "{log}"
    );
    assert!(
        log.contains("port held by a local service listening on tcp/6000"),
        "{log}"
    );

    // A new port forward on 9443, then a fw4 reload (its include sends
    // SIGUSR2): the mapping that now collides is removed, with the reason.
    assert_eq!(bed.dnat_elements(), vec!["tcp . 9443", "udp . 8443"]);
    let fw = std::path::Path::new(&dir).join("firewall");
    let mut text = std::fs::read_to_string(&fw).unwrap();
    text.push_str("\nconfig redirect\n\toption name 'game'\n\toption src 'wan'\n\toption src_dport '9443'\n\toption dest_ip '192.168.77.9'\n");
    std::fs::write(&fw, text).unwrap();
    bed.signal("USR2");
    let t = std::time::Instant::now();
    while bed.dnat_elements().len() > 1 && t.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(bed.dnat_elements(), vec!["udp . 8443"]);
    // The line is logged once the turn's firewall batch is committed,
    // just after the element goes.
    bed.wait_log("delete TCP 9443", Duration::from_secs(3));
    let log = bed.log();
    assert!(
        log.contains("delete TCP 9443") && log.contains("port held by firewall redirect 'game'"),
        "{log}"
    );
}

#[test]
fn packet_and_connection_logging_rules() {
    let bed = started(
        "logs",
        "\toption log_packets '1'\n\toption log_connections '1'\n",
    );
    let fwd = bed.nft("list chain inet fw4 upnp_forward");
    assert!(fwd.contains("log prefix \"rupnpd conn: \""), "{fwd}");
    assert!(
        fwd.contains("limit rate 20/second burst 50 packets log prefix \"rupnpd pkt: \""),
        "{fwd}"
    );
    add(&bed, "18080", "TCP", "8080", "600");
    assert!(bed.tcp_through(18080, 8080));
    // every change is logged with client, ports, protocol, description and reason
    let log = bed.log();
    assert!(log.contains("add TCP 18080 -> 192.168.77.2:8080 lease 600s client 192.168.77.2 origin upnp-igdv2 desc \"nft-test\": requested"), "{log}");
}

#[test]
fn a_failing_firewall_fails_the_request_and_keeps_the_table() {
    let bed = started("fail", "");
    add(&bed, "18080", "TCP", "8080", "600");
    // sabotage, in one transaction (the daemon repairs anything it sees
    // between two): replace a map with an incompatible one, so neither
    // the change nor the daemon's repair can be applied
    must_ok(bed.exec(&bed.r, &["nft", "flush chain inet fw4 upnp_prerouting; delete map inet fw4 upnp_dnat; add map inet fw4 upnp_dnat { type inet_service : ipv4_addr; }"]));
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18081", "TCP", "8081", CLIENT_IP, "600", "x"),
    );
    assert_eq!((code, fault_code(&text)), (500, Some(501)), "{text}");
    // the table is as it was: only 18080
    let (_, t0) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "0")],
    );
    assert_eq!(element(&t0, "NewExternalPort"), Some("18080"));
    let (_, t1) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "1")],
    );
    assert_eq!(fault_code(&t1), Some(713), "{t1}");
    // once the firewall is sane again the next request works
    must_ok(bed.exec(
        &bed.r,
        &[
            "nft",
            "flush chain inet fw4 upnp_prerouting; delete map inet fw4 upnp_dnat",
        ],
    ));
    add(&bed, "18082", "TCP", "8082", "600");
    assert!(bed.tcp_through(18082, 8082));
}

#[test]
fn a_new_wan_address_is_followed() {
    let bed = started("wanip", "");
    add(&bed, "18080", "TCP", "8080", "600");
    bed.renumber_wan("192.0.3.1", "192.0.3.9");
    let t = Instant::now();
    loop {
        let (_, text) = bed.soap(CLIENT_IP, "WANIPConnection:2", "GetExternalIPAddress", &[]);
        if element(&text, "NewExternalIPAddress") == Some("192.0.3.9") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "external address not updated: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        bed.nft("list set inet fw4 upnp_extaddr")
            .contains("192.0.3.9")
    );
    // the mapping survived and works at the new address
    let w = bed.w.clone();
    assert!(bed.tcp_from(&w, "192.0.3.9", 18080, 8080));
}

/// A directory whose `libnftables.so.1` is a library without nftables'
/// symbols (the system's libm), so the daemon started with it on
/// `LD_LIBRARY_PATH` falls back to the `nft` command, as on a router
/// where only nftables' command-line package is installed.
fn without_libnftables(dir: &std::path::Path) -> std::path::PathBuf {
    let o = std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .unwrap();
    let libm = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.trim_start().starts_with("libm.so.6 "))
        .find_map(|l| l.rsplit("=> ").next().map(|p| p.trim().to_string()))
        .expect("libm.so.6 in ldconfig's cache");
    let lib = dir.join("nolib");
    std::fs::create_dir_all(&lib).unwrap();
    std::os::unix::fs::symlink(libm, lib.join("libnftables.so.1")).unwrap();
    lib
}

/// An `nft` in front of the real one that holds its caller while the file
/// `gate` exists (touching `started` when it begins to wait).
fn held_nft(
    dir: &std::path::Path,
    gate: &std::path::Path,
    started: &std::path::Path,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let real = std::process::Command::new("sh")
        .args(["-c", "command -v nft"])
        .output()
        .unwrap();
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nunset LD_LIBRARY_PATH\nif [ -e '{g}' ]; then\n\t: > '{s}'\n\twhile [ -e '{g}' ]; do sleep 0.05; done\nfi\nexec '{real}' \"$@\"\n",
        g = gate.display(),
        s = started.display()
    );
    std::fs::write(bin.join("nft"), script).unwrap();
    std::fs::set_permissions(bin.join("nft"), std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

/// Where libnftables is missing the daemon runs the `nft` command for its
/// rules; while that command is slow (here: held until the test lets it
/// go), the daemon keeps serving, its mappings keep being made, and the
/// rules follow once the command is done.
#[test]
fn a_slow_nft_command_does_not_stop_the_daemon() {
    let mut bed = Bed::new("nftslow");
    bed.fw4_start();
    let lib = without_libnftables(&bed.dir);
    let gate = bed.dir.join("gate");
    let started_flag = bed.dir.join("started");
    let bin = held_nft(&bed.dir, &gate, &started_flag);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    bed.env = vec![
        ("PATH".into(), path),
        ("LD_LIBRARY_PATH".into(), lib.display().to_string()),
    ];
    let dir = config(&bed, "");
    bed.start(&["--config-dir", &dir]);
    assert!(bed.log().contains("via the nft command"), "{}", bed.log());
    add(&bed, "18080", "TCP", "8080", "600");

    // the next nft command waits, and a fw4 reload calls for one
    std::fs::write(&gate, "").unwrap();
    bed.fw4_reload();
    let t = Instant::now();
    while !started_flag.exists() {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", bed.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    // meanwhile the daemon answers, and maps
    let desc = description_within(&bed.c, Duration::from_secs(3));
    assert!(
        desc.starts_with("HTTP/1.1 200"),
        "not served while nft runs: {desc:?}"
    );
    add(&bed, "18081", "TCP", "8081", "600");
    assert!(
        started_flag.exists() && gate.exists(),
        "nft was let go early"
    );

    // nft goes on: the rules are back, both mappings carry traffic
    std::fs::remove_file(&gate).unwrap();
    let t = Instant::now();
    while !bed
        .nft("list chain inet fw4 upnp_prerouting")
        .contains("rupnpd")
    {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", bed.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(bed.tcp_through(18080, 8080));
    assert!(bed.tcp_through(18081, 8081));
}

/// What the LAN host's server at `CLIENT_IP:port` sees of a TCP
/// connection from `from` (an address of the LAN host, or of the bridged
/// bed's other LAN host [`Bed::c2`]) to the external address: the peer
/// address, if the connection arrived.
fn hairpin_tcp_peer(bed: &Bed, from: &str, eport: u16, port: u16) -> Option<std::net::IpAddr> {
    use std::io::{Read, Write};
    let listener = in_netns(&bed.c, move || {
        bind_retry(|| std::net::TcpListener::bind((CLIENT_IP, port)))
    });
    let c = if from == CLIENT3_IP { &bed.c2 } else { &bed.c }.clone();
    let from: std::net::Ipv4Addr = from.parse().unwrap();
    let client = std::thread::spawn(move || {
        in_netns(&c, move || {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            s.bind(&std::net::SocketAddr::from((from, 0)).into())
                .unwrap();
            let to =
                std::net::SocketAddr::from((WAN_IP.parse::<std::net::Ipv4Addr>().unwrap(), eport));
            s.connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
            let mut t: std::net::TcpStream = s.into();
            t.write_all(b"hairpin").ok()
        })
    });
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let peer = loop {
        match listener.accept() {
            Ok((mut s, peer)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 7];
                break (s.read_exact(&mut buf).is_ok() && &buf == b"hairpin").then_some(peer.ip());
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let _ = client.join();
    peer
}

/// The same over UDP, from the mapped socket itself (`from:port`, the
/// way a game tests its own mapping) or from another socket: the source
/// the mapped socket sees.
fn hairpin_udp_peer(bed: &Bed, from: &str, eport: u16, port: u16) -> Option<std::net::SocketAddr> {
    let from = from.to_string();
    in_netns(&bed.c, move || {
        let mapped = bind_retry(|| std::net::UdpSocket::bind((CLIENT_IP, port)));
        let sender = if from == CLIENT_IP {
            mapped.try_clone().unwrap()
        } else {
            std::net::UdpSocket::bind((from.as_str(), 0)).unwrap()
        };
        mapped
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        for _ in 0..4 {
            sender.send_to(b"hairpin", (WAN_IP, eport)).unwrap();
            let mut buf = [0u8; 16];
            if let Ok((n, peer)) = mapped.recv_from(&mut buf) {
                if &buf[..n] == b"hairpin" {
                    return Some(peer);
                }
            }
        }
        None
    })
}

/// Hairpin to a mapping, from another LAN host and from the mapped host
/// itself: both arrive, with the router's LAN address as their source (a
/// packet from the host's own address would come back as a martian),
/// over TCP and UDP, on the bed's plain LAN port and on a real bridge.
#[test]
fn hairpin_from_the_mapped_host_itself_as_from_another() {
    for (name, bridge) in [("hpself", false), ("hpbr", true)] {
        let mut bed = if bridge {
            Bed::with_bridge(name)
        } else {
            Bed::new(name)
        };
        bed.fw4_start();
        let dir = config(&bed, "");
        bed.start(&["--config-dir", &dir]);
        add(&bed, "18080", "TCP", "8080", "600");
        add(&bed, "19000", "UDP", "9000", "600");
        let router: std::net::IpAddr = LAN_IP.parse().unwrap();
        for from in [CLIENT2_IP, CLIENT_IP] {
            assert_eq!(
                hairpin_tcp_peer(&bed, from, 18080, 8080),
                Some(router),
                "TCP from {from} (bridge: {bridge})"
            );
            let udp = hairpin_udp_peer(&bed, from, 19000, 9000);
            assert_eq!(
                udp.map(|p| p.ip()),
                Some(router),
                "UDP from {from} (bridge: {bridge})"
            );
        }
    }
}

/// Issue 13.11: with br_netfilter handing the bridge's frames to the IP
/// hooks (`net.bridge.bridge-nf-call-iptables` 1, as kmod-br-netfilter
/// sets it), the mapped host cannot reach its own mapping through the
/// external address: the kernel bridges the translated frame back to the
/// port it came from, which a bridge never sends to. A host behind
/// another port gets through. The daemon says so: one warning at start
/// and one per reload, and `status`. With the sysctl at 0 the mapped host
/// gets through and nothing is said.
#[tokio::test(flavor = "current_thread")]
async fn hairpin_self_behind_bridge_netfilter_is_reported() {
    for (name, netfilter) in [("hpnf1", true), ("hpnf0", false)] {
        let mut bed = if netfilter {
            Bed::with_bridge_netfilter(name)
        } else {
            Bed::with_bridge(name)
        };
        bed.fw4_start();
        let dir = config(&bed, "");
        let sock = socket_path(name);
        let _broker = Broker::start(&sock);
        let ubus = sock.to_str().unwrap().to_string();
        bed.start(&["--config-dir", &dir, "--ubus-socket", &ubus]);
        add(&bed, "18080", "TCP", "8080", "600");
        let router: std::net::IpAddr = LAN_IP.parse().unwrap();
        let what = format!("(bridge-nf-call-iptables {})", u8::from(netfilter));
        // Bridged again, the frame meets postrouting with no input device,
        // so the hairpin masquerade (for LAN input devices) leaves it: the
        // mapped host sees the other's own address, and its answer is
        // translated back on the bridge.
        let other: std::net::IpAddr = CLIENT3_IP.parse().unwrap();
        assert_eq!(
            hairpin_tcp_peer(&bed, CLIENT3_IP, 18080, 8080),
            Some(if netfilter { other } else { router }),
            "another LAN host, behind another port {what}"
        );
        let own = hairpin_tcp_peer(&bed, CLIENT_IP, 18080, 8080);
        assert_eq!(
            own,
            (!netfilter).then_some(router),
            "the mapped host {what}"
        );

        const WARNING: &str = "cannot reach its own mapping";
        let s = rupnpd_status(&sock).await;
        let reason = s.get("hairpin_self_reason").and_then(Value::as_str);
        let reason = reason.unwrap_or_else(|| panic!("no hairpin_self_reason: {s}"));
        assert_eq!(
            s.get("hairpin_self").and_then(Value::as_bool),
            Some(!netfilter),
            "{s}"
        );
        assert_eq!(bed.log().matches(WARNING).count(), usize::from(netfilter));
        if netfilter {
            for part in [WARNING, "net.bridge.bridge-nf-call-iptables", LAN_DEV] {
                assert!(reason.contains(part), "{part}: {reason}");
            }
            let line = bed
                .log()
                .lines()
                .find(|l| l.contains(WARNING))
                .unwrap()
                .to_string();
            assert!(line.contains(reason), "{line}");
        } else {
            assert_eq!(reason, "");
        }
        // a reload says it again, once
        bed.signal("HUP");
        let t = Instant::now();
        while !bed.log().contains("configuration reloaded") {
            assert!(t.elapsed() < Duration::from_secs(5), "{}", bed.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            bed.log().matches(WARNING).count(),
            2 * usize::from(netfilter),
            "{}",
            bed.log()
        );
    }
}
