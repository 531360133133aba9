//! PCP from IPv6 hosts: MAP and PEER make pinholes in the table
//! WANIPv6FirewallControl fills, every answer with its exact result code.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use super::tests::{CFG, LANS};
use super::*;
use crate::config::Config;
use crate::core::EventKind;
use crate::core::facts::FixedFacts;
use crate::core::pinhole::{PinPolicy, PinRequest};
use crate::core::policy::Policy;
use crate::core::table::Origin;
use crate::proto::pcp::{self, Body, Filter, PcpOption, ResultCode};

static NO_FACTS: FixedFacts = FixedFacts::new();

const EPOCH6: u32 = 77;

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn core_with(f: impl FnOnce(&mut Config)) -> Core {
    let mut cfg = Config {
        max_mappings_per_client: 3,
        max_mappings: 5,
        ..Config::default()
    };
    f(&mut cfg);
    Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    )
}

fn core() -> Core {
    core_with(|_| {})
}

fn ctx(settings: &Settings) -> Server<'_> {
    Server {
        settings,
        external: None,
        epoch: EPOCH6,
        lans: &LANS,
        now: 10_000,
        facts: &NO_FACTS,
    }
}

fn send(core: &mut Core, settings: &Settings, from: &str, pkt: &[u8]) -> Option<Reply> {
    let src = SocketAddr::new(IpAddr::V6(v6(from)), 40000);
    on_datagram(core, &ctx(settings), 0, src, pkt)
}

fn nonce(n: u8) -> [u8; 12] {
    [n; 12]
}

fn map(n: u8, proto: u8, iport: u16) -> pcp::Map {
    pcp::Map {
        nonce: nonce(n),
        protocol: proto,
        internal_port: iport,
        external_port: 0,
        external_addr: Ipv6Addr::UNSPECIFIED,
    }
}

fn req(from: &str, lifetime: u32, body: Body, options: Vec<PcpOption>) -> Vec<u8> {
    pcp::Request {
        lifetime,
        client_addr: v6(from),
        body,
        options,
    }
    .emit()
}

/// The answer that goes out when the firewall succeeds, parsed.
fn ask(
    core: &mut Core,
    from: &str,
    lifetime: u32,
    body: Body,
    opts: Vec<PcpOption>,
) -> pcp::Response {
    ask_with(core, &CFG, from, &req(from, lifetime, body, opts))
}

fn ask_with(core: &mut Core, s: &Settings, from: &str, pkt: &[u8]) -> pcp::Response {
    let r = send(core, s, from, pkt).expect("a reply");
    pcp::Response::parse(&r.ok).expect("a PCP response")
}

fn code(r: &pcp::Response) -> ResultCode {
    r.result
}

fn filter(prefix_len: u8, port: u16, a: &str) -> PcpOption {
    PcpOption::Filter(Filter {
        prefix_len,
        remote_peer_port: port,
        remote_peer_addr: v6(a),
    })
}

#[test]
fn a_map_is_a_pinhole_to_the_internal_address_itself() {
    let mut c = core();
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    assert_eq!((r.lifetime, r.epoch), (600, EPOCH6));
    // RFC 6887 §11.3 for a firewall: no translation
    assert_eq!(
        r.body,
        Body::Map(pcp::Map {
            external_port: 8080,
            external_addr: v6("fd77::2"),
            ..map(1, 6, 8080)
        })
    );
    let p = c.pinholes().iter().next().unwrap().clone();
    assert_eq!(p.tuple(), (None, 0, v6("fd77::2"), 8080, 6));
    assert_eq!(
        (p.origin, p.nonce, p.peer, p.client),
        (
            Origin::Pcp,
            Some(nonce(1)),
            false,
            "fd77::2".parse().unwrap()
        )
    );
    assert_eq!(p.expires, 10_000 + 600_000);
    // lifetimes within min_lifetime..max_lifetime, UDP and UDP-Lite too
    let r = ask(&mut c, "fd77::2", 5, Body::Map(map(1, 17, 9000)), vec![]);
    assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 120));
    let r = ask(
        &mut c,
        "fd77::2",
        u32::MAX,
        Body::Map(map(1, 136, 9001)),
        vec![],
    );
    assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 86400));
    assert_eq!(c.pinholes().len(), 3);
}

