use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use super::*;
use crate::config::Config;
use crate::core::facts::FixedFacts;
use crate::core::firewall::Recording;
use crate::core::pinhole::PinPolicy;
use crate::core::policy::{Policy, Refusal, Want};
use crate::core::table::{Key, Origin, RemoteFilter};
use crate::core::{EventKind, Lease, MapRequest};
use crate::proto::pcp::{self, Body, Filter, PcpOption, ResultCode};
use crate::proto::{Proto, natpmp};

static NO_FACTS: FixedFacts = FixedFacts::new();

const EXT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const EPOCH: u32 = 1000;
pub(super) const CFG: Settings = Settings {
    natpmp: true,
    pcp: true,
    min_lifetime: 120,
    max_lifetime: 86400,
    allow_third_party: false,
};

fn host(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 1, d)
}

/// One LAN: 192.168.1.0/24 and fd77::/64.
pub(super) static LANS: LazyLock<Lans> = LazyLock::new(|| {
    Lans::new(vec![crate::core::lan::Lan {
        dev: "br-lan".into(),
        addr: host(1),
        nets: vec![(host(0), 24)],
        nets6: vec![("fd77::1".parse().unwrap(), 64)],
        http_port: 5000,
    }])
});

fn core() -> Core {
    let cfg = Config {
        max_mappings_per_client: 8,
        max_mappings: 64,
        ..Config::default()
    };
    Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    )
}

fn ctx(settings: &Settings) -> Server<'_> {
    Server {
        settings,
        external: Some(EXT),
        epoch: EPOCH,
        lans: &LANS,
        now: 10_000,
        facts: &NO_FACTS,
    }
}

fn send(core: &mut Core, ctx: &Server, from: u8, pkt: &[u8]) -> Option<Reply> {
    handle(core, ctx, IpAddr::V4(host(from)), pkt)
}

/// The reply that goes out when the firewall succeeds.
fn ask(core: &mut Core, from: u8, pkt: &[u8]) -> Vec<u8> {
    send(core, &ctx(&CFG), from, pkt).expect("a reply").ok
}

// ------------------------------------------------------------ NAT-PMP

fn pmp_map(proto: Proto, iport: u16, eport: u16, lifetime: u32) -> Vec<u8> {
    natpmp::Request::Map(natpmp::MapRequest {
        proto,
        internal_port: iport,
        suggested_external_port: eport,
        lifetime,
    })
    .emit()
}

fn pmp_resp(
    proto: Proto,
    result: natpmp::ResultCode,
    iport: u16,
    eport: u16,
    life: u32,
) -> Vec<u8> {
    natpmp::MapResponse {
        proto,
        result,
        epoch: EPOCH,
        internal_port: iport,
        external_port: eport,
        lifetime: life,
    }
    .emit()
    .to_vec()
}

use natpmp::ResultCode as N;

#[test]
fn natpmp_public_address() {
    let mut c = core();
    assert_eq!(
        ask(&mut c, 2, &[0, 0]),
        vec![0, 128, 0, 0, 0, 0, 3, 0xe8, 203, 0, 113, 1]
    );
    let mut x = ctx(&CFG);
    x.external = None;
    let r = send(&mut c, &x, 2, &[0, 0]).unwrap();
    assert_eq!(r.ok, vec![0, 128, 0, 3, 0, 0, 3, 0xe8, 0, 0, 0, 0]);
    let off = Settings {
        natpmp: false,
        ..CFG
    };
    let r = send(&mut c, &ctx(&off), 2, &[0, 0]).unwrap();
    assert_eq!(r.ok, vec![0, 128, 0, 2, 0, 0, 3, 0xe8, 0, 0, 0, 0]);
}

#[test]
fn natpmp_map_renew_delete() {
    let mut c = core();
    // natpmpc -a 7000 27000 tcp 600
    let r = send(
        &mut c,
        &ctx(&CFG),
        2,
        &pmp_map(Proto::Tcp, 27000, 7000, 600),
    )
    .unwrap();
    assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 7000, 600));
    assert_eq!(
        r.on_failure,
        Some(pmp_resp(Proto::Tcp, N::NetworkFailure, 27000, 0, 0))
    );
    let m = c.table().get(&Key::new(Proto::Tcp, 7000)).unwrap().clone();
    assert_eq!((m.iaddr, m.iport, m.client), (host(2), 27000, host(2)));
    assert_eq!(m.desc, "NAT-PMP 7000 tcp");
    assert_eq!(m.origin, Origin::NatPmp);
    assert_eq!(m.expires, Some(10_000 + 600_000));
    // a renewal keeps the port whatever it suggests, and the new lifetime
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 27000, 9999, 7200)),
        pmp_resp(Proto::Tcp, N::Success, 27000, 7000, 7200)
    );
    assert_eq!(c.table().len(), 1);
    // delete, then delete again: the same success both times
    let del = pmp_map(Proto::Tcp, 27000, 0, 0);
    let r = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
    assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 0, 0));
    assert!(r.on_failure.is_some());
    assert!(c.table().is_empty());
    let r = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
    assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::Success, 27000, 0, 0));
    assert_eq!(r.on_failure, None);
    let kinds: Vec<_> = c.take_events().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![EventKind::Add, EventKind::Renew, EventKind::Delete]
    );
}

