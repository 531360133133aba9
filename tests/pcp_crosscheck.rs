//! The test PCP client against the daemon's PCP handler: two codecs written
//! separately from RFC 6887 must agree, in memory and over loopback UDP
//! (with a lost first datagram to exercise retransmission).

#[path = "support/pcp_client.rs"]
mod pcp_client;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use pcp_client::{Map, Opt, Request, Retransmit, TCP, UDP, result};
use rupnpd::config::Config;
use rupnpd::core::Core;
use rupnpd::core::facts::FixedFacts;
use rupnpd::core::lan::{Lan, Lans};
use rupnpd::core::natpmp_pcp::{self, Server, Settings};
use rupnpd::core::pinhole::PinPolicy;
use rupnpd::core::policy::Policy;

/// A router with no listeners.
static NO_FACTS: FixedFacts = FixedFacts::new();

const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

fn core() -> Core {
    Core::new(
        Policy::from_config(&Config::default(), vec![]),
        PinPolicy::from_config(&Config::default()),
    )
}

fn cfg() -> Settings {
    Settings::from_config(&Config::default())
}

/// One LAN: 192.168.1.0/24 and fd77::/64.
static LANS: LazyLock<Lans> = LazyLock::new(|| {
    Lans::new(vec![Lan {
        dev: "br-lan".into(),
        addr: Ipv4Addr::new(192, 168, 1, 1),
        nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        nets6: vec![("fd77::1".parse().unwrap(), 64)],
        http_port: 5000,
    }])
});

fn serve(core: &mut Core, cfg: &Settings, from: impl Into<IpAddr>, pkt: &[u8]) -> Option<Vec<u8>> {
    let ctx = Server {
        settings: cfg,
        external: Some(EXT),
        epoch: 42,
        lans: &LANS,
        now: 1_000,
        facts: &NO_FACTS,
    };
    natpmp_pcp::handle(core, &ctx, from.into(), pkt).map(|r| r.ok)
}

fn ask(core: &mut Core, from: impl Into<IpAddr>, req: &Request) -> pcp_client::Response {
    let raw = serve(core, &cfg(), from, &req.to_bytes()).expect("a reply");
    let resp = pcp_client::parse_response(&raw).expect("a valid response");
    assert!(pcp_client::answers(req, &resp), "{req:?} → {resp:?}");
    resp
}

#[test]
fn map_peer_announce_in_memory() {
    let mut c = core();
    let me = Ipv4Addr::new(192, 168, 1, 2);
    let r = ask(&mut c, me, &Request::announce(me));
    assert_eq!((r.result, r.epoch, r.len), (result::SUCCESS, 42, 24));

    let mut req = Request::map(me, [9; 12], TCP, 7200, 3600);
    if let pcp_client::Op::Map(m) = &mut req.op {
        m.suggested_port = 27200;
    }
    req.options = vec![Opt::filter_v4(Ipv4Addr::new(198, 51, 100, 0), 24, 0)];
    let r = ask(&mut c, me, &req);
    assert_eq!(r.result, result::SUCCESS);
    assert_eq!(
        (r.external_port, r.external_v4(), r.lifetime),
        (27200, Some(EXT), 3600)
    );
    assert_eq!(r.options.len(), 1);

    let peer = Request::peer(
        me,
        Map {
            nonce: [3; 12],
            protocol: UDP,
            internal_port: 5000,
            suggested_port: 0,
            suggested_addr: None,
        },
        Ipv4Addr::new(198, 51, 100, 9),
        3478,
        600,
    );
    let r = ask(&mut c, me, &peer);
    assert_eq!(
        (r.result, r.external_port, r.peer_port),
        (result::SUCCESS, 5000, 3478)
    );

    // PREFER_FAILURE in PEER, an unknown mandatory option, a bad length
    let mut bad = peer.clone();
    bad.options = vec![Opt::PreferFailure];
    assert_eq!(ask(&mut c, me, &bad).result, result::MALFORMED_REQUEST);
    let mut bad = req.clone();
    bad.options = vec![Opt::Raw {
        code: 99,
        data: vec![],
    }];
    assert_eq!(ask(&mut c, me, &bad).result, result::UNSUPP_OPTION);
    bad.options = vec![Opt::Raw {
        code: 2,
        data: vec![1],
    }];
    assert_eq!(ask(&mut c, me, &bad).result, result::MALFORMED_OPTION);
    bad.options = vec![Opt::Raw {
        code: 200,
        data: vec![1, 2, 3, 4, 5],
    }];
    assert_eq!(ask(&mut c, me, &bad).result, result::SUCCESS);

    // deletion
    let mut del = req.clone();
    del.lifetime = 0;
    del.options.clear();
    let r = ask(&mut c, me, &del);
    assert_eq!((r.result, r.lifetime), (result::SUCCESS, 0));
    assert_eq!(c.table().len(), 1);
}