#[test]
fn renew_with_the_nonce_delete_and_wildcard_delete() {
    let mut c = core();
    ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    let id = c.pinholes().iter().next().unwrap().id;
    // the same nonce renews the same pinhole; another nonce may not
    let r = ask(&mut c, "fd77::2", 1200, Body::Map(map(1, 6, 8080)), vec![]);
    assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 1200));
    assert_eq!(c.pinholes().iter().next().unwrap().id, id);
    let r = ask(&mut c, "fd77::2", 1200, Body::Map(map(2, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    let r = ask(&mut c, "fd77::2", 0, Body::Map(map(2, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    assert_eq!(c.pinholes().len(), 1);
    // lifetime 0 with the nonce deletes; again, nothing to delete: success
    for _ in 0..2 {
        let r = ask(&mut c, "fd77::2", 0, Body::Map(map(1, 6, 8080)), vec![]);
        assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 0));
        assert!(c.pinholes().is_empty());
    }
    // internal port 0 or protocol 0: every pinhole of this nonce
    ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    ask(&mut c, "fd77::2", 600, Body::Map(map(1, 17, 8081)), vec![]);
    ask(&mut c, "fd77::2", 600, Body::Map(map(3, 17, 8082)), vec![]);
    let r = ask(&mut c, "fd77::2", 0, Body::Map(map(1, 0, 0)), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    let left: Vec<u16> = c.pinholes().iter().map(|p| p.iport).collect();
    assert_eq!(left, vec![8082]);
}

/// One table with WANIPv6FirewallControl: the same traffic is refused
/// across the protocols, each with its own code.
#[test]
fn collisions_with_upnp_pinholes() {
    let mut c = core();
    let me = v6("fd77::2");
    let upnp = PinRequest {
        iport: 8080,
        proto: 6,
        lease: 600,
        ..PinRequest::upnp(IpAddr::V6(me), None, 0, me)
    };
    c.add_pinhole(&upnp, 0, &NO_FACTS).unwrap();
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    // deleting a PCP mapping that does not exist succeeds, and leaves
    // UPnP's pinhole alone
    let r = ask(&mut c, "fd77::2", 0, Body::Map(map(1, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    assert_eq!(c.pinholes().len(), 1);
    // another port is free
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8081)), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    let refused = c
        .take_events()
        .into_iter()
        .filter(|e| e.kind == EventKind::Refuse);
    assert_eq!(refused.count(), 1);
}

#[test]
fn filters_narrow_the_pinhole() {
    let mut c = core();
    let peer = "2001:db8:3::2";
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        Body::Map(map(1, 6, 8080)),
        vec![filter(128, 443, peer)],
    );
    assert_eq!(code(&r), ResultCode::Success);
    // the response echoes the option
    assert_eq!(r.options, vec![filter(128, 443, peer)]);
    let p = c.pinholes().iter().next().unwrap().clone();
    assert_eq!((p.remote, p.rport), (Some(v6(peer)), 443));
    // a renewal without FILTER keeps it; prefix 0 removes it
    ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    let q = c.pinholes().iter().next().unwrap();
    assert_eq!((q.id, q.remote, q.rport), (p.id, Some(v6(peer)), 443));
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        Body::Map(map(1, 6, 8080)),
        vec![filter(0, 0, "::")],
    );
    assert_eq!(code(&r), ResultCode::Success);
    let q = c.pinholes().iter().next().unwrap();
    assert_eq!((q.id, q.remote, q.rport), (p.id, None, 0));
    // what a pinhole cannot hold: a prefix, or two peers
    for opts in [
        vec![filter(64, 0, "2001:db8:3::")],
        vec![filter(128, 0, peer), filter(128, 0, "2001:db8:3::9")],
    ] {
        let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), opts);
        assert_eq!(code(&r), ResultCode::ExcessiveRemotePeers);
    }
    // an IPv4 peer cannot reach an IPv6 pinhole
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        Body::Map(map(1, 6, 8080)),
        vec![filter(128, 0, "::ffff:192.0.3.2")],
    );
    assert_eq!(code(&r), ResultCode::MalformedOption);
    assert_eq!(c.pinholes().len(), 1);
}