#[test]
fn natpmp_ports_and_lifetimes() {
    let mut c = core();
    // no suggestion: the internal port
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 5000, 0, 30)),
        pmp_resp(Proto::Udp, N::Success, 5000, 5000, 120)
    );
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 5001, 0, u32::MAX)),
        pmp_resp(Proto::Udp, N::Success, 5001, 5001, 86400)
    );
    // internal port 0 is only for deletion
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 0, 0, 60)),
        pmp_resp(Proto::Udp, N::NotAuthorized, 0, 0, 0)
    );
    // the permission rules deny low internal ports: no search at all
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 80, 80, 60)),
        pmp_resp(Proto::Tcp, N::NotAuthorized, 80, 0, 0)
    );
    // a denied external port is searched around
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 8080, 80, 60)),
        pmp_resp(Proto::Tcp, N::Success, 8080, 1024, 120)
    );
    // no external address
    let mut x = ctx(&CFG);
    x.external = None;
    let r = send(&mut c, &x, 2, &pmp_map(Proto::Tcp, 9000, 0, 60)).unwrap();
    assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::NetworkFailure, 9000, 0, 0));
    // disabled
    let off = Settings {
        natpmp: false,
        ..CFG
    };
    let r = send(&mut c, &ctx(&off), 2, &pmp_map(Proto::Tcp, 9000, 0, 60)).unwrap();
    assert_eq!(r.ok, pmp_resp(Proto::Tcp, N::NotAuthorized, 9000, 0, 0));
}

#[test]
fn natpmp_collisions_and_companion() {
    let mut c = core();
    ask(&mut c, 2, &pmp_map(Proto::Tcp, 7000, 7000, 600));
    // another host: the next free port
    assert_eq!(
        ask(&mut c, 3, &pmp_map(Proto::Tcp, 7000, 7000, 600)),
        pmp_resp(Proto::Tcp, N::Success, 7000, 7001, 600)
    );
    // UDP 7000 is host 2's companion port; 7001's companion is host 3's own
    assert_eq!(
        ask(&mut c, 3, &pmp_map(Proto::Udp, 7000, 7000, 600)),
        pmp_resp(Proto::Udp, N::Success, 7000, 7001, 600)
    );
    // host 2 itself may have its companion
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 7000, 7000, 600)),
        pmp_resp(Proto::Udp, N::Success, 7000, 7000, 600)
    );
    // another internal port of host 2 does not take over 7000
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 7005, 7000, 600)),
        pmp_resp(Proto::Tcp, N::Success, 7005, 7002, 600)
    );
}

#[test]
fn natpmp_quota_is_out_of_resources() {
    let mut c = core();
    for p in 0..8 {
        ask(&mut c, 2, &pmp_map(Proto::Udp, 6000 + p, 0, 600));
    }
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 6100, 0, 600)),
        pmp_resp(Proto::Udp, N::OutOfResources, 6100, 0, 0)
    );
    // renewing is still possible
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 6000, 0, 600)),
        pmp_resp(Proto::Udp, N::Success, 6000, 6000, 600)
    );
}

#[test]
fn natpmp_delete_all_of_one_protocol() {
    let mut c = core();
    for p in [5000, 5001] {
        ask(&mut c, 2, &pmp_map(Proto::Udp, p, 0, 600));
        ask(&mut c, 2, &pmp_map(Proto::Tcp, p, 0, 600));
    }
    ask(&mut c, 3, &pmp_map(Proto::Udp, 6000, 0, 600));
    let r = ask(&mut c, 2, &pmp_map(Proto::Udp, 0, 0, 0));
    assert_eq!(r, pmp_resp(Proto::Udp, N::Success, 0, 0, 0));
    let left: Vec<_> = c
        .table()
        .iter()
        .map(|m| (m.key.proto, m.key.eport))
        .collect();
    assert_eq!(
        left,
        vec![(Proto::Tcp, 5000), (Proto::Tcp, 5001), (Proto::Udp, 6000)]
    );
}

#[test]
fn natpmp_errors_and_silence() {
    let mut c = core();
    // unsupported opcode: the request echoed, OP | 128, result 5, SSSoE
    assert_eq!(ask(&mut c, 2, &[0, 3]), vec![0, 131, 0, 5, 0, 0, 3, 0xe8]);
    assert_eq!(
        ask(&mut c, 2, &[0, 9, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]),
        vec![0, 137, 0, 5, 0, 0, 3, 0xe8, 1, 2, 3, 4]
    );
    // responses, short packets: nothing
    for pkt in [
        &[][..],
        &[0],
        &[0, 128],
        &[0, 130, 0, 0],
        &[0, 1, 0, 0, 1, 1],
    ] {
        assert_eq!(send(&mut c, &ctx(&CFG), 2, pkt), None, "{pkt:?}");
    }
}

// ---------------------------------------------------------------- PCP

use pcp::ResultCode as P;

fn nonce(n: u8) -> [u8; 12] {
    [n; 12]
}

fn map_body(n: u8, proto: u8, iport: u16, eport: u16) -> Body {
    Body::Map(pcp::Map {
        nonce: nonce(n),
        protocol: proto,
        internal_port: iport,
        external_port: eport,
        external_addr: pcp::mapped(Ipv4Addr::UNSPECIFIED),
    })
}

