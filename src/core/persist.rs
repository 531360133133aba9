//! Mappings to and from lease-file lines (miniupnpd's format), converting
//! between the daemon's monotonic lease ends and the file's absolute UNIX
//! times.
//!
//! Owns: how a mapping's origin, PCP nonce and PEER port survive in the
//! description field (as miniupnpd writes them: `NAT-PMP <port> <proto>`,
//! `PCP MAP <nonce>`, `PCP PEER <nonce> <peer port>`). Pure: both clocks
//! are passed in.

use crate::core::pinhole::Pinhole;
use crate::core::table::{Key, Mapping, Millis, Origin, RemoteFilter};
use crate::proto::lease::{Lease4, Lease6};

/// The IPv6 lease line of a pinhole (miniupnpd's `leases6` format).
pub fn to_lease6(p: &Pinhole, now: Millis, wall: u64) -> Lease6 {
    Lease6 {
        proto: u16::from(p.proto),
        iaddr: p.iaddr,
        iport: p.iport,
        remote: p.remote,
        rport: p.rport,
        uid: p.id,
        expiry: wall + u64::from(p.remaining_secs(now).max(1)),
        desc: "IGD2 pinhole".into(),
    }
}

/// The pinhole an IPv6 lease line describes, or `None` if it has ended
/// or is not one we could have made.
pub fn from_lease6(l: &Lease6, now: Millis, wall: u64) -> Option<Pinhole> {
    if l.expiry <= wall || l.uid == 0 || l.iport == 0 {
        return None;
    }
    let proto = u8::try_from(l.proto)
        .ok()
        .filter(|p| [6, 17, 136].contains(p))?;
    Some(Pinhole {
        id: l.uid,
        remote: l.remote,
        rport: l.rport,
        iaddr: l.iaddr,
        iport: l.iport,
        proto,
        expires: now + (l.expiry - wall).min(u64::from(crate::core::pinhole::MAX_LEASE)) * 1000,
        client: std::net::IpAddr::V6(l.iaddr),
    })
}

/// The lease line of a mapping. `now` is the monotonic time and `wall`
/// the UNIX time, both read at the same moment by the caller.
pub fn to_lease(m: &Mapping, now: Millis, wall: u64) -> Lease4 {
    let expiry = match m.remaining_secs(now) {
        None => 0,
        Some(s) => wall + u64::from(s.max(1)),
    };
    let desc = match (m.origin, m.peer_port) {
        (Origin::Pcp, Some(pport)) => format!("{} {pport}", m.desc),
        _ => m.desc.clone(),
    };
    Lease4 {
        proto: m.key.proto,
        eport: m.key.eport,
        remote: m.remote.map(|r| (r.addr, r.prefix)),
        iaddr: m.iaddr,
        iport: m.iport,
        expiry,
        desc,
    }
}

fn nonce_from_hex(s: &str) -> Option<[u8; 12]> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let mut out = [0u8; 12];
    for (i, pair) in b.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// The mapping a lease line describes, or `None` if its lease has ended.