#[test]
fn prefer_failure_wants_the_internal_port_and_address() {
    let mut c = core();
    let with = |port: u16, addr: &str| {
        Body::Map(pcp::Map {
            external_port: port,
            external_addr: v6(addr),
            ..map(1, 6, 8080)
        })
    };
    let pf = || vec![PcpOption::PreferFailure];
    for (port, addr) in [(8081, "::"), (0, "fd77::9"), (0, "::ffff:192.0.3.1")] {
        let r = ask(&mut c, "fd77::2", 600, with(port, addr), pf());
        assert_eq!(code(&r), ResultCode::CannotProvideExternal, "{port} {addr}");
    }
    // without PREFER_FAILURE a suggestion is only a suggestion
    let r = ask(&mut c, "fd77::2", 600, with(8081, "fd77::9"), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    let r = ask(&mut c, "fd77::2", 600, with(8080, "fd77::2"), pf());
    assert_eq!(code(&r), ResultCode::Success);
    let r = ask(&mut c, "fd77::2", 600, with(0, "::ffff:0.0.0.0"), pf());
    assert_eq!(code(&r), ResultCode::Success);
}

fn peer(n: u8, iport: u16, eport: u16, peer: &str, pport: u16) -> Body {
    Body::Peer(pcp::Peer {
        nonce: nonce(n),
        protocol: 17,
        internal_port: iport,
        external_port: eport,
        external_addr: Ipv6Addr::UNSPECIFIED,
        remote_peer_port: pport,
        remote_peer_addr: v6(peer),
    })
}

#[test]
fn peer_is_a_pinhole_for_the_remote_peer() {
    let mut c = core();
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        peer(1, 5000, 0, "2001:db8:3::2", 6000),
        vec![],
    );
    assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 600));
    let Body::Peer(b) = r.body else {
        panic!("{r:?}")
    };
    assert_eq!((b.external_port, b.external_addr), (5000, v6("fd77::2")));
    let p = c.pinholes().iter().next().unwrap().clone();
    assert_eq!(
        p.tuple(),
        (Some(v6("2001:db8:3::2")), 6000, v6("fd77::2"), 5000, 17)
    );
    assert!(p.peer);
    // RFC 6887 §12.3: PEER never shortens a mapping
    let r = ask(
        &mut c,
        "fd77::2",
        130,
        peer(1, 5000, 0, "2001:db8:3::2", 6000),
        vec![],
    );
    assert_eq!((code(&r), r.lifetime), (ResultCode::Success, 600));
    // another nonce for the same flow is not the owner
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        peer(2, 5000, 0, "2001:db8:3::2", 6000),
        vec![],
    );
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    // a suggested external port other than the internal one cannot be had
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        peer(1, 5000, 5001, "2001:db8:3::2", 6000),
        vec![],
    );
    assert_eq!(code(&r), ResultCode::CannotProvideExternal);
    for (body, want) in [
        (
            peer(1, 5000, 0, "::ffff:192.0.3.2", 6000),
            ResultCode::NotAuthorized,
        ),
        (peer(1, 5000, 0, "::", 6000), ResultCode::MalformedRequest),
        (
            peer(1, 0, 0, "2001:db8:3::2", 6000),
            ResultCode::MalformedRequest,
        ),
        (
            peer(1, 5000, 0, "2001:db8:3::2", 0),
            ResultCode::MalformedRequest,
        ),
    ] {
        let r = ask(&mut c, "fd77::2", 600, body, vec![]);
        assert_eq!(code(&r), want, "{body:?}");
    }
    // a MAP with the same nonce on the same endpoint is another pinhole
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 17, 5000)), vec![]);
    assert_eq!(code(&r), ResultCode::Success);
    assert_eq!(c.pinholes().len(), 2);
}

#[test]
fn every_rule_that_governs_pinholes_applies() {
    // pinholes switched off
    let mut c = core_with(|c| c.ipv6_pinholes = false);
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    let mut c = core();
    // permission rules by port (the default rules deny below 1024)
    let r = ask(&mut c, "fd77::2", 600, Body::Map(map(1, 6, 22)), vec![]);
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    // what no pinhole holds
    for (m, want) in [
        (map(1, 6, 0), ResultCode::NotAuthorized),
        (map(1, 0, 0), ResultCode::UnsuppProtocol),
        (map(1, 50, 8080), ResultCode::UnsuppProtocol),
    ] {
        let r = ask(&mut c, "fd77::2", 600, Body::Map(m), vec![]);
        assert_eq!(code(&r), want, "{m:?}");
    }
    // the quota counts the /64: three addresses of one host's prefix
    for (i, from) in ["fd77::2", "fd77::a:2", "fd77::b:2"].iter().enumerate() {
        let r = ask(
            &mut c,
            from,
            600,
            Body::Map(map(1, 6, 8000 + i as u16)),
            vec![],
        );
        assert_eq!(code(&r), ResultCode::Success, "{from}");
    }
    let r = ask(&mut c, "fd77::c:2", 600, Body::Map(map(1, 6, 8010)), vec![]);
    assert_eq!((code(&r), r.lifetime), (ResultCode::UserExQuota, 30));
    assert_eq!(c.pinholes().len(), 3);
    // the whole table: 5 pinholes
    let wide = Lans::new(vec![crate::core::lan::Lan {
        nets6: vec![(v6("fd77::1"), 48)],
        ..LANS.get(0).unwrap().clone()
    }]);
    let s = Server {
        lans: &wide,
        ..ctx(&CFG)
    };
    for (i, from) in ["fd77:0:0:1::2", "fd77:0:0:2::2", "fd77:0:0:3::2"]
        .iter()
        .enumerate()
    {
        let pkt = req(from, 600, Body::Map(map(1, 6, 8020 + i as u16)), vec![]);
        let r = handle(&mut c, &s, IpAddr::V6(v6(from)), &pkt).unwrap();
        let want = if i < 2 {
            ResultCode::Success
        } else {
            ResultCode::NoResources
        };
        assert_eq!(pcp::Response::parse(&r.ok).unwrap().result, want, "{from}");
    }
}

