//! PCP over IPv6 through real packets: our own client
//! (tests/support/pcp_client.rs) on the LAN host's IPv6 addresses asks the
//! router's [fd77::1]:5351; MAP and PEER open pinholes in the table
//! WANIPv6FirewallControl uses, and WAN IPv6 traffic crosses exactly
//! while they live, under the fw4 ruleset's drop policy on forward.

mod common;
#[path = "support/pcp_client.rs"]
mod pcp_client;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use pcp_client::{Map, Op, Opt, Request, Response, Retransmit, TCP, UDP, result};

fn config(bed: &Bed, extra: &str) -> String {
    bed.upnpd_with_leases(extra)
}

fn start(bed: &mut Bed, extra: &str) -> u32 {
    let dir = bed.config(&config(bed, extra));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d])
}

fn started(name: &str, extra: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    start(&mut bed, extra);
    bed
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn server() -> SocketAddr {
    SocketAddr::from((v6(LAN6), 5351))
}

/// A UDP socket on the LAN host bound to `[from]:0`.
fn sock(bed: &Bed, from: &str) -> UdpSocket {
    let a = v6(from);
    in_netns(&bed.c, move || UdpSocket::bind((a, 0)).unwrap())
}

fn retransmit() -> Retransmit {
    Retransmit {
        initial: Duration::from_millis(500),
        max_rt: Duration::from_secs(2),
        max_count: 4,
    }
}

/// One request from `from`, its answer.
fn pcp(bed: &Bed, from: &str, req: &Request) -> Response {
    pcp_client::exchange(&sock(bed, from), server(), req, retransmit())
        .unwrap_or_else(|e| panic!("{req:?}: {e}\n{}", bed.log()))
}

fn map(from: &str, nonce: u8, proto: u8, iport: u16, lifetime: u32) -> Request {
    Request::map(v6(from), [nonce; 12], proto, iport, lifetime)
}

fn with(mut req: Request, opts: Vec<Opt>) -> Request {
    req.options = opts;
    req
}

fn suggest(mut req: Request, port: u16, addr: Option<IpAddr>) -> Request {
    if let Op::Map(m) = &mut req.op {
        m.suggested_port = port;
        m.suggested_addr = addr;
    }
    req
}

fn peer(from: &str, nonce: u8, iport: u16, remote: &str, rport: u16) -> Request {
    let m = Map {
        nonce: [nonce; 12],
        protocol: UDP,
        internal_port: iport,
        suggested_port: 0,
        suggested_addr: None,
    };
    Request::peer(v6(from), m, v6(remote), rport, 600)
}

/// A UDP datagram from the WAN host at `[src]:sport` reaches the LAN
/// host at `[dst]:dport` (no translation: only a pinhole lets it in).
fn udp6_through(bed: &Bed, src: &str, sport: u16, dst: &str, dport: u16) -> bool {
    let (s, d) = (v6(src), v6(dst));
    let rx = in_netns(&bed.c, move || bind_retry(|| UdpSocket::bind((d, dport))));
    rx.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let tx = in_netns(&bed.w, move || bind_retry(|| UdpSocket::bind((s, sport))));
    for _ in 0..5 {
        let _ = tx.send_to(b"udp6-through-pinhole", (d, dport));
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = rx.recv_from(&mut buf) {
            if &buf[..n] == b"udp6-through-pinhole" {
                return true;
            }
        }
    }
    false
}

/// Adds a second WAN host address (a peer the filters do not name).
fn add_wan_host(bed: &Bed, addr: &str) {
    let cidr = format!("{addr}/64");
    let o = bed.exec(
        &bed.w,
        &["ip", "-6", "addr", "add", &cidr, "dev", "w-eth0", "nodad"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The elements of one pinhole set.
fn pin_set(bed: &Bed, set: &str) -> String {
    bed.nft(&format!("list set inet fw4 {set}"))
}

#[test]
fn a_pcp_map_over_ipv6_is_a_pinhole_for_wan_traffic() {
    let bed = started("p6map", "");
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 8080), "closed before");
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 600));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    // no translation: the assigned external address and port are ours
    assert_eq!(
        (r.external_addr, r.external_port, r.lifetime),
        (Some(v6(CLIENT6)), 8080, 600)
    );
    assert!(pin_set(&bed, "upnp_pin6").contains("fd77::2 . tcp . 8080"));
    assert!(
        bed.tcp6_through(PEER6, CLIENT6, 8080),
        "open while it lives"
    );
    // the other host of the LAN stays closed
    assert!(!bed.tcp6_through(PEER6, CLIENT6_2, 8080));
    // renewal with the nonce, then deletion
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 1200));
    assert_eq!((r.result, r.lifetime), (result::SUCCESS, 1200));
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 0));
    assert_eq!((r.result, r.lifetime), (result::SUCCESS, 0));
    assert!(
        !bed.tcp6_through(PEER6, CLIENT6, 8080),
        "closed after delete"
    );
    assert!(bed.log().contains("origin pcp"), "{}", bed.log());
}