#[test]
fn version_negotiation_and_silence() {
    let mut c = core();
    let me = Ipv4Addr::new(192, 168, 1, 2);
    let mut b = Request::announce(me).to_bytes();
    b[0] = 1;
    let r = pcp_client::parse_response(&serve(&mut c, &cfg(), me, &b).unwrap()).unwrap();
    assert_eq!((r.version, r.result), (2, result::UNSUPP_VERSION));
    // a server with PCP switched off answers like NAT-PMP, and the client
    // sees version 0
    let natpmp_only = Settings {
        pcp: false,
        ..cfg()
    };
    let raw = serve(&mut c, &natpmp_only, me, &Request::announce(me).to_bytes()).unwrap();
    let r = pcp_client::parse_response(&raw).unwrap();
    assert_eq!((r.version, r.result), (0, 1));
    // a response is never answered
    b[0] = 2;
    b[1] = 0x80;
    assert_eq!(serve(&mut c, &cfg(), me, &b), None);
}

#[test]
fn retransmits_over_loopback() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = server.local_addr().unwrap();
    let worker = thread::spawn(move || {
        let mut c = core();
        let cfg = cfg();
        let mut buf = [0u8; 1500];
        server
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // the first request is "lost"
        let (_, _) = server.recv_from(&mut buf).unwrap();
        let (n, from) = server.recv_from(&mut buf).unwrap();
        let SocketAddr::V4(from4) = from else {
            panic!()
        };
        let reply = serve(&mut c, &cfg, *from4.ip(), &buf[..n]).unwrap();
        server.send_to(&reply, from).unwrap();
        c.table().len()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let me = Ipv4Addr::LOCALHOST;
    let req = Request::map(me, [5; 12], UDP, 40000, 600);
    let r = pcp_client::exchange(&sock, addr, &req, Retransmit::fast()).unwrap();
    assert_eq!(
        (r.result, r.external_port, r.lifetime),
        (result::SUCCESS, 40000, 600)
    );
    assert_eq!(worker.join().unwrap(), 1);
}

/// An IPv6 host: the two codecs agree on MAP, FILTER and PEER carried
/// as IPv6 addresses, and the assigned external address and port are the
/// internal ones (a pinhole).
#[test]
fn ipv6_map_filter_peer_in_memory() {
    let mut c = core();
    let me: Ipv6Addr = "fd77::2".parse().unwrap();
    let peer: Ipv6Addr = "2001:db8:3::2".parse().unwrap();
    let r = ask(&mut c, me, &Request::announce(me));
    assert_eq!((r.result, r.len), (result::SUCCESS, 24));

    let mut req = Request::map(me, [6; 12], TCP, 8080, 3600);
    req.options = vec![Opt::filter_v6(peer, 128, 443)];
    let r = ask(&mut c, me, &req);
    assert_eq!(r.result, result::SUCCESS);
    assert_eq!(
        (r.external_port, r.external_addr, r.lifetime),
        (8080, Some(me), 3600)
    );
    assert_eq!(r.options.len(), 1);
    let p = c.pinholes().iter().next().unwrap();
    assert_eq!((p.remote, p.rport, p.iaddr), (Some(peer), 443, me));

    let mut wide = req.clone();
    wide.options = vec![Opt::filter_v6(peer, 64, 0)];
    assert_eq!(
        ask(&mut c, me, &wide).result,
        result::EXCESSIVE_REMOTE_PEERS
    );

    let flow = Request::peer(
        me,
        Map {
            nonce: [7; 12],
            protocol: UDP,
            internal_port: 5000,
            suggested_port: 0,
            suggested_addr: None,
        },
        peer,
        3478,
        600,
    );
    let r = ask(&mut c, me, &flow);
    assert_eq!(
        (
            r.result,
            r.external_port,
            r.external_addr,
            r.peer_port,
            r.peer_addr
        ),
        (result::SUCCESS, 5000, Some(me), 3478, Some(peer))
    );
    assert_eq!(c.pinholes().len(), 2);

    let mut del = req.clone();
    del.lifetime = 0;
    del.options.clear();
    assert_eq!(ask(&mut c, me, &del).result, result::SUCCESS);
    assert_eq!(c.pinholes().len(), 1);
    // NAT-PMP over IPv6: silence
    assert_eq!(serve(&mut c, &cfg(), me, &[0, 0]), None);
}