#[test]
fn third_party_and_address_checks() {
    let mut c = core();
    let tp = |a: &str| vec![PcpOption::ThirdParty(v6(a))];
    // not configured
    let r = ask(
        &mut c,
        "fd77::2",
        600,
        Body::Map(map(1, 6, 8080)),
        tp("fd77::3"),
    );
    assert_eq!(code(&r), ResultCode::UnsuppOption);
    let on = Settings {
        allow_third_party: true,
        ..CFG
    };
    let pkt = |a: &str| req("fd77::2", 600, Body::Map(map(1, 6, 8080)), tp(a));
    // secure mode: an IPv6 client may only open its own address
    let r = ask_with(&mut c, &on, "fd77::2", &pkt("fd77::3"));
    assert_eq!(code(&r), ResultCode::NotAuthorized);
    for (a, want) in [
        ("fd77::2", ResultCode::MalformedRequest),
        ("::", ResultCode::MalformedOption),
        ("2001:db8:3::2", ResultCode::NotAuthorized),
        ("::ffff:192.168.1.3", ResultCode::NotAuthorized),
    ] {
        let r = ask_with(&mut c, &on, "fd77::2", &pkt(a));
        assert_eq!(code(&r), want, "{a}");
    }
    let mut open = core_with(|c| c.secure_mode = false);
    let r = ask_with(&mut open, &on, "fd77::2", &pkt("fd77::3"));
    assert_eq!(code(&r), ResultCode::Success);
    let Body::Map(b) = r.body else { panic!() };
    assert_eq!(b.external_addr, v6("fd77::3"));
    let p = open.pinholes().iter().next().unwrap();
    assert_eq!(
        (p.iaddr, p.client),
        (v6("fd77::3"), "fd77::2".parse().unwrap())
    );
    // RFC 6887 §8.3: the client address field must be the source
    let r = ask_with(
        &mut c,
        &CFG,
        "fd77::2",
        &req("fd77::9", 600, Body::Map(map(1, 6, 8080)), vec![]),
    );
    assert_eq!(code(&r), ResultCode::AddressMismatch);
    let mapped = req("::ffff:192.168.1.2", 0, Body::Announce, vec![]);
    let r = ask_with(&mut c, &CFG, "fd77::2", &mapped);
    assert_eq!(code(&r), ResultCode::AddressMismatch);
}

#[test]
fn announce_silence_and_what_is_not_served() {
    let mut c = core();
    let r = ask(&mut c, "fd77::2", 0, Body::Announce, vec![]);
    assert_eq!(
        (code(&r), r.epoch, r.lifetime),
        (ResultCode::Success, EPOCH6, 0)
    );
    // NAT-PMP is IPv4 only: silence, with PCP on or off
    assert!(send(&mut c, &CFG, "fd77::2", &[0, 0]).is_none());
    assert!(
        send(
            &mut c,
            &CFG,
            "fd77::2",
            &[0, 1, 0, 0, 0x1f, 0x90, 0, 0, 0, 0, 2, 88]
        )
        .is_none()
    );
    let off = Settings { pcp: false, ..CFG };
    let ann = req("fd77::2", 0, Body::Announce, vec![]);
    assert!(send(&mut c, &off, "fd77::2", &ann).is_none());
    // only hosts of the LAN's prefixes: not a link-local or a foreign one
    for from in ["fe80::2", "2001:db8:3::2", "fd78::2"] {
        assert!(
            send(&mut c, &CFG, from, &req(from, 0, Body::Announce, vec![])).is_none(),
            "{from}"
        );
    }
    assert!(c.pinholes().is_empty());
    // over IPv6 the announcement is PCP's alone
    assert_eq!(
        announcements(&CFG, 5, Some("203.0.113.1".parse().unwrap()), true),
        vec![pcp::announcement(5)]
    );
    assert!(announcements(&off, 5, None, true).is_empty());
}

/// A failed firewall transaction: the turn's pinhole changes are undone
/// and the failure answer is NO_RESOURCES.
#[test]
fn a_refused_transaction_undoes_the_pinhole() {
    let mut c = core();
    let pkt = req("fd77::2", 600, Body::Map(map(1, 6, 8080)), vec![]);
    let r = send(&mut c, &CFG, "fd77::2", &pkt).unwrap();
    let fail = pcp::Response::parse(r.on_failure.as_ref().unwrap()).unwrap();
    assert_eq!(fail.result, ResultCode::NoResources);
    let mut fw = crate::core::firewall::Recording {
        fail_next: Some("no".into()),
        fail_restore: Some("no".into()),
        ..Default::default()
    };
    assert!(c.commit_turn(&mut fw, 10_000).refused());
    assert!(c.pinholes().is_empty());
}