#[test]
fn pcp_peer_and_filter_over_ipv6_admit_only_the_named_peer() {
    let bed = started("p6peer", "");
    add_wan_host(&bed, "2001:db8:3::99");
    // PEER: the remote peer's address and port, nothing else
    let r = pcp(&bed, CLIENT6, &peer(CLIENT6, 2, 5000, PEER6, 6000));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    assert_eq!(
        (r.external_addr, r.external_port, r.peer_port),
        (Some(v6(CLIENT6)), 5000, 6000)
    );
    assert!(udp6_through(&bed, PEER6, 6000, CLIENT6, 5000), "the peer");
    assert!(
        !udp6_through(&bed, PEER6, 6001, CLIENT6, 5000),
        "another port"
    );
    assert!(
        !udp6_through(&bed, "2001:db8:3::99", 6000, CLIENT6, 5000),
        "another host"
    );
    // FILTER narrows a MAP to one host (any port) …
    let req = with(
        map(CLIENT6, 3, UDP, 7000, 600),
        vec![Opt::filter_v6(v6("2001:db8:3::99"), 128, 0)],
    );
    let r = pcp(&bed, CLIENT6, &req);
    assert_eq!((r.result, r.options.len()), (result::SUCCESS, 1), "{r:?}");
    assert!(udp6_through(&bed, "2001:db8:3::99", 6000, CLIENT6, 7000));
    assert!(!udp6_through(&bed, PEER6, 6000, CLIENT6, 7000));
    // … and prefix length 0 removes it on renewal
    let req = with(
        map(CLIENT6, 3, UDP, 7000, 600),
        vec![Opt::filter_v6(Ipv6Addr::UNSPECIFIED, 0, 0)],
    );
    assert_eq!(pcp(&bed, CLIENT6, &req).result, result::SUCCESS);
    assert!(udp6_through(&bed, PEER6, 6000, CLIENT6, 7000));
}