fn pcp_req(from: u8, lifetime: u32, body: Body, options: Vec<PcpOption>) -> Vec<u8> {
    pcp::Request {
        lifetime,
        client_addr: pcp::mapped(host(from)),
        body,
        options,
    }
    .emit()
}

fn pcp_map(from: u8, n: u8, iport: u16, eport: u16, life: u32, opts: Vec<PcpOption>) -> Vec<u8> {
    pcp_req(from, life, map_body(n, 6, iport, eport), opts)
}

fn parsed(b: &[u8]) -> pcp::Response {
    pcp::Response::parse(b).expect("a PCP response")
}

/// (result, lifetime, assigned external port)
fn outcome(b: &[u8]) -> (ResultCode, u32, u16) {
    let r = parsed(b);
    let port = match r.body {
        Body::Map(m) => m.external_port,
        Body::Peer(p) => p.external_port,
        Body::Announce => 0,
    };
    (r.result, r.lifetime, port)
}

#[test]
fn pcp_map_create_exact_bytes() {
    let mut c = core();
    let req = pcp_map(2, 7, 7200, 27200, 3600, vec![]);
    let r = send(&mut c, &ctx(&CFG), 2, &req).unwrap();
    let mut want = Vec::new();
    want.extend([2, 0x81, 0, 0, 0, 0, 0x0e, 0x10, 0, 0, 0x03, 0xe8]);
    want.extend([0; 12]);
    want.extend([7; 12]);
    want.extend([6, 0, 0, 0, 0x1c, 0x20, 0x6a, 0x40]);
    want.extend(pcp::mapped(EXT).octets());
    assert_eq!(r.ok, want);
    // a failed firewall transaction answers NO_RESOURCES (short)
    let fail = r.on_failure.unwrap();
    assert_eq!(&fail[..12], &[2, 0x81, 0, 8, 0, 0, 0, 30, 0, 0, 0x03, 0xe8]);
    assert_eq!(fail.len(), req.len());
    let m = c.table().get(&Key::new(Proto::Tcp, 27200)).unwrap();
    // the nonce is secret (it authorises renewals): the description,
    // which is logged and sent in events, does not hold it
    assert_eq!(m.desc, "PCP MAP");
    assert_eq!(m.nonce, Some(nonce(7)));
    assert_eq!((m.origin, m.iport, m.remote), (Origin::Pcp, 7200, None));
}

#[test]
fn pcp_map_renew_delete_and_nonces() {
    let mut c = core();
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 30, vec![]))),
        (P::Success, 120, 7200)
    );
    // renewal: same nonce, any suggestion, the same port
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 9000, 999_999, vec![]))),
        (P::Success, 86400, 7200)
    );
    // another nonce can neither renew nor delete it
    for life in [600, 0] {
        let req = pcp_map(2, 8, 7200, 0, life, vec![]);
        let r = ask(&mut c, 2, &req);
        let mut want = req.clone();
        want[1] = 0x81;
        want[3] = P::NotAuthorized as u8;
        want[4..8].copy_from_slice(&1800u32.to_be_bytes());
        want[8..12].copy_from_slice(&EPOCH.to_be_bytes());
        want[12..24].fill(0);
        assert_eq!(r, want);
    }
    assert_eq!(c.table().len(), 1);
    // delete, twice: SUCCESS with lifetime 0, the same bytes
    let del = pcp_map(2, 7, 7200, 0, 0, vec![]);
    let first = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
    assert_eq!(outcome(&first.ok), (P::Success, 0, 0));
    assert!(first.on_failure.is_some());
    assert!(c.table().is_empty());
    let second = send(&mut c, &ctx(&CFG), 2, &del).unwrap();
    assert_eq!(second.ok, first.ok);
    assert_eq!(second.on_failure, None);
}

#[test]
fn pcp_delete_wildcards() {
    let mut c = core();
    ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 600, vec![]));
    ask(&mut c, 2, &pcp_map(2, 7, 7201, 0, 600, vec![]));
    ask(
        &mut c,
        2,
        &pcp_req(2, 600, map_body(7, 17, 7200, 0), vec![]),
    );
    ask(&mut c, 2, &pcp_map(2, 8, 7202, 0, 600, vec![]));
    // internal port 0: this nonce's TCP mappings
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 7, 0, 0, 0, vec![]))).0,
        P::Success
    );
    let left: Vec<_> = c
        .table()
        .iter()
        .map(|m| (m.key.proto, m.key.eport))
        .collect();
    assert_eq!(left, vec![(Proto::Tcp, 7202), (Proto::Udp, 7200)]);
    // protocol 0: every protocol, internal port ignored
    ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 600, vec![]));
    assert_eq!(
        outcome(&ask(
            &mut c,
            2,
            &pcp_req(2, 0, map_body(7, 0, 1234, 0), vec![])
        ))
        .0,
        P::Success
    );
    let left: Vec<_> = c
        .table()
        .iter()
        .map(|m| (m.key.proto, m.key.eport))
        .collect();
    assert_eq!(left, vec![(Proto::Tcp, 7202)]);
}

fn pcp_code(b: &[u8]) -> ResultCode {
    ResultCode::from_u8(b[3]).unwrap()
}

