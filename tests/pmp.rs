//! NAT-PMP (RFC 6886) and PCP (RFC 6887) end to end: the real daemon in a
//! namespace bed, driven by the real client `natpmpc`, by the PCP client
//! of `tests/support/pcp_client.rs` and by raw datagrams, with WAN traffic
//! crossing (or not crossing) the mappings they make.

mod common;
#[path = "support/pcp_client.rs"]
mod pcp_client;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use pcp_client::{Map, Op, Opt, Request, Response, Retransmit, TCP, UDP, result};

const EXT: Ipv4Addr = Ipv4Addr::new(192, 0, 3, 1);
/// A second WAN peer, added to the WAN host for the FILTER test.
const PEER2_IP: &str = "192.0.3.3";

/// The permission rules of the default configuration (high ports only).
const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

/// A UCI `upnpd` file with `options` (tab-indented `option` lines).
fn upnpd(options: &str) -> String {
    format!(
        "config upnpd 'config'\n\toption internal_iface 'br-lan'\n\toption external_iface 'eth1'\n\
{options}{RULES}"
    )
}

fn started(name: &str, options: &str) -> (Bed, u32) {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let dir = bed.config(&upnpd(options));
    let pid = bed.start(&["--config-dir", dir.to_str().unwrap()]);
    (bed, pid)
}

