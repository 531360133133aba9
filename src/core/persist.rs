//! Mappings to and from lease-file lines (miniupnpd's format), converting
//! between the daemon's monotonic lease ends and the file's absolute UNIX
//! times.
//!
//! Owns: how a mapping's origin, PCP nonce and PEER port survive a
//! restart. miniupnpd writes them into the description (`NAT-PMP <port>
//! <proto>`, `PCP MAP <nonce>`, `PCP PEER <nonce> <peer port>`), where a
//! UPnP client's description could forge them. We write the same text, so
//! LuCI labels the lines as before, but read it back only from a line
//! marked as our own label ([`Lease4::own_label`]), which no client text
//! can carry; every other line is a UPnP mapping. Pure: both clocks are
//! passed in.

use crate::config::IGD2_MAX_LEASE;
use crate::core::pinhole::{MAX_LEASE as PIN_MAX_LEASE, Pinhole};
use crate::core::table::{Key, Mapping, Millis, Origin, RemoteFilter};
use crate::proto::lease::{Lease4, Lease6};

/// Longest lifetime restored, in seconds. IGD:2 caps its leases at 7
/// days; every other lifetime rupnpd grants is a 32-bit count of seconds
/// (IGDv1's ui4 lease duration, the NAT-PMP and PCP lifetime fields), so
/// a longer one is no lease we wrote. Bounding it also keeps
/// `secs * 1000` far from overflow.
fn max_restored_secs(origin: Origin) -> u64 {
    match origin {
        Origin::UpnpV2 => u64::from(IGD2_MAX_LEASE),
        _ => u64::from(u32::MAX),
    }
}

/// The IPv6 lease line of a pinhole (miniupnpd's `leases6` format).
pub fn to_lease6(p: &Pinhole, now: Millis, wall: u64) -> Lease6 {
    Lease6 {
        proto: u16::from(p.proto),
        iaddr: p.iaddr,
        iport: p.iport,
        remote: p.remote,
        rport: p.rport,
        uid: p.id,
        expiry: wall.saturating_add(u64::from(p.remaining_secs(now).max(1))),
        desc: "IGD2 pinhole".into(),
    }
}

/// The pinhole an IPv6 lease line describes, or `None` if it has ended
/// or is not one we could have made. Its lifetime is cut to the longest
/// a pinhole gets.
pub fn from_lease6(l: &Lease6, now: Millis, wall: u64) -> Option<Pinhole> {
    if l.expiry <= wall || l.uid == 0 || l.iport == 0 {
        return None;
    }
    let proto = u8::try_from(l.proto)
        .ok()
        .filter(|p| [6, 17, 136].contains(p))?;
    let secs = (l.expiry - wall).min(u64::from(PIN_MAX_LEASE));
    Some(Pinhole {
        id: l.uid,
        remote: l.remote,
        rport: l.rport,
        iaddr: l.iaddr,
        iport: l.iport,
        proto,
        expires: now.saturating_add(secs * 1000),
        client: std::net::IpAddr::V6(l.iaddr),
    })
}

/// The lease line of a mapping. `now` is the monotonic time and `wall`
/// the UNIX time, both read at the same moment by the caller.
pub fn to_lease(m: &Mapping, now: Millis, wall: u64) -> Lease4 {
    let expiry = match m.remaining_secs(now) {
        None => 0,
        Some(s) => wall.saturating_add(u64::from(s.max(1))),
    };
    // miniupnpd's labels, nonce included: the file is readable by root only
    let label = match (m.origin, m.nonce, m.peer_port) {
        (Origin::NatPmp, _, _) => Some(m.desc.clone()),
        (Origin::Pcp, Some(n), None) => Some(format!("PCP MAP {}", nonce_hex(&n))),
        (Origin::Pcp, Some(n), Some(p)) => Some(format!("PCP PEER {} {p}", nonce_hex(&n))),
        _ => None,
    };
    Lease4 {
        proto: m.key.proto,
        eport: m.key.eport,
        remote: m.remote.map(|r| (r.addr, r.prefix)),
        iaddr: m.iaddr,
        iport: m.iport,
        expiry,
        own_label: label.is_some(),
        desc: label.unwrap_or_else(|| m.desc.clone()),
    }
}