#[test]
fn pcp_map_refusals() {
    let mut c = core();
    let code = |c: &mut Core, pkt: &[u8]| pcp_code(&ask(c, 2, pkt));
    // protocol 0 and SCTP cannot be mapped
    assert_eq!(
        code(&mut c, &pcp_req(2, 600, map_body(1, 0, 0, 0), vec![])),
        P::UnsuppProtocol
    );
    assert_eq!(
        code(&mut c, &pcp_req(2, 600, map_body(1, 132, 5000, 0), vec![])),
        P::UnsuppProtocol
    );
    assert_eq!(
        code(&mut c, &pcp_req(2, 0, map_body(1, 132, 5000, 0), vec![])),
        P::UnsuppProtocol
    );
    // all ports of a host
    assert_eq!(
        code(&mut c, &pcp_map(2, 1, 0, 0, 600, vec![])),
        P::NotAuthorized
    );
    // denied internal port
    assert_eq!(
        code(&mut c, &pcp_map(2, 1, 80, 80, 600, vec![])),
        P::NotAuthorized
    );
    // no external address: short NETWORK_FAILURE
    let mut x = ctx(&CFG);
    x.external = None;
    let r = send(&mut c, &x, 2, &pcp_map(2, 1, 5000, 0, 600, vec![]))
        .unwrap()
        .ok;
    assert_eq!(pcp_code(&r), P::NetworkFailure);
    assert_eq!(&r[4..8], &30u32.to_be_bytes());
    // client address ≠ source
    assert_eq!(
        pcp_code(&ask(&mut c, 3, &pcp_map(2, 1, 5000, 0, 600, vec![]))),
        P::AddressMismatch
    );
    let mut v6 = pcp_map(2, 1, 5000, 0, 600, vec![]);
    v6[8..24].copy_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
    assert_eq!(pcp_code(&ask(&mut c, 2, &v6)), P::AddressMismatch);
    // quota: USER_EX_QUOTA (short)
    for p in 0..8 {
        ask(&mut c, 2, &pcp_map(2, 1, 6000 + p, 0, 600, vec![]));
    }
    let r = ask(&mut c, 2, &pcp_map(2, 1, 6100, 0, 600, vec![]));
    assert_eq!(
        (pcp_code(&r), &r[4..8]),
        (P::UserExQuota, &30u32.to_be_bytes()[..])
    );
    assert!(c.table().len() == 8);
}

#[test]
fn pcp_prefer_failure() {
    let mut c = core();
    ask(&mut c, 3, &pcp_map(3, 1, 5000, 5000, 600, vec![]));
    let pf = vec![PcpOption::PreferFailure];
    // taken by another host: no other port
    let r = ask(&mut c, 2, &pcp_map(2, 2, 5000, 5000, 600, pf.clone()));
    assert_eq!(pcp_code(&r), P::CannotProvideExternal);
    // without the option: another port
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 2, 5000, 5000, 600, vec![]))).2,
        5001
    );
    // free: granted, option echoed
    let r = parsed(&ask(&mut c, 2, &pcp_map(2, 2, 5002, 6000, 600, pf.clone())));
    assert_eq!(r.options, pf);
    assert!(matches!(r.body, Body::Map(m) if m.external_port == 6000));
    // a suggested external address we do not have
    let mut b = map_body(2, 6, 5003, 6003);
    if let Body::Map(m) = &mut b {
        m.external_addr = pcp::mapped(Ipv4Addr::new(198, 51, 100, 1));
    }
    assert_eq!(
        pcp_code(&ask(&mut c, 2, &pcp_req(2, 600, b, pf.clone()))),
        P::CannotProvideExternal
    );
    // …which is only a hint without PREFER_FAILURE
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_req(2, 600, b, vec![]))).0,
        P::Success
    );
}

fn filter(prefix: u8, port: u16, a: Ipv4Addr) -> PcpOption {
    PcpOption::Filter(Filter {
        prefix_len: prefix,
        remote_peer_port: port,
        remote_peer_addr: pcp::mapped(a),
    })
}