fn server() -> SocketAddr {
    SocketAddr::from((LAN_IP.parse::<Ipv4Addr>().unwrap(), 5351))
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// Retransmission for the bed: 250 ms doubling up to 2 s, 6 sends (about
/// 8 s in all), patient enough for a loaded machine.
fn retransmit() -> Retransmit {
    Retransmit {
        initial: Duration::from_millis(250),
        max_rt: Duration::from_secs(2),
        max_count: 6,
    }
}

/// One PCP exchange from LAN address `from`.
fn pcp(bed: &Bed, from: &str, req: &Request) -> Response {
    let sock = udp_in(&bed.c, from);
    pcp_client::exchange(&sock, server(), req, retransmit())
        .unwrap_or_else(|e| panic!("{req:?}: {e}\nlog:\n{}", bed.log()))
}

/// A MAP request with a suggested external port.
fn map(from: &str, nonce: u8, proto: u8, iport: u16, eport: u16, lifetime: u32) -> Request {
    let mut r = Request::map(ip(from), [nonce; 12], proto, iport, lifetime);
    if let Op::Map(m) = &mut r.op {
        m.suggested_port = eport;
    }
    r
}

/// Sends `bytes` from LAN address `from` and returns the first datagram
/// the server answers with. Each call uses a fresh socket, so a late
/// answer to an earlier retransmission cannot pass for this one's.
fn ask_raw(bed: &Bed, from: &str, bytes: &[u8]) -> Vec<u8> {
    ask_on(&udp_in(&bed.c, from), bytes)
}

/// Sends `bytes` on `sock` (retransmitting a few times) and returns the
/// first datagram the server answers with.
fn ask_on(sock: &UdpSocket, bytes: &[u8]) -> Vec<u8> {
    pcp_client::exchange_raw(sock, server(), bytes, retransmit(), |_| true)
        .unwrap_or_else(|e| panic!("no answer to {bytes:?}: {e}"))
}

/// A NAT-PMP mapping request (RFC 6886 §3.3): OP 1 UDP, 2 TCP.
fn natpmp_map(op: u8, iport: u16, eport: u16, lifetime: u32) -> Vec<u8> {
    let mut b = vec![0, op, 0, 0];
    b.extend_from_slice(&iport.to_be_bytes());
    b.extend_from_slice(&eport.to_be_bytes());
    b.extend_from_slice(&lifetime.to_be_bytes());
    b
}

/// (result, internal port, external port, lifetime) of a 16-byte NAT-PMP
/// mapping response, checking the OP.
fn natpmp_map_response(b: &[u8], op: u8) -> (u16, u16, u16, u32) {
    assert_eq!(b.len(), 16, "{b:?}");
    assert_eq!((b[0], b[1]), (0, 128 + op), "{b:?}");
    let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let lifetime = u32::from_be_bytes([b[12], b[13], b[14], b[15]]);
    (be16(2), be16(8), be16(10), lifetime)
}

#[test]
fn natpmpc_maps_tcp_and_udp_and_traffic_crosses() {
    let (bed, _) = started("pmnpc", "");
    let out = bed.natpmpc(&[]);
    assert!(out.contains("Public IP address : 192.0.3.1"), "{out}");
    assert!(out.contains("epoch = "), "{out}");

    let out = bed.natpmpc(&["-a", "7000", "27000", "tcp", "600"]);
    assert!(
        out.contains("Mapped public port 7000 protocol TCP to local port 27000 liftime 600"),
        "{out}"
    );
    assert_eq!(bed.dnat_elements(), vec!["tcp . 7000"]);
    assert!(
        bed.tcp_passes(7000, 27000),
        "TCP through the NAT-PMP mapping"
    );

    let out = bed.natpmpc(&["-a", "7001", "27001", "udp", "600"]);
    assert!(
        out.contains("Mapped public port 7001 protocol UDP to local port 27001 liftime 600"),
        "{out}"
    );
    assert!(
        bed.udp_passes(7001, 27001),
        "UDP through the NAT-PMP mapping"
    );
    assert_eq!(bed.dnat_elements(), vec!["tcp . 7000", "udp . 7001"]);

    // lifetime 0 deletes (RFC 6886 §3.4): the answer has external port 0
    let out = bed.natpmpc(&["-a", "7000", "27000", "tcp", "0"]);
    assert!(
        out.contains("Mapped public port 0 protocol TCP to local port 27000 liftime 0"),
        "{out}"
    );
    assert!(!bed.tcp_passes(7000, 27000), "deleted mapping still passes");
    let out = bed.natpmpc(&["-a", "7001", "27001", "udp", "0"]);
    assert!(out.contains("liftime 0"), "{out}");
    assert!(!bed.udp_passes(7001, 27001), "deleted mapping still passes");
    assert!(bed.dnat_elements().is_empty());
    let log = bed.log();
    assert!(log.contains("NAT-PMP 7000 tcp"), "{log}");
}

#[test]
fn pcp_announce_map_renew_and_delete() {
    let (bed, _) = started(
        "pmmap",
        "\toption min_lifetime '120'\n\toption max_lifetime '3600'\n",
    );
    // ANNOUNCE (RFC 6887 §14.1): SUCCESS, lifetime 0, a young epoch
    let r = pcp(&bed, CLIENT_IP, &Request::announce(ip(CLIENT_IP)));
    assert_eq!((r.version, r.opcode, r.result), (2, 0, result::SUCCESS));
    assert_eq!((r.lifetime, r.len, r.reserved), (0, 24, [0; 12]));
    assert!(r.epoch < 60, "epoch {}", r.epoch);

    // MAP: the suggested port is free, the lifetime is raised to the minimum
    let req = map(CLIENT_IP, 1, TCP, 27100, 7100, 30);
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    assert_eq!(
        (r.external_port, r.external_v4(), r.lifetime),
        (7100, Some(EXT), 120)
    );
    assert_eq!(r.nonce, Some([1; 12]));
    assert!(bed.tcp_passes(7100, 27100), "TCP through the PCP mapping");
    assert_eq!(bed.dnat_elements(), vec!["tcp . 7100"]);

    // renewal with the same nonce: same port, lifetime cut to the maximum,
    // whatever port it suggests
    let renew = map(CLIENT_IP, 1, TCP, 27100, 9999, 100_000);
    let r = pcp(&bed, CLIENT_IP, &renew);
    assert_eq!(
        (r.result, r.external_port, r.lifetime),
        (result::SUCCESS, 7100, 3600)
    );

    // another nonce may neither renew nor delete it (RFC 6887 §11.3, §15)
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 2, TCP, 27100, 7100, 600));
    assert_eq!(r.result, result::NOT_AUTHORIZED, "{r:?}");
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 2, TCP, 27100, 0, 0));
    assert_eq!(r.result, result::NOT_AUTHORIZED, "{r:?}");
    assert!(bed.tcp_passes(7100, 27100), "refused delete removed it");

    // delete with its nonce: lifetime 0 in the answer, traffic stops
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 1, TCP, 27100, 0, 0));
    assert_eq!((r.result, r.lifetime), (result::SUCCESS, 0), "{r:?}");
    assert!(bed.dnat_elements().is_empty());
    assert!(!bed.tcp_passes(7100, 27100), "deleted mapping still passes");
    // deleting again still succeeds (a lost answer is retransmitted)
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 1, TCP, 27100, 0, 0));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");

    // UDP too
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 3, UDP, 27101, 7101, 600));
    assert_eq!(
        (r.result, r.external_port, r.lifetime),
        (result::SUCCESS, 7101, 600)
    );
    assert!(bed.udp_passes(7101, 27101), "UDP through the PCP mapping");
    let log = bed.log();
    assert!(log.contains("PCP MAP"), "{log}");
    // the nonce authorises renewals and deletions: never logged
    assert!(!log.contains(&"01".repeat(12)), "{log}");
}