/// The 24 lowercase hex digits of a nonce, as miniupnpd writes them.
fn nonce_hex(n: &[u8; 12]) -> String {
    n.iter().map(|b| format!("{b:02x}")).collect()
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

/// What one of our own labels says: origin, nonce, PEER port and the
/// description the mapping carries (without the nonce). `None` for text
/// that is no label of ours.
type Label = (Origin, Option<[u8; 12]>, Option<u16>, String);

fn read_label(l: &Lease4) -> Option<Label> {
    let mut words = l.desc.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("NAT-PMP"), _, _) => Some((Origin::NatPmp, None, None, l.desc.clone())),
        (Some("PCP"), Some(op @ ("MAP" | "PEER")), Some(hex)) => {
            let nonce = nonce_from_hex(hex)?;
            let peer = if op == "PEER" {
                words
                    .next()
                    .and_then(crate::proto::parse_u16)
                    .filter(|_| l.remote.is_some())
            } else {
                None
            };
            let desc = if peer.is_some() {
                "PCP PEER"
            } else {
                "PCP MAP"
            };
            Some((Origin::Pcp, Some(nonce), peer, desc.into()))
        }
        _ => None,
    }
}

/// A client's description as restored: a PCP nonce that miniupnpd (or an
/// older rupnpd) wrote into it is dropped, so it is neither listed nor
/// logged.
fn client_desc(desc: &str) -> String {
    let mut words = desc.splitn(4, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("PCP"), Some(op @ ("MAP" | "PEER")), Some(hex)) if nonce_from_hex(hex).is_some() => {
            format!("PCP {op}")
        }
        _ => desc.to_string(),
    }
}

/// The mapping a lease line describes, or `None` if its lease has ended.
/// The requesting client is not in the file and is taken to be the
/// internal client (what secure mode enforces anyway). Lines without our
/// label mark are UPnP mappings (IGDv1 if permanent).
pub fn from_lease(l: &Lease4, now: Millis, wall: u64) -> Option<Mapping> {
    let secs = match l.expiry {
        0 => None,
        e if e <= wall => return None,
        e => Some(e - wall),
    };
    // NAT-PMP and PCP lifetimes always end
    let label = l
        .own_label
        .then(|| read_label(l))
        .flatten()
        .filter(|_| secs.is_some());
    let (origin, nonce, peer_port, desc) = match label {
        Some(label) => label,
        None if secs.is_none() => (Origin::UpnpV1, None, None, client_desc(&l.desc)),
        None => (Origin::UpnpV2, None, None, client_desc(&l.desc)),
    };
    let expires = secs.map(|s| now.saturating_add(s.min(max_restored_secs(origin)) * 1000));
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
        peer_port,
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

        let mut c = m(Origin::Pcp, "PCP PEER", Some(60_000));
        c.nonce = Some([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        c.peer_port = Some(5000);
        c.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let l = to_lease(&c, 0, 5);
        // miniupnpd's label (LuCI shows "PCP (nonce …)"), marked as ours
        assert_eq!(
            l.emit(),
            "UDP:7000:192.0.3.2:192.168.1.5:27000:65:PCP PEER 0102030405060708090a0b0c 5000\t"
        );
        let back = from_lease(&Lease4::parse(&l.emit()).unwrap(), 0, 5).unwrap();
        assert_eq!(back, c);
        c.peer_port = None;
        c.desc = "PCP MAP".into();
        let l = to_lease(&c, 0, 5);
        assert_eq!(l.desc, "PCP MAP 0102030405060708090a0b0c");
        assert_eq!(
            from_lease(&Lease4::parse(&l.emit()).unwrap(), 0, 5),
            Some(c)
        );
        // a marked line is still no permanent NAT-PMP or PCP mapping
        let mut l = to_lease(&n, 0, 5);
        l.expiry = 0;
        assert_eq!(from_lease(&l, 0, 5).unwrap().origin, Origin::UpnpV1);
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