/// Every refusal over IPv6, each with its RFC 6887 result code.
#[test]
fn pcp_refusals_over_ipv6_each_with_its_code() {
    let bed = started("p6refuse", "\toption max_mappings_per_client '3'");
    let ok = |r: &Response| assert_eq!(r.result, result::SUCCESS, "{r:?}");
    ok(&pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 600)));
    // permission rules by port; a nonce of another mapping
    let cases: Vec<(Request, u8)> = vec![
        (map(CLIENT6, 1, TCP, 22, 600), result::NOT_AUTHORIZED),
        (map(CLIENT6, 9, TCP, 8080, 600), result::NOT_AUTHORIZED),
        (map(CLIENT6, 9, TCP, 8080, 0), result::NOT_AUTHORIZED),
        // what a pinhole cannot be
        (map(CLIENT6, 1, 50, 8080, 600), result::UNSUPP_PROTOCOL),
        (map(CLIENT6, 1, TCP, 0, 600), result::NOT_AUTHORIZED),
        (
            with(
                map(CLIENT6, 1, TCP, 8081, 600),
                vec![Opt::filter_v6(v6("2001:db8:3::"), 64, 0)],
            ),
            result::EXCESSIVE_REMOTE_PEERS,
        ),
        (
            with(
                map(CLIENT6, 1, TCP, 8081, 600),
                vec![Opt::filter_v4("192.0.3.2".parse().unwrap(), 32, 0)],
            ),
            result::MALFORMED_OPTION,
        ),
        (
            with(
                suggest(map(CLIENT6, 1, TCP, 8081, 600), 9999, None),
                vec![Opt::PreferFailure],
            ),
            result::CANNOT_PROVIDE_EXTERNAL,
        ),
        (
            with(
                map(CLIENT6, 1, TCP, 8081, 600),
                vec![Opt::ThirdParty(v6(CLIENT6_2).into())],
            ),
            result::UNSUPP_OPTION,
        ),
        // the client address field must be the source (RFC 6887 §8.3)
        (map(CLIENT6_2, 1, TCP, 8081, 600), result::ADDRESS_MISMATCH),
        (
            peer(CLIENT6, 1, 5000, "::ffff:192.0.3.2", 6000),
            result::NOT_AUTHORIZED,
        ),
    ];
    for (req, want) in &cases {
        let r = pcp(&bed, CLIENT6, req);
        assert_eq!(r.result, *want, "{req:?} → {r:?}");
    }
    // one table with WANIPv6FirewallControl: the same pinhole is refused
    // across the protocols, each with its own code
    let (code, text) = bed.add_pinhole6(CLIENT6, "8080", "600");
    assert_eq!((code, fault_code(&text)), (500, Some(606)), "{text}");
    let (code, text) = bed.add_pinhole6(CLIENT6, "9000", "600");
    assert_eq!(code, 200, "{text}");
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 9000, 600));
    assert_eq!(r.result, result::NOT_AUTHORIZED);
    // the quota counts the /64: the LAN host's other address shares it
    // (two pinholes so far, the quota is 3)
    ok(&pcp(&bed, CLIENT6_2, &map(CLIENT6_2, 1, UDP, 8090, 600)));
    let r = pcp(&bed, CLIENT6_2, &map(CLIENT6_2, 1, UDP, 8091, 600));
    assert_eq!((r.result, r.lifetime), (result::USER_EX_QUOTA, 30));
    // lifetimes within min_lifetime and max_lifetime
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 10));
    assert_eq!((r.result, r.lifetime), (result::SUCCESS, 120));
    // NAT-PMP is IPv4 only: no answer at all
    let s = sock(&bed, CLIENT6);
    s.send_to(&[0, 0], server()).unwrap();
    let silent = pcp_client::recv_any(&s, Duration::from_millis(1500)).unwrap();
    assert!(silent.is_none(), "{silent:?}");
    // a malformed request still gets its code
    let mut bad = map(CLIENT6, 1, TCP, 8080, 600).to_bytes();
    bad.push(0);
    let raw =
        pcp_client::exchange_raw(&s, server(), &bad, retransmit(), |_| true).expect("an answer");
    assert_eq!(
        pcp_client::parse_response(&raw).unwrap().result,
        result::MALFORMED_REQUEST
    );
}

/// A socket on the LAN host listening on port 5350 for what the router
/// multicasts to all nodes ([ff02::1]:5350, RFC 6887 §14.1).
fn announce_listener(bed: &Bed) -> UdpSocket {
    in_netns(&bed.c, || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 5350)).into())
            .unwrap();
        s.into()
    })
}

/// The next unsolicited ANNOUNCE on `l` within `within` whose epoch
/// passes `want`.
fn next_announce(
    l: &UdpSocket,
    within: Duration,
    want: impl Fn(u32) -> bool,
) -> Option<(Response, SocketAddr)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some((b, from)) = pcp_client::recv_any(l, left).unwrap() else {
            break;
        };
        let r = pcp_client::parse_response(&b).unwrap();
        assert_eq!(
            (r.opcode, r.result, r.lifetime),
            (0, result::SUCCESS, 0),
            "{r:?}"
        );
        if want(r.epoch) {
            return Some((r, from));
        }
    }
    None
}