/// Issue 13 item 6. A PCP mapping keeps its nonce across a restart (the
/// lease file holds it, readable by root only, and no log line does);
/// UPnP mappings whose descriptions read like NAT-PMP's or PCP's come
/// back as UPnP mappings, so neither protocol's clients, nor a nonce the
/// UPnP client chose, can take them over.
#[test]
fn lease_origin_and_pcp_nonce_across_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let mut bed = Bed::new("pmlease");
    bed.fw4_start();
    let leases = bed.dir.join("leases");
    let dir = bed.config(&upnpd(&format!(
        "\toption upnp_lease_file '{}'\n",
        leases.display()
    )));
    let dir = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &dir]);
    let r = pcp(
        &bed,
        CLIENT_IP,
        &map(CLIENT_IP, 0xab, TCP, 27200, 7200, 600),
    );
    assert_eq!(
        (r.result, r.external_port),
        (result::SUCCESS, 7200),
        "{r:?}"
    );
    // IGDv1 lease 0: permanent
    for (eport, iport, lease, desc) in [
        ("7300", "27300", "0", "PCP MAP 0c0c0c0c0c0c0c0c0c0c0c0c"),
        ("7400", "27400", "600", "NAT-PMP 7400 tcp"),
    ] {
        let (code, t) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:1",
            "AddPortMapping",
            &add_args(eport, "TCP", iport, CLIENT_IP, lease, desc),
        );
        assert_eq!(code, 200, "{t}");
    }
    let nonce = "ab".repeat(12);
    let log = bed.log();
    assert!(!log.contains(&nonce), "{log}");
    let text = std::fs::read_to_string(&leases).unwrap();
    assert!(
        text.contains(&format!("TCP:7200:{CLIENT_IP}:27200:")),
        "{text}"
    );
    assert!(text.contains(&nonce), "{text}");
    let mode = std::fs::metadata(&leases).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    bed.kill9();
    bed.start(&["--config-dir", &dir]);
    let mut all = vec!["tcp . 7200", "tcp . 7300", "tcp . 7400"];
    assert_eq!(bed.dnat_elements(), all);
    // the PCP client renews with its nonce and keeps its port; another
    // nonce is refused (RFC 6887 §11.3)
    let r = pcp(
        &bed,
        CLIENT_IP,
        &map(CLIENT_IP, 0xab, TCP, 27200, 9999, 600),
    );
    assert_eq!(
        (r.result, r.external_port),
        (result::SUCCESS, 7200),
        "{r:?}"
    );
    let r = pcp(
        &bed,
        CLIENT_IP,
        &map(CLIENT_IP, 0xcd, TCP, 27200, 7200, 600),
    );
    assert_eq!(r.result, result::NOT_AUTHORIZED, "{r:?}");
    // neither the description's "nonce" nor NAT-PMP deletes them: they
    // hold no PCP or NAT-PMP mapping of those internal ports, and deleting
    // what does not exist succeeds (RFC 6887 §15, RFC 6886 §3.4)
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 0x0c, TCP, 27300, 0, 0));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    let b = ask_raw(&bed, CLIENT_IP, &natpmp_map(2, 27400, 0, 0));
    assert_eq!(natpmp_map_response(&b, 2).0, 0, "{b:?}");
    assert_eq!(bed.dnat_elements(), all);
    // the PCP client deletes its own
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 0xab, TCP, 27200, 0, 0));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    all.remove(0);
    assert_eq!(bed.dnat_elements(), all);
}