#[test]
fn pcp_filters() {
    let mut c = core();
    let net = Ipv4Addr::new(198, 51, 100, 77);
    let r = parsed(&ask(
        &mut c,
        2,
        &pcp_map(2, 1, 5000, 0, 600, vec![filter(120, 0, net)]),
    ));
    assert_eq!(r.result, P::Success);
    assert_eq!(r.options, vec![filter(120, 0, net)]);
    let key = Key::new(Proto::Tcp, 5000);
    let want = RemoteFilter {
        addr: Ipv4Addr::new(198, 51, 100, 0),
        prefix: 24,
    };
    assert_eq!(c.table().get(&key).unwrap().remote, Some(want));
    // a renewal without FILTER keeps it; the same filter twice is one
    ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, vec![]));
    assert_eq!(c.table().get(&key).unwrap().remote, Some(want));
    let two = vec![
        filter(120, 0, net),
        filter(120, 0, Ipv4Addr::new(198, 51, 100, 1)),
    ];
    ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, two));
    assert_eq!(c.table().get(&key).unwrap().remote, Some(want));
    // prefix length 0 removes it
    ask(
        &mut c,
        2,
        &pcp_map(
            2,
            1,
            5000,
            0,
            600,
            vec![filter(0, 0, Ipv4Addr::UNSPECIFIED)],
        ),
    );
    assert_eq!(c.table().get(&key).unwrap().remote, None);
    // a /32 and all IPv4 peers (prefix 96)
    ask(
        &mut c,
        2,
        &pcp_map(2, 1, 5000, 0, 600, vec![filter(128, 0, net)]),
    );
    assert_eq!(
        c.table().get(&key).unwrap().remote,
        Some(RemoteFilter::host(net))
    );
    ask(
        &mut c,
        2,
        &pcp_map(2, 1, 5000, 0, 600, vec![filter(96, 0, net)]),
    );
    assert_eq!(c.table().get(&key).unwrap().remote, None);
    // what one mapping cannot hold
    let distinct = vec![
        filter(128, 0, net),
        filter(128, 0, Ipv4Addr::new(192, 0, 2, 1)),
    ];
    let code = |c: &mut Core, o| pcp_code(&ask(c, 2, &pcp_map(2, 1, 5000, 0, 600, o)));
    assert_eq!(code(&mut c, distinct), P::ExcessiveRemotePeers);
    assert_eq!(
        code(&mut c, vec![filter(128, 443, net)]),
        P::ExcessiveRemotePeers
    );
    let v6 = PcpOption::Filter(Filter {
        prefix_len: 64,
        remote_peer_port: 0,
        remote_peer_addr: "2001:db8::".parse().unwrap(),
    });
    assert_eq!(code(&mut c, vec![v6]), P::MalformedOption);
    // prefix 0 first clears what came before it
    let cleared = vec![
        filter(128, 0, Ipv4Addr::new(192, 0, 2, 1)),
        filter(0, 0, net),
        filter(128, 0, net),
    ];
    assert_eq!(code(&mut c, cleared), P::Success);
    assert_eq!(
        c.table().get(&key).unwrap().remote,
        Some(RemoteFilter::host(net))
    );
}

#[test]
fn pcp_third_party() {
    let tp = |d: u8| vec![PcpOption::ThirdParty(pcp::mapped(host(d)))];
    let mut c = core();
    // not allowed: UNSUPP_OPTION
    assert_eq!(
        pcp_code(&ask(&mut c, 2, &pcp_map(2, 1, 5000, 0, 600, tp(9)))),
        P::UnsuppOption
    );
    let allow = Settings {
        allow_third_party: true,
        ..CFG
    };
    let x = ctx(&allow);
    let code = |c: &mut Core, pkt: &[u8]| pcp_code(&send(c, &x, 2, pkt).unwrap().ok);
    // the sender itself
    assert_eq!(
        code(&mut c, &pcp_map(2, 1, 5000, 0, 600, tp(2))),
        P::MalformedRequest
    );
    // secure mode refuses mappings for other hosts
    assert_eq!(
        code(&mut c, &pcp_map(2, 1, 5000, 0, 600, tp(9))),
        P::NotAuthorized
    );
    // an IPv6 host
    let v6 = vec![PcpOption::ThirdParty("2001:db8::9".parse().unwrap())];
    assert_eq!(
        code(&mut c, &pcp_map(2, 1, 5000, 0, 600, v6)),
        P::NotAuthorized
    );
    let mut policy = c.policy().clone();
    policy.secure_mode = false;
    c.set_policy(policy);
    let r = parsed(
        &send(&mut c, &x, 2, &pcp_map(2, 1, 5000, 0, 600, tp(9)))
            .unwrap()
            .ok,
    );
    assert_eq!((r.result, r.options.clone()), (P::Success, tp(9)));
    let m = c.table().get(&Key::new(Proto::Tcp, 5000)).unwrap();
    assert_eq!((m.iaddr, m.client), (host(9), host(2)));
    // deleted by the same third-party request with lifetime 0
    assert_eq!(code(&mut c, &pcp_map(2, 1, 5000, 0, 0, tp(9))), P::Success);
    assert!(c.table().is_empty());
}

fn peer_body(n: u8, iport: u16, eport: u16, peer: Ipv4Addr, pport: u16) -> Body {
    Body::Peer(pcp::Peer {
        nonce: nonce(n),
        protocol: 17,
        internal_port: iport,
        external_port: eport,
        external_addr: Ipv6Addr::UNSPECIFIED,
        remote_peer_port: pport,
        remote_peer_addr: pcp::mapped(peer),
    })
}