/// The requesting client is not in the file and is taken to be the
/// internal client (what secure mode enforces anyway).
pub fn from_lease(l: &Lease4, now: Millis, wall: u64) -> Option<Mapping> {
    let expires = match l.expiry {
        0 => None,
        e if e <= wall => return None,
        e => Some(now + (e - wall) * 1000),
    };
    let mut words = l.desc.split(' ');
    let (origin, nonce, peer_port, desc) = match (words.next(), words.next(), words.next()) {
        (Some("NAT-PMP"), _, _) => (Origin::NatPmp, None, None, l.desc.clone()),
        (Some("PCP"), Some(op @ ("MAP" | "PEER")), Some(hex)) => {
            let nonce = nonce_from_hex(hex);
            let peer = if op == "PEER" {
                words.next().and_then(crate::proto::parse_u16)
            } else {
                None
            };
            (Origin::Pcp, nonce, peer, format!("PCP {op} {hex}"))
        }
        _ if expires.is_none() => (Origin::UpnpV1, None, None, l.desc.clone()),
        _ => (Origin::UpnpV2, None, None, l.desc.clone()),
    };
    Some(Mapping {
        key: Key::new(l.proto, l.eport),
        iaddr: l.iaddr,
        iport: l.iport,
        remote: l
            .remote
            .filter(|(_, p)| *p > 0)
            .map(|(addr, prefix)| RemoteFilter { addr, prefix }),
        desc,
        origin,
        client: l.iaddr,
        expires,
        nonce,
        peer_port: peer_port.filter(|_| l.remote.is_some()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Proto;
    use std::net::Ipv4Addr;

    fn m(origin: Origin, desc: &str, expires: Option<Millis>) -> Mapping {
        Mapping {
            key: Key::new(Proto::Udp, 7000),
            iaddr: Ipv4Addr::new(192, 168, 1, 5),
            iport: 27000,
            remote: None,
            desc: desc.into(),
            origin,
            client: Ipv4Addr::new(192, 168, 1, 5),
            expires,
            nonce: None,
            peer_port: None,
        }
    }

    #[test]
    fn round_trips_through_the_wall_clock() {
        // 3600.5 s left at monotonic 10 s, wall 1_700_000_000
        let a = m(Origin::UpnpV2, "game: lobby", Some(10_000 + 3_600_500));
        let l = to_lease(&a, 10_000, 1_700_000_000);
        assert_eq!(l.expiry, 1_700_003_601);
        assert_eq!(
            l.emit(),
            "UDP:7000:192.168.1.5:27000:1700003601:game: lobby"
        );
        // restored after a restart: monotonic clock at 0, wall 100 s later
        let b = from_lease(&l, 0, 1_700_000_100).unwrap();
        assert_eq!(b.expires, Some(3_501_000));
        assert_eq!(b.origin, Origin::UpnpV2);
        assert_eq!(b.desc, "game: lobby");
        assert!(from_lease(&l, 0, 1_700_003_601).is_none());
    }

    #[test]
    fn permanent_nat_pmp_and_pcp() {
        let p = m(Origin::UpnpV1, "perm", None);
        let l = to_lease(&p, 0, 5);
        assert_eq!(l.expiry, 0);
        assert_eq!(from_lease(&l, 0, 999).unwrap().origin, Origin::UpnpV1);

        let n = m(Origin::NatPmp, "NAT-PMP 7000 udp", Some(60_000));
        assert_eq!(
            from_lease(&to_lease(&n, 0, 5), 0, 5).unwrap().origin,
            Origin::NatPmp
        );

        let mut c = m(
            Origin::Pcp,
            "PCP PEER 0102030405060708090a0b0c",
            Some(60_000),
        );
        c.nonce = Some([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        c.peer_port = Some(5000);
        c.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let l = to_lease(&c, 0, 5);
        assert_eq!(l.desc, "PCP PEER 0102030405060708090a0b0c 5000");
        let back = from_lease(&Lease4::parse(&l.emit()).unwrap(), 0, 5).unwrap();
        assert_eq!(back.nonce, c.nonce);
        assert_eq!(back.peer_port, Some(5000));
        assert_eq!(back.desc, c.desc);
        assert_eq!(back.remote, c.remote);
    }

    /// Issue 13 item 6: a UPnP client's description is its own text; read
    /// back after a restart it never makes a NAT-PMP or PCP mapping, nor
    /// a nonce the client chose.
    #[test]
    fn a_description_cannot_choose_origin_or_nonce() {
        let forged = [
            (Origin::UpnpV1, "PCP MAP 0c0c0c0c0c0c0c0c0c0c0c0c", None),
            (Origin::UpnpV2, "NAT-PMP 7000 udp", Some(60_000)),
            (
                Origin::UpnpV2,
                "PCP PEER 0c0c0c0c0c0c0c0c0c0c0c0c 5000",
                Some(60_000),
            ),
        ];
        for (origin, desc, expires) in forged {
            let mut a = m(origin, desc, expires);
            a.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
            let line = to_lease(&a, 0, 5).emit();
            let back = from_lease(&Lease4::parse(&line).unwrap(), 0, 5).unwrap();
            assert_eq!(
                (back.origin, back.nonce, back.peer_port),
                (origin, None, None),
                "{line:?}"
            );
        }
    }

    /// Lines written by miniupnpd (or an older rupnpd) carry no origin: they
    /// load as UPnP mappings, and a nonce in a description is not kept
    /// where it would be listed or logged.
    #[test]
    fn miniupnpd_lines_load_as_upnp_without_nonces() {
        let (ok, bad) = crate::proto::lease::parse_file(
            "TCP:33333:192.168.0.100:33333:1485578298:NAT-PMP 33333 tcp\n\
UDP:9:198.51.100.0/24:192.168.1.5:9:0:PCP MAP 0123456789abcdef01234567\n\
UDP:10:192.168.1.5:10:0:PCP PEER 0123456789abcdef01234567 5000\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        let back: Vec<Mapping> = ok
            .iter()
            .filter_map(|l| from_lease(l, 0, 1_485_578_000))
            .collect();
        let got: Vec<_> = back
            .iter()
            .map(|b| (b.origin, b.nonce, b.desc.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Origin::UpnpV2, None, "NAT-PMP 33333 tcp"),
                (Origin::UpnpV1, None, "PCP MAP"),
                (Origin::UpnpV1, None, "PCP PEER"),
            ]
        );
    }

    /// Issue 13 item 12: times in the file are input. An expiry far in the
    /// future is cut to the longest lease the mapping's protocol grants
    /// (no overflow of `(expiry - wall) * 1000`), whatever the clocks say.
    #[test]
    fn hostile_expiry_times_are_clamped() {
        let l = |expiry: u64| Lease4::parse(&format!("TCP:1:192.168.1.5:1:{expiry}:x")).unwrap();
        let b = from_lease(&l(u64::MAX), 5, 1_700_000_000).unwrap();
        assert_eq!(
            b.expires,
            Some(5 + u64::from(crate::config::IGD2_MAX_LEASE) * 1000)
        );
        let b = from_lease(&l(1_700_000_000 + 100), 5, 1_700_000_000).unwrap();
        assert_eq!(b.expires, Some(5 + 100_000));
        // a monotonic clock at its end saturates rather than wraps
        let b = from_lease(&l(u64::MAX), u64::MAX - 1, 0).unwrap();
        assert_eq!(b.expires, Some(u64::MAX));
        assert!(from_lease(&l(u64::MAX), 0, u64::MAX).is_none());
        // the wall clock at its end: the line says "ends now" at worst
        assert_eq!(
            to_lease(&m(Origin::UpnpV2, "x", Some(60_000)), 0, u64::MAX).expiry,
            u64::MAX
        );
        let pin = Lease6::parse("TCP;fd00::2;1;;0;7;18446744073709551615;x").unwrap();
        let p = from_lease6(&pin, u64::MAX - 1, 1).unwrap();
        assert_eq!(p.expires, u64::MAX);
        let p = from_lease6(&pin, 0, 1).unwrap();
        assert_eq!(p.expires, u64::from(crate::core::pinhole::MAX_LEASE) * 1000);
    }
}