#[test]
fn pcp_prefer_failure_and_filter() {
    let (bed, _) = started("pmflt", "");
    // .3 holds 7200
    let r = pcp(&bed, CLIENT2_IP, &map(CLIENT2_IP, 7, TCP, 27200, 7200, 600));
    assert_eq!((r.result, r.external_port), (result::SUCCESS, 7200));

    // PREFER_FAILURE: the taken port is not replaced by another one
    let mut req = map(CLIENT_IP, 8, TCP, 27201, 7200, 600);
    req.options = vec![Opt::PreferFailure];
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(r.result, result::CANNOT_PROVIDE_EXTERNAL, "{r:?}");
    assert_eq!(bed.dnat_elements(), vec!["tcp . 7200"]);
    // without it, another port is granted (RFC 6887 §11.3)
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 8, TCP, 27201, 7200, 600));
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    assert_ne!(r.external_port, 7200);
    // with it, a free suggested port is granted exactly
    let mut req = map(CLIENT_IP, 9, TCP, 27202, 7202, 600);
    req.options = vec![Opt::PreferFailure];
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(
        (r.result, r.external_port),
        (result::SUCCESS, 7202),
        "{r:?}"
    );

    // FILTER (RFC 6887 §13.3): only the allowed remote peer gets through
    bed.add_addr(&bed.w, "192.0.3.3/24", "w-eth0");
    let mut req = map(CLIENT_IP, 10, TCP, 27300, 7300, 600);
    req.options = vec![Opt::filter_v4(ip(PEER_IP), 32, 0)];
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(
        (r.result, r.external_port),
        (result::SUCCESS, 7300),
        "{r:?}"
    );
    // the understood option is echoed
    assert_eq!(r.options.len(), 1, "{r:?}");
    assert_eq!(r.options[0].0, 3);
    assert!(
        bed.dnat_elements()
            .contains(&"192.0.3.2 . tcp . 7300".to_string()),
        "{:?}",
        bed.dnat_elements()
    );
    assert!(
        bed.tcp_from_source(&bed.w, PEER_IP, WAN_IP, 7300, 27300),
        "the allowed peer is refused"
    );
    assert!(
        !bed.tcp_from_source(&bed.w, PEER2_IP, WAN_IP, 7300, 27300),
        "another peer passes the filter"
    );
    // a renewal with prefix length 0 removes the filter
    let mut req = map(CLIENT_IP, 10, TCP, 27300, 7300, 600);
    req.options = vec![Opt::Filter {
        prefix_len: 0,
        port: 0,
        peer: Ipv4Addr::UNSPECIFIED.into(),
    }];
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(
        (r.result, r.external_port),
        (result::SUCCESS, 7300),
        "{r:?}"
    );
    assert!(
        bed.tcp_from_source(&bed.w, PEER2_IP, WAN_IP, 7300, 27300),
        "the unfiltered mapping refuses a peer"
    );
}

#[test]
fn pcp_third_party_refused_by_default_allowed_by_configuration() {
    let (mut bed, _) = started("pmtp", "");
    let mut req = map(CLIENT_IP, 11, TCP, 27500, 7500, 600);
    req.options = vec![Opt::ThirdParty(ip(CLIENT2_IP).into())];
    // RFC 6887 §13.1: a server not configured for it does not support it
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(r.result, result::UNSUPP_OPTION, "{r:?}");
    assert!(bed.dnat_elements().is_empty());

    // allowed, but secure mode still keeps a host to its own address
    bed.stop();
    let dir = bed.config(&upnpd("\toption pcp_allow_thirdparty '1'\n"));
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(r.result, result::NOT_AUTHORIZED, "{r:?}");

    // with secure mode off, the mapping is made for the third party
    bed.config(&upnpd(
        "\toption pcp_allow_thirdparty '1'\n\toption secure_mode '0'\n",
    ));
    bed.signal("HUP");
    assert!(
        bed.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        bed.log()
    );
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(
        (r.result, r.external_port, r.external_v4()),
        (result::SUCCESS, 7500, Some(EXT)),
        "{r:?}"
    );
    let dnat = bed.nft("list map inet fw4 upnp_dnat");
    assert!(
        dnat.contains("tcp . 7500") && dnat.contains("192.168.77.3 . 27500"),
        "{dnat}"
    );
    assert!(bed.tcp_passes(7500, 27500));
    // THIRD_PARTY naming the sender itself is malformed (§13.1)
    let mut own = map(CLIENT_IP, 12, TCP, 27501, 7501, 600);
    own.options = vec![Opt::ThirdParty(ip(CLIENT_IP).into())];
    let r = pcp(&bed, CLIENT_IP, &own);
    assert_eq!(r.result, result::MALFORMED_REQUEST, "{r:?}");
}