#[test]
fn pcp_peer() {
    let mut c = core();
    let peer = Ipv4Addr::new(198, 51, 100, 9);
    let r = parsed(&ask(
        &mut c,
        2,
        &pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3478), vec![]),
    ));
    assert_eq!(r.result, P::Success);
    assert_eq!(r.lifetime, 600);
    let Body::Peer(p) = r.body else { panic!() };
    assert_eq!((p.external_port, p.external_addr), (5000, pcp::mapped(EXT)));
    assert_eq!(
        (p.remote_peer_port, p.remote_peer_addr),
        (3478, pcp::mapped(peer))
    );
    let m = c.table().get(&Key::new(Proto::Udp, 5000)).unwrap();
    assert_eq!(m.remote, Some(RemoteFilter::host(peer)));
    assert_eq!(m.peer_port, Some(3478));
    assert_eq!(m.desc, "PCP PEER");
    // a shorter lifetime does not shorten it
    assert_eq!(
        outcome(&ask(
            &mut c,
            2,
            &pcp_req(2, 0, peer_body(4, 5000, 0, peer, 3478), vec![])
        )),
        (P::Success, 600, 5000)
    );
    // another nonce
    assert_eq!(
        pcp_code(&ask(
            &mut c,
            2,
            &pcp_req(2, 600, peer_body(5, 5000, 0, peer, 3478), vec![])
        )),
        P::NotAuthorized
    );
    // a second remote peer of the same endpoint
    assert_eq!(
        pcp_code(&ask(
            &mut c,
            2,
            &pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3479), vec![])
        )),
        P::NoResources
    );
    // PREFER_FAILURE is not allowed in PEER
    let mut pkt = pcp_req(2, 600, peer_body(4, 5000, 0, peer, 3478), vec![]);
    pkt.extend([2, 0, 0, 0]);
    assert_eq!(pcp_code(&ask(&mut c, 2, &pkt)), P::MalformedRequest);
    // zero fields
    for b in [
        peer_body(4, 0, 0, peer, 1),
        peer_body(4, 1, 0, peer, 0),
        peer_body(4, 6001, 0, Ipv4Addr::UNSPECIFIED, 1),
    ] {
        assert_eq!(
            pcp_code(&ask(&mut c, 2, &pcp_req(2, 600, b, vec![]))),
            P::MalformedRequest
        );
    }
    // a suggested port held by someone else
    ask(
        &mut c,
        3,
        &pcp_req(3, 600, map_body(1, 17, 6000, 6000), vec![]),
    );
    assert_eq!(
        pcp_code(&ask(
            &mut c,
            2,
            &pcp_req(2, 600, peer_body(4, 6000, 6000, peer, 1), vec![])
        )),
        P::CannotProvideExternal
    );
    // an endpoint with a MAP mapping reports it, unchanged
    ask(
        &mut c,
        2,
        &pcp_req(2, 1000, map_body(1, 17, 7000, 7100), vec![]),
    );
    assert_eq!(
        outcome(&ask(
            &mut c,
            2,
            &pcp_req(2, 600, peer_body(4, 7000, 0, peer, 1), vec![])
        )),
        (P::Success, 1000, 7100)
    );
    // the same nonce turns a PEER mapping into a MAP one
    ask(
        &mut c,
        2,
        &pcp_req(2, 600, map_body(4, 17, 5000, 0), vec![]),
    );
    let m = c.table().get(&Key::new(Proto::Udp, 5000)).unwrap();
    assert_eq!((m.remote, m.peer_port), (None, None));
}

#[test]
fn pcp_announce_versions_and_silence() {
    let mut c = core();
    let ann = pcp_req(2, 0, Body::Announce, vec![]);
    let mut want = vec![2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0xe8];
    want.extend([0; 12]);
    assert_eq!(ask(&mut c, 2, &ann), want);
    assert_eq!(announcements(&CFG, EPOCH, None, false), vec![want]);
    // unknown versions: UNSUPP_VERSION naming version 2, Reserved
    // holding the low 96 bits of the client address field
    for v in [1u8, 3, 0xff] {
        let mut pkt = pcp_map(2, 1, 5000, 0, 600, vec![]);
        pkt[0] = v;
        let r = ask(&mut c, 2, &pkt);
        assert_eq!(&r[..4], &[2, 0x81, 0, P::UnsuppVersion as u8]);
        assert_eq!(&r[12..24], &pcp::mapped(host(2)).octets()[4..]);
    }
    // unknown opcode
    let mut pkt = pcp_map(2, 1, 5000, 0, 600, vec![]);
    pkt[1] = 5;
    assert_eq!(
        &ask(&mut c, 2, &pkt)[..4],
        &[2, 0x85, 0, P::UnsuppOpcode as u8]
    );
    // R bit and one-byte packets: nothing
    for pkt in [vec![2u8], vec![2, 0x81, 0, 0], vec![3]] {
        assert_eq!(send(&mut c, &ctx(&CFG), 2, &pkt), None);
    }
    // PCP disabled: NAT-PMP's "unsupported version" so the client falls back
    let natpmp_only = Settings { pcp: false, ..CFG };
    let r = send(
        &mut c,
        &ctx(&natpmp_only),
        2,
        &pcp_map(2, 1, 5000, 0, 600, vec![]),
    )
    .unwrap();
    assert_eq!(r.ok, vec![0, 0x81, 0, 1, 0, 0, 3, 0xe8]);
    let off = Settings {
        pcp: false,
        natpmp: false,
        ..CFG
    };
    assert_eq!(send(&mut c, &ctx(&off), 2, &ann), None);
    assert_eq!(send(&mut c, &ctx(&off), 2, &[0, 0]), None);
    assert!(c.table().is_empty());
}

#[test]
fn announcements_and_epoch() {
    assert_eq!(
        announcements(&Settings { pcp: false, ..CFG }, 5, Some(EXT), false),
        vec![vec![0, 128, 0, 0, 0, 0, 0, 5, 203, 0, 113, 1]]
    );
    // no external address: PCP's ANNOUNCE alone
    assert_eq!(announcements(&CFG, 5, None, false).len(), 1);
    let mut e = Epoch::default();
    e.restart(1000);
    assert!(e.announcement_due(1000));
    assert!(!e.announcement_due(1249));
    assert_eq!(e.next_deadline(), Some(1250));
    assert_eq!(e.secs(4999), 3);
    assert_eq!(ANNOUNCE_SCHEDULE.len(), 10);
    for w in ANNOUNCE_SCHEDULE.windows(3) {
        assert_eq!(w[2] - w[1], 2 * (w[1] - w[0]));
    }
    assert_eq!(ANNOUNCE_SCHEDULE[1], 250);
}