/// ANNOUNCE over IPv6 at start and when the WAN's IPv6 prefix changes,
/// on an epoch of its own: the IPv4 epoch is not restarted.
#[test]
fn pcp_announces_over_ipv6_at_start_and_when_the_wan_prefix_changes() {
    let mut bed = Bed::new("p6ann");
    bed.fw4_start();
    let l = announce_listener(&bed);
    start(&mut bed, "");
    let (r, from) = next_announce(&l, Duration::from_secs(5), |e| e < 5).expect("an ANNOUNCE");
    assert_eq!(from, server(), "{r:?}");
    // wait until both epochs have run a few seconds
    let epoch_of = |from: &str, client: IpAddr, to: SocketAddr| {
        let s = if client.is_ipv6() {
            sock(&bed, from)
        } else {
            udp_in(&bed.c, from)
        };
        pcp_client::exchange(&s, to, &Request::announce(client), retransmit())
            .unwrap()
            .epoch
    };
    let v4: SocketAddr = format!("{LAN_IP}:5351").parse().unwrap();
    let client4: IpAddr = CLIENT_IP.parse().unwrap();
    let t = Instant::now();
    while epoch_of(CLIENT6, v6(CLIENT6).into(), server()) < 3 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(250));
    }
    // the ISP hands out another prefix
    for (verb, cidr) in [("del", "2001:db8:3::1/64"), ("add", "2001:db8:4::1/64")] {
        let o = bed.exec(
            &bed.r,
            &[
                "ip",
                "-6",
                "addr",
                verb,
                cidr,
                "dev",
                &bed.wan_dev.clone(),
                "nodad",
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (r, from) = next_announce(&l, Duration::from_secs(5), |e| e < 2)
        .unwrap_or_else(|| panic!("no ANNOUNCE of a new epoch\n{}", bed.log()));
    assert_eq!(from, server(), "{r:?}");
    assert!(bed.log().contains("IPv6 prefixes now"), "{}", bed.log());
    assert!(epoch_of(CLIENT6, v6(CLIENT6).into(), server()) < 3);
    // over IPv4 the epoch goes on
    assert!(epoch_of(CLIENT_IP, client4, v4) >= 3);
}

/// A restart restores PCP pinholes from the IPv6 lease file with their
/// origin and nonce, under the policy of the new configuration: what it
/// now forbids is gone from the kernel too.
#[test]
fn a_restart_restores_pcp_pinholes_under_the_current_policy() {
    let mut bed = Bed::new("p6restart");
    bed.fw4_start();
    start(&mut bed, "");
    let ok = |r: Response| assert_eq!(r.result, result::SUCCESS, "{r:?}");
    ok(pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 3600)));
    ok(pcp(&bed, CLIENT6, &map(CLIENT6, 2, TCP, 9090, 3600)));
    ok(pcp(&bed, CLIENT6, &peer(CLIENT6, 3, 5000, PEER6, 6000)));
    let six = std::fs::read_to_string(bed.dir.join("leases6")).unwrap();
    assert!(
        six.contains(";PCP MAP 010101010101010101010101\n")
            && six.contains("PCP PEER 030303030303030303030303\n"),
        "{six}"
    );
    bed.kill9();
    // the new configuration denies port 9090
    let extra = "\nconfig perm_rule\n\toption action deny\n\toption ext_ports 9090\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 9090\n";
    let text = config(&bed, "").replacen(
        "\nconfig perm_rule",
        &format!("{extra}\nconfig perm_rule"),
        1,
    );
    let dir = bed.config(&text);
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    assert!(bed.tcp6_through(PEER6, CLIENT6, 8080), "restored");
    assert!(
        udp6_through(&bed, PEER6, 6000, CLIENT6, 5000),
        "PEER restored"
    );
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 9090), "forbidden now");
    // the nonce came back with it: it renews, another nonce may not
    let r = pcp(&bed, CLIENT6, &map(CLIENT6, 7, TCP, 8080, 600));
    assert_eq!(r.result, result::NOT_AUTHORIZED);
    ok(pcp(&bed, CLIENT6, &map(CLIENT6, 1, TCP, 8080, 600)));
    let six = std::fs::read_to_string(bed.dir.join("leases6")).unwrap();
    assert!(!six.contains(";9090;"), "{six}");
    let log = bed.log();
    assert!(log.contains("restored from the lease file"), "{log}");
}