#[test]
fn pcp_peer_and_address_mismatch() {
    let (bed, _) = started("pmpeer", "");
    // PEER (RFC 6887 §12): the response carries the assigned external port
    let peer = Request::peer(
        ip(CLIENT_IP),
        Map {
            nonce: [13; 12],
            protocol: UDP,
            internal_port: 27400,
            suggested_port: 7450,
            suggested_addr: None,
        },
        ip(PEER_IP),
        3478,
        600,
    );
    let r = pcp(&bed, CLIENT_IP, &peer);
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    assert_eq!(
        (r.external_port, r.external_v4(), r.peer_port),
        (7450, Some(EXT), 3478)
    );
    assert_eq!(
        r.peer_addr.and_then(|a| a.to_ipv4_mapped()),
        Some(ip(PEER_IP))
    );
    // the flow leaves through the assigned external port …
    let lan = in_netns(&bed.c, || UdpSocket::bind((CLIENT_IP, 27400)).unwrap());
    let wan = in_netns(&bed.w, || UdpSocket::bind((PEER_IP, 3478)).unwrap());
    wan.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    lan.send_to(b"peer-out", (PEER_IP, 3478)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = wan
        .recv_from(&mut buf)
        .expect("the PEER flow reaches the peer");
    assert_eq!(&buf[..n], b"peer-out");
    assert_eq!(from, SocketAddr::from((EXT, 7450)));
    // … and the peer reaches the host through it, from any of its ports
    let wan2 = in_netns(&bed.w, || UdpSocket::bind((PEER_IP, 0)).unwrap());
    lan.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    wan2.send_to(b"peer-in", (EXT, 7450)).unwrap();
    let (n, _) = lan.recv_from(&mut buf).expect("the peer reaches the host");
    assert_eq!(&buf[..n], b"peer-in");

    // ADDRESS_MISMATCH (RFC 6887 §8.3): the client field is not the source
    let r = pcp(&bed, CLIENT_IP, &Request::announce(ip(CLIENT2_IP)));
    assert_eq!(r.result, result::ADDRESS_MISMATCH, "{r:?}");
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT2_IP, 14, TCP, 27600, 7600, 600));
    assert_eq!(r.result, result::ADDRESS_MISMATCH, "{r:?}");
    assert_eq!(r.nonce, Some([14; 12]));
    assert_eq!(bed.dnat_elements(), vec!["192.0.3.2 . udp . 7450"]);
}

#[test]
fn collisions_across_upnp_natpmp_and_pcp() {
    let (bed, _) = started("pmcol", "");
    // a UPnP mapping held by .3 on 7700
    let (code, text) = bed.soap(
        CLIENT2_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("7700", "TCP", "27700", CLIENT2_IP, "600", "upnp"),
    );
    assert_eq!(code, 200, "{text}");
    // NAT-PMP from .2 asking for 7700 is given the next free port
    let r = ask_raw(&bed, CLIENT_IP, &natpmp_map(2, 27701, 7700, 600));
    assert_eq!(natpmp_map_response(&r, 2), (0, 27701, 7701, 600));
    // PCP with PREFER_FAILURE for 7700: CANNOT_PROVIDE_EXTERNAL
    let mut req = map(CLIENT_IP, 15, TCP, 27702, 7700, 600);
    req.options = vec![Opt::PreferFailure];
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!(r.result, result::CANNOT_PROVIDE_EXTERNAL, "{r:?}");

    // a NAT-PMP mapping held by .2 on 7800 …
    let r = ask_raw(&bed, CLIENT_IP, &natpmp_map(2, 27800, 7800, 600));
    assert_eq!(natpmp_map_response(&r, 2), (0, 27800, 7800, 600));
    // … refuses UPnP from .3 for 7800 with 718
    let (code, text) = bed.soap(
        CLIENT2_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("7800", "TCP", "27800", CLIENT2_IP, "600", "upnp"),
    );
    assert_eq!((code, fault_code(&text)), (500, Some(718)), "{text}");
    // … PCP from .3 without PREFER_FAILURE gets another port
    let r = pcp(
        &bed,
        CLIENT2_IP,
        &map(CLIENT2_IP, 16, TCP, 27801, 7800, 600),
    );
    assert_eq!(r.result, result::SUCCESS, "{r:?}");
    assert_ne!(r.external_port, 7800);
    let pcp_port = r.external_port;
    // … and NAT-PMP from .3 does not get its companion port UDP 7800
    // (RFC 6886 §3.3: reserved for the host holding TCP 7800)
    let r = ask_raw(&bed, CLIENT2_IP, &natpmp_map(1, 27802, 7800, 600));
    let (code, iport, udp_port, _) = natpmp_map_response(&r, 1);
    assert_eq!((code, iport), (0, 27802));
    assert_ne!(udp_port, 7800);

    // one mapping per port in the kernel
    let mut want = vec![
        "tcp . 7700".to_string(),
        "tcp . 7701".to_string(),
        "tcp . 7800".to_string(),
        format!("tcp . {pcp_port}"),
        format!("udp . {udp_port}"),
    ];
    want.sort();
    assert_eq!(bed.dnat_elements(), want);
    // and each reaches its own internal port
    assert!(bed.tcp_passes(7700, 27700));
    assert!(bed.tcp_passes(7701, 27701));
    assert!(bed.tcp_passes(7800, 27800));
}