// -------------------------------------------------------- cross-protocol

fn upnp(c: &mut Core, from: u8, port: u16) -> Result<crate::core::Granted, Refusal> {
    let req = MapRequest {
        want: Want {
            client: host(from),
            proto: Proto::Tcp,
            eport: port,
            iaddr: host(from),
            iport: port,
            search: false,
            companion: false,
        },
        remote: None,
        desc: "upnp".into(),
        origin: Origin::UpnpV2,
        lease: Lease::Secs(3600),
        nonce: None,
        peer_port: None,
    };
    c.map(&req, 10_000, &NO_FACTS)
}

#[test]
fn one_table_for_every_protocol() {
    let mut c = core();
    upnp(&mut c, 5, 7000).unwrap();
    // UPnP's port is refused to NAT-PMP and PCP of other hosts
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 7000, 7000, 600)),
        pmp_resp(Proto::Tcp, N::Success, 7000, 7001, 600)
    );
    let pf = vec![PcpOption::PreferFailure];
    assert_eq!(
        pcp_code(&ask(&mut c, 3, &pcp_map(3, 1, 7000, 7000, 600, pf.clone()))),
        P::CannotProvideExternal
    );
    // and theirs to UPnP
    assert_eq!(upnp(&mut c, 5, 7001), Err(Refusal::Conflict));
    ask(&mut c, 3, &pcp_map(3, 1, 8000, 8000, 600, vec![]));
    assert_eq!(upnp(&mut c, 5, 8000), Err(Refusal::Conflict));
    // NAT-PMP against PCP
    assert_eq!(
        pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 7001, 7001, 600, pf))),
        P::CannotProvideExternal
    );
    assert_eq!(
        ask(&mut c, 4, &pmp_map(Proto::Tcp, 8000, 8000, 600)),
        pmp_resp(Proto::Tcp, N::Success, 8000, 8001, 600)
    );
    // the same host: NAT-PMP does not take over its PCP mapping…
    assert_eq!(
        ask(&mut c, 3, &pmp_map(Proto::Tcp, 8000, 0, 600)),
        pmp_resp(Proto::Tcp, N::NotAuthorized, 8000, 0, 0)
    );
    assert_eq!(
        ask(&mut c, 3, &pmp_map(Proto::Tcp, 8000, 0, 0)),
        pmp_resp(Proto::Tcp, N::NotAuthorized, 8000, 0, 0)
    );
    // …nor PCP its NAT-PMP one
    assert_eq!(
        pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 8000, 0, 600, vec![]))),
        P::NotAuthorized
    );
    assert_eq!(
        pcp_code(&ask(&mut c, 4, &pcp_map(4, 1, 8000, 0, 0, vec![]))),
        P::NotAuthorized
    );
    // …nor UPnP's mapping of the same host and port
    assert_eq!(
        outcome(&ask(&mut c, 5, &pcp_map(5, 1, 7000, 7000, 600, vec![]))).2,
        7002
    );
    assert_eq!(
        c.table().get(&Key::new(Proto::Tcp, 7000)).unwrap().origin,
        Origin::UpnpV2
    );
}

#[test]
fn rollback_after_firewall_failure() {
    let mut c = core();
    ask(&mut c, 2, &pmp_map(Proto::Udp, 5000, 0, 600));
    let mut fw = Recording::default();
    c.commit_turn(&mut fw, 10_000);
    let r = send(&mut c, &ctx(&CFG), 3, &pcp_map(3, 1, 6000, 0, 600, vec![])).unwrap();
    assert!(r.on_failure.is_some());
    let r2 = send(&mut c, &ctx(&CFG), 2, &pmp_map(Proto::Udp, 5000, 0, 0)).unwrap();
    assert!(r2.on_failure.is_some());
    fw.fail_next = Some("refused".into());
    fw.fail_restore = Some("refused".into());
    assert!(c.commit_turn(&mut fw, 10_000).refused());
    let left: Vec<_> = c.table().iter().map(|m| (m.key.eport, m.origin)).collect();
    assert_eq!(left, vec![(5000, Origin::NatPmp)]);
}

// ------------------------------------------------------------- fuzzing

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_reply(pkt: &[u8], out: &[u8]) {
    match out.first() {
        Some(2) => {
            assert!(
                out.len() >= 24 && out.len() <= 1100 && out.len() % 4 == 0,
                "{pkt:?} → {out:?}"
            );
            assert!(out[1] & 0x80 != 0);
        }
        Some(0) => {
            let ok = matches!(out.len(), 8 | 12 | 16)
                || (out.len() <= pkt.len().max(8) && out.len() <= 1100);
            assert!(ok, "{pkt:?} → {out:?}");
            assert!(out[1] & 0x80 != 0);
        }
        _ => panic!("{pkt:?} → {out:?}"),
    }
}

