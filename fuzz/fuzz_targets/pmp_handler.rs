//! `core::natpmp_pcp::on_datagram`: a sequence of datagrams from a few LAN
//! hosts, IPv4 and IPv6, into one `Core` built from `Config::default()`,
//! with no listeners, one LAN (192.168.1.0/24 and fd77::/64), a fixed
//! external address, epoch and `now`.
//!
//! Input: one flags byte, then records of `[host][len_hi][len_lo][len bytes]`
//! (the last record takes what is left). Flags: bit 0 allows PCP
//! THIRD_PARTY, bit 1 turns NAT-PMP off, bit 2 turns PCP off, bit 3 turns
//! secure mode off. Host: bits 0–1 pick the host, bit 2 makes it an IPv6
//! one (fd77::2–5 instead of 192.168.1.2–5), bit 3 with bit 2 a link-local
//! one (fe80::2–5, on no served prefix), bit 7 makes this turn's firewall
//! transaction fail, so the table is rolled back as the daemon's turn does.
//!
//! Checks besides "no panic": every reply (and failure reply) keeps the
//! size rules — PCP 24..=1100 bytes, a multiple of 4, R set, a success no
//! longer than the request (padded to 24); NAT-PMP 8, 12 or 16 bytes or an
//! echo no longer than the request (padded to 8) — a failure reply exists
//! exactly when the table or the pinholes changed; a rollback restores
//! both; neither exceeds the configured maximum. An IPv6 host never gets
//! a NAT-PMP answer nor changes the IPv4 table, an IPv4 host never
//! changes the pinholes, and a link-local one gets no answer at all.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use rupnpd::config::Config;
use rupnpd::core::Core;
use rupnpd::core::facts::FixedFacts;
use rupnpd::core::firewall::Recording;
use rupnpd::core::lan::{Lan, Lans};
use rupnpd::core::natpmp_pcp::{Server, Settings, on_datagram};
use rupnpd::core::pinhole::PinPolicy;
use rupnpd::core::policy::Policy;

/// A router with no listeners.
static NO_FACTS: FixedFacts = FixedFacts::new();

const EXTERNAL: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const EPOCH: u32 = 1000;
const NOW: u64 = 10_000_000;
/// Most datagrams read from one input.
const MAX_PACKETS: usize = 64;

static LANS: LazyLock<Lans> = LazyLock::new(|| {
    Lans::new(vec![Lan {
        dev: "br-lan".into(),
        addr: Ipv4Addr::new(192, 168, 1, 1),
        nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        nets6: vec![(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1), 64)],
        http_port: 5000,
    }])
});

fn source(host: u8) -> SocketAddr {
    let n = 2 + u16::from(host & 3);
    let a = match host & 0x0c {
        0 | 8 => IpAddr::V4(Ipv4Addr::new(192, 168, 1, n as u8)),
        4 => IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, n)),
        _ => IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, n)),
    };
    SocketAddr::new(a, 40000)
}

fn check_reply(pkt: &[u8], out: &[u8]) {
    match out.first() {
        Some(2) => {
            assert!(
                out.len() >= 24 && out.len() <= 1100 && out.len().is_multiple_of(4),
                "{pkt:?} -> {out:?}"
            );
            assert!(out[1] & 0x80 != 0);
            if out[3] == 0 {
                assert!(out.len() <= pkt.len().max(24), "{pkt:?} -> {out:?}");
            }
        }
        Some(0) => {
            let ok = matches!(out.len(), 8 | 12 | 16)
                || (out.len() <= pkt.len().max(8) && out.len() <= 1100);
            assert!(ok, "{pkt:?} -> {out:?}");
            assert!(out[1] & 0x80 != 0);
        }
        _ => panic!("{pkt:?} -> {out:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let config = Config {
        secure_mode: flags & 8 == 0,
        ..Config::default()
    };
    let mut cfg = Settings::from_config(&config);
    cfg.allow_third_party = flags & 1 != 0;
    cfg.natpmp = flags & 2 == 0;
    cfg.pcp = flags & 4 == 0;
    let mut core = Core::new(
        Policy::from_config(&config, Vec::new()),
        PinPolicy::from_config(&config),
    );
    let ctx = Server {
        settings: &cfg,
        external: Some(EXTERNAL),
        epoch: EPOCH,
        lans: &LANS,
        now: NOW,
        facts: &NO_FACTS,
    };
    for _ in 0..MAX_PACKETS {
        let Some((&host, tail)) = rest.split_first() else {
            break;
        };
        let (len, tail) = match tail {
            [hi, lo, t @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), t),
            t => (t.len(), &[][..]),
        };
        let (pkt, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;

        let src = source(host);
        let before: Vec<_> = core.table().iter().cloned().collect();
        let pins_before: Vec<_> = core.pinholes().iter().cloned().collect();
        let reply = on_datagram(&mut core, &ctx, 0, src, pkt);
        let dirty = core.is_dirty();
        match &reply {
            Some(r) => {
                check_reply(pkt, &r.ok);
                if let Some(f) = &r.on_failure {
                    check_reply(pkt, f);
                }
                assert_eq!(r.on_failure.is_some(), dirty, "{pkt:?}");
            }
            None => assert!(!dirty, "silent, yet the table changed: {pkt:?}"),
        }
        match src.ip() {
            IpAddr::V6(a) => {
                // NAT-PMP is IPv4 only; link-local hosts are no PCP clients
                assert!(reply.as_ref().is_none_or(|r| r.ok.first() == Some(&2)));
                assert!(a.segments()[0] != 0xfe80 || reply.is_none(), "{pkt:?}");
                let after: Vec<_> = core.table().iter().cloned().collect();
                assert_eq!(after, before, "an IPv6 host changed the IPv4 table");
            }
            IpAddr::V4(_) => {
                let after: Vec<_> = core.pinholes().iter().cloned().collect();
                assert_eq!(after, pins_before, "an IPv4 host changed the pinholes");
            }
        }
        let mut fw = Recording::default();
        if host & 0x80 != 0 {
            // the firewall refuses the batch, and its repair
            fw.fail_next = Some("refused".into());
            fw.fail_restore = Some("refused".into());
        }
        let turn = core.commit_turn(&mut fw, NOW);
        if turn.refused() {
            let after: Vec<_> = core.table().iter().cloned().collect();
            assert_eq!(after, before);
            let pins: Vec<_> = core.pinholes().iter().cloned().collect();
            assert_eq!(pins, pins_before);
        }
        assert!(core.table().len() <= config.max_mappings as usize);
        assert!(core.pinholes().len() <= config.max_mappings as usize);
    }
});