/// With PCP switched off, a PCP request gets NAT-PMP's 8-byte
/// "unsupported version" answer (RFC 6887 §9: the client falls back),
/// and NAT-PMP keeps working.
#[test]
fn pcp_off_answers_as_a_natpmp_only_server() {
    let (bed, _) = started("pmoff", "\toption enable_pcp '0'\n");
    let r = ask_raw(
        &bed,
        CLIENT_IP,
        &Request::announce(ip(CLIENT_IP)).to_bytes(),
    );
    assert_eq!(r.len(), 8, "{r:?}");
    assert_eq!(&r[..4], &[0, 0x80, 0, 1]);
    let req = map(CLIENT_IP, 19, TCP, 28000, 8000, 600);
    let r = pcp(&bed, CLIENT_IP, &req);
    assert_eq!((r.version, r.result), (0, result::UNSUPP_VERSION), "{r:?}");
    assert!(bed.dnat_elements().is_empty());
    let out = bed.natpmpc(&["-a", "8000", "28000", "tcp", "600"]);
    assert!(
        out.contains("Mapped public port 8000 protocol TCP to local port 28000 liftime 600"),
        "{out}"
    );
}

/// The result code of a PCP error response, checking that it copies the
/// request's opcode with R set and is padded to a multiple of 4.
fn pcp_error(resp: &[u8], req: &[u8]) -> u8 {
    assert!(resp.len() >= 24 && resp.len() % 4 == 0, "{resp:?}");
    assert!(resp.len() <= 1100, "{} bytes", resp.len());
    assert_eq!(resp[0], 2, "{resp:?}");
    assert_eq!(resp[1], req[1] | 0x80, "{resp:?}");
    resp[3]
}