#[test]
fn random_and_mutated_packets_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let peer = Ipv4Addr::new(198, 51, 100, 9);
    let seeds: Vec<Vec<u8>> = vec![
        vec![0, 0],
        pmp_map(Proto::Udp, 5000, 5000, 600),
        pmp_map(Proto::Tcp, 5001, 0, 0),
        pcp_req(2, 0, Body::Announce, vec![]),
        pcp_map(2, 1, 5000, 0, 600, vec![]),
        pcp_map(
            2,
            1,
            5000,
            6000,
            0,
            vec![PcpOption::PreferFailure, filter(120, 0, peer)],
        ),
        pcp_map(
            2,
            1,
            5000,
            6000,
            600,
            vec![PcpOption::ThirdParty(pcp::mapped(host(9)))],
        ),
        pcp_req(2, 600, peer_body(3, 5000, 0, peer, 3478), vec![]),
        pcp_req(2, 600, map_body(3, 0, 0, 0), vec![]),
    ];
    let cfgs = [
        CFG,
        Settings {
            allow_third_party: true,
            ..CFG
        },
        Settings { pcp: false, ..CFG },
        Settings {
            natpmp: false,
            min_lifetime: 0,
            max_lifetime: 0,
            ..CFG
        },
    ];
    let mut c = core();
    for i in 0..20_000u32 {
        let mut pkt = seeds[rng.below(seeds.len())].clone();
        match rng.below(6) {
            0 => {
                let n = rng.below(1200);
                pkt = (0..n).map(|_| rng.next() as u8).collect();
                if let Some(b) = pkt.first_mut() {
                    *b = [0, 1, 2, 3][rng.below(4)];
                }
            }
            1 => pkt.truncate(rng.below(pkt.len() + 1)),
            2 => {
                let n = rng.below(1200);
                pkt.extend((0..n).map(|_| rng.next() as u8));
            }
            3 => {
                // grow by whole options of random code and length
                for _ in 0..rng.below(8) {
                    let len = rng.below(40) as u16;
                    pkt.extend([rng.next() as u8, 0]);
                    pkt.extend(len.to_be_bytes());
                    pkt.extend((0..len.div_ceil(4) * 4).map(|_| rng.next() as u8));
                }
            }
            _ => {
                // flip bytes after the client address field most of the time
                for _ in 0..1 + rng.below(4) {
                    if pkt.is_empty() {
                        break;
                    }
                    let at = if pkt.len() > 24 && rng.below(4) != 0 {
                        24 + rng.below(pkt.len() - 24)
                    } else {
                        rng.below(pkt.len())
                    };
                    pkt[at] = rng.next() as u8;
                }
            }
        }
        let cfg = &cfgs[rng.below(cfgs.len())];
        let mut x = ctx(cfg);
        x.now = 10_000 + u64::from(i) * 100;
        if rng.below(10) == 0 {
            x.external = None;
        }
        let from = 2 + rng.below(3) as u8;
        if let Some(r) = send(&mut c, &x, from, &pkt) {
            check_reply(&pkt, &r.ok);
            if let Some(f) = &r.on_failure {
                check_reply(&pkt, f);
            }
            if pkt.first() == Some(&2) && cfg.pcp && r.ok.first() == Some(&2) && r.ok[3] == 0 {
                // a success never grows past the request
                assert!(r.ok.len() <= pkt.len().max(24), "{pkt:?}");
            }
        }
        c.expire(x.now);
        assert!(c.table().len() <= 64);
    }
    c.take_events();
}

/// While the Internet cannot reach new mappings (`core::wan::Closed`):
/// NAT-PMP 3 and PCP NETWORK_FAILURE (short lifetime) for new ones, each
/// a `refuse` event with the reason; renewals and deletions pass.
#[test]
fn closed_mappings_are_a_network_failure() {
    let mut c = core();
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 600, vec![]))),
        (P::Success, 600, 7200)
    );
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 9000, 9000, 600)),
        pmp_resp(Proto::Udp, N::Success, 9000, 9000, 600)
    );
    c.take_events();
    c.set_closed(Some(
        "STUN found the NAT in front filtering by address".into(),
    ));
    // new ones
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 8000, 8000, 600)),
        pmp_resp(Proto::Tcp, N::NetworkFailure, 8000, 0, 0)
    );
    let r = ask(&mut c, 2, &pcp_map(2, 8, 8100, 0, 600, vec![]));
    assert_eq!(pcp_code(&r), P::NetworkFailure);
    assert_eq!(&r[4..8], &30u32.to_be_bytes());
    let ev = c.take_events();
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.kind == EventKind::Refuse
        && e.reason
            == "new mappings are refused: STUN found the NAT in front filtering by address"));
    assert_eq!(c.table().len(), 2);
    // renewals of what exists, and deletions
    assert_eq!(
        outcome(&ask(&mut c, 2, &pcp_map(2, 7, 7200, 0, 900, vec![]))),
        (P::Success, 900, 7200)
    );
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 9000, 0, 900)),
        pmp_resp(Proto::Udp, N::Success, 9000, 9000, 900)
    );
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Udp, 9000, 0, 0)),
        pmp_resp(Proto::Udp, N::Success, 9000, 0, 0)
    );
    // open again
    c.set_closed(None);
    assert_eq!(
        ask(&mut c, 2, &pmp_map(Proto::Tcp, 8000, 8000, 600)),
        pmp_resp(Proto::Tcp, N::Success, 8000, 8000, 600)
    );
}