#[test]
fn malformed_packets_get_exact_errors_or_silence() {
    let (bed, pid) = started("pmbad", "");
    let announce = Request::announce(ip(CLIENT_IP)).to_bytes();
    let valid_map = map(CLIENT_IP, 17, TCP, 27900, 7900, 600).to_bytes();

    // Silence: too short to carry version and opcode, R bit set (RFC 6886
    // §3.5, RFC 6887 §8.3), and NAT-PMP mapping requests cut short. Each
    // is followed by an ANNOUNCE: the daemon answers in order, so the
    // first datagram back must be the ANNOUNCE's answer.
    let mut r_bit = announce.clone();
    r_bit[1] |= 0x80;
    let silent: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![2],
        vec![0, 0x80],
        vec![0, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        r_bit,
        vec![2, 0xff, 0, 0],
        vec![0, 1],
        vec![0, 2, 0, 0, 0x6d, 0x60],
        natpmp_map(2, 27900, 7900, 600)[..11].to_vec(),
    ];
    for pkt in &silent {
        let sock = udp_in(&bed.c, CLIENT_IP);
        sock.send_to(pkt, server()).unwrap();
        let back = ask_on(&sock, &announce);
        assert_eq!(
            (back.len(), back[1], back[3]),
            (24, 0x80, result::SUCCESS),
            "{pkt:?} was answered: {back:?}"
        );
    }

    // NAT-PMP: an unknown opcode is echoed with result 5 (RFC 6886 §3.5)
    let r = ask_raw(&bed, CLIENT_IP, &[0, 3, 0, 0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(r.len(), 10, "{r:?}");
    assert_eq!(&r[..4], &[0, 0x83, 0, 5]);
    assert_eq!(&r[8..], &[5, 6]);
    let r = ask_raw(&bed, CLIENT_IP, &[0, 127]);
    assert_eq!((r.len(), &r[..4]), (8, &[0, 0xff, 0, 5][..]));
    // a public address request with trailing bytes is still one
    let r = ask_raw(&bed, CLIENT_IP, &[0, 0, 9, 9, 9, 9]);
    assert_eq!(
        (r.len(), &r[..4], &r[8..]),
        (12, &[0, 128, 0, 0][..], &[192, 0, 3, 1][..])
    );

    // Versions 1 and 3: UNSUPP_VERSION naming version 2 (RFC 6887 §9)
    for v in [1u8, 3, 0xff] {
        let mut pkt = announce.clone();
        pkt[0] = v;
        let r = ask_raw(&bed, CLIENT_IP, &pkt);
        assert_eq!(pcp_error(&r, &pkt), result::UNSUPP_VERSION, "version {v}");
        // a short one too
        let r = ask_raw(&bed, CLIENT_IP, &[v, 0]);
        assert_eq!(pcp_error(&r, &[v, 0]), result::UNSUPP_VERSION);
    }

    // PCP size rules (RFC 6887 §7): not a multiple of 4, shorter than the
    // header, longer than 1100 octets
    let mut odd = announce.clone();
    odd.push(0);
    let short = announce[..20].to_vec();
    let mut big = valid_map.clone();
    big.resize(1104, 0);
    let mut huge = valid_map.clone();
    huge.resize(4000, 0);
    for pkt in [&odd, &short, &big, &huge] {
        let r = ask_raw(&bed, CLIENT_IP, pkt);
        assert_eq!(
            pcp_error(&r, pkt),
            result::MALFORMED_REQUEST,
            "{} bytes",
            pkt.len()
        );
        // a copy of the request, padded to a multiple of 4 and to the
        // header, and never longer than 1100 octets (RFC 6887 §7.2, §8.3)
        assert_eq!(
            r.len(),
            pkt.len().next_multiple_of(4).clamp(24, 1100),
            "{} bytes",
            pkt.len()
        );
    }
    // a MAP cut inside its opcode data
    let cut = valid_map[..44].to_vec();
    let r = ask_raw(&bed, CLIENT_IP, &cut);
    assert_eq!(pcp_error(&r, &cut), result::MALFORMED_REQUEST);
    // unknown opcodes
    for op in [3u8, 5, 0x7f] {
        let mut pkt = announce.clone();
        pkt[1] = op;
        let r = ask_raw(&bed, CLIENT_IP, &pkt);
        assert_eq!(pcp_error(&r, &pkt), result::UNSUPP_OPCODE, "opcode {op}");
    }

    // options (RFC 6887 §7.3)
    let with_opt = |code: u8, len: u16, data: &[u8]| {
        let mut p = valid_map.clone();
        p.extend_from_slice(&[code, 0]);
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(data);
        p
    };
    let cases: Vec<(Vec<u8>, u8, &str)> = vec![
        // FILTER must carry 20 bytes
        (
            with_opt(3, 16, &[0; 16]),
            result::MALFORMED_OPTION,
            "short FILTER",
        ),
        // an option whose length runs past the message
        (
            with_opt(3, 200, &[0; 20]),
            result::MALFORMED_OPTION,
            "overrun",
        ),
        // PREFER_FAILURE carries nothing, and only once
        (
            with_opt(2, 4, &[0; 4]),
            result::MALFORMED_OPTION,
            "PREFER_FAILURE data",
        ),
        (
            [with_opt(2, 0, &[]), vec![2, 0, 0, 0]].concat(),
            result::MALFORMED_OPTION,
            "PREFER_FAILURE twice",
        ),
        // THIRD_PARTY is 16 bytes
        (
            with_opt(1, 4, &[0; 4]),
            result::MALFORMED_OPTION,
            "short THIRD_PARTY",
        ),
        // an unknown mandatory option
        (
            with_opt(0x7f, 0, &[]),
            result::UNSUPP_OPTION,
            "mandatory 127",
        ),
        // an option header cut short leaves a length that is not a
        // multiple of 4: the size rule catches it first
        (
            [valid_map.clone(), vec![3, 0]].concat(),
            result::MALFORMED_REQUEST,
            "half an option header",
        ),
    ];
    for (pkt, want, what) in &cases {
        let r = ask_raw(&bed, CLIENT_IP, pkt);
        assert_eq!(pcp_error(&r, pkt), *want, "{what}: {r:?}");
    }
    // an unknown optional option is ignored and the MAP succeeds
    let opt = with_opt(0x80, 4, &[1, 2, 3, 4]);
    let r = ask_raw(&bed, CLIENT_IP, &opt);
    let resp = pcp_client::parse_response(&r).unwrap();
    assert_eq!(
        (resp.result, resp.external_port),
        (result::SUCCESS, 7900),
        "{resp:?}"
    );
    assert!(resp.options.is_empty(), "an ignored option was echoed");

    // Random junk: a few thousand datagrams with plausible first bytes.
    let sock = udp_in(&bed.c, CLIENT_IP);
    let mut x: u32 = 0x2545_f491;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for i in 0..3000 {
        let len = (next() % 1200) as usize;
        let mut pkt: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(b) = pkt.first_mut() {
            *b = [0, 1, 2, 3][i % 4];
        }
        if let Some(b) = pkt.get_mut(1) {
            *b &= 0x83;
        }
        let _ = sock.send_to(&pkt, server());
        if i % 64 == 0 {
            // drain what came back so the socket buffer never fills
            while pcp_client::recv_any(&sock, Duration::from_millis(1))
                .unwrap()
                .is_some()
            {}
        }
    }
    while pcp_client::recv_any(&sock, Duration::from_millis(200))
        .unwrap()
        .is_some()
    {}
    assert!(alive(pid), "the daemon died\n{}", bed.log());
    // and it still serves. The junk made NAT-PMP mappings of random
    // ports; internal port 0 with lifetime 0 deletes them all (§3.4).
    for op in [1, 2] {
        let r = ask_raw(&bed, CLIENT_IP, &natpmp_map(op, 0, 0, 0));
        assert_eq!(natpmp_map_response(&r, op), (0, 0, 0, 0));
    }
    let r = ask_raw(&bed, CLIENT_IP, &[0, 0]);
    assert_eq!(&r[8..12], &[192, 0, 3, 1]);
    let r = pcp(&bed, CLIENT_IP, &map(CLIENT_IP, 18, UDP, 27901, 7901, 600));
    assert_eq!((r.result, r.external_port), (result::SUCCESS, 7901));
    assert_eq!(bed.dnat_elements(), vec!["tcp . 7900", "udp . 7901"]);
    assert!(
        bed.http_get("/rootDesc.xml")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(!bed.log().contains("panicked"), "{}", bed.log());
}

#[test]
fn unsolicited_announcements_after_start() {
    let mut bed = Bed::new("pmann");
    bed.fw4_start();
    // RFC 6886 §3.2.1: clients listen on 224.0.0.1:5350
    let sock = multicast_listener(&bed.c, Ipv4Addr::new(224, 0, 0, 1), 5350);
    let t0 = Instant::now();
    bed.start(&[]);
    let mut natpmp = Vec::new();
    let mut pcp = Vec::new();
    while t0.elapsed() < Duration::from_secs(6) {
        let Some((b, from)) = pcp_client::recv_any(&sock, Duration::from_millis(100)).unwrap()
        else {
            continue;
        };
        assert_eq!(from, SocketAddr::from((ip(LAN_IP), 5351)), "{b:?}");
        let at = t0.elapsed();
        match b.first() {
            Some(0) => {
                // public address response: OP 128, success, the address
                assert_eq!(b.len(), 12, "{b:?}");
                assert_eq!(&b[..4], &[0, 128, 0, 0]);
                assert_eq!(&b[8..], &[192, 0, 3, 1]);
                natpmp.push((at, u32::from_be_bytes([b[4], b[5], b[6], b[7]])));
            }
            Some(2) => {
                let r = pcp_client::parse_response(&b).unwrap();
                assert_eq!((r.opcode, r.result, r.lifetime, r.len), (0, 0, 0, 24));
                pcp.push((at, r.epoch));
            }
            _ => panic!("unexpected announcement {b:?}"),
        }
    }
    // RFC 6886 §3.2.1: 250 ms apart, doubling: 0, 0.25, 0.75, 1.75, 3.75 s
    assert!(natpmp.len() >= 3, "NAT-PMP announcements: {natpmp:?}");
    assert!(pcp.len() >= 3, "PCP announcements: {pcp:?}");
    for seen in [&natpmp, &pcp] {
        // a fresh epoch, never going back
        assert!(seen.iter().all(|(_, e)| *e < 10), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].1 <= w[1].1), "{seen:?}");
        // spread out, not a burst
        let first = seen[0].0;
        let third = seen[2].0;
        assert!(
            third - first >= Duration::from_millis(500),
            "announcements too close: {seen:?}"
        );
        // (generous: the machine may be loaded)
        assert!(
            third - first <= Duration::from_secs(4),
            "announcements too slow: {seen:?}"
        );
    }
}
