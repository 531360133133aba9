//! What each mapping and pinhole becomes in the kernel: the element of
//! which map or set, with which key, value and lifetime, and the way back
//! from a dumped key to the mapping.
//!
//! Owns: the element encodings that must agree with the declarations of
//! [`super::ruleset`], the lifetimes asked of the kernel, and the
//! reference counting of forward elements that several mappings share.
//! Pure: `super` sends them.

use std::net::Ipv4Addr;

use super::ruleset::{DNAT, DNAT_RH, PIN6, PIN6_H, PIN6_HP, PIN6_P};
use crate::core::firewall::Counters;
use crate::core::pinhole::Pinhole;
use crate::core::table::{Key, Mapping, Millis};
use crate::proto::Proto;
use crate::proto::netlink::nftables::{self, Counter, Data, Elem};

/// Extra time the kernel keeps an element after its lease: the daemon
/// removes it itself while alive; the kernel only takes over if it died.
const GRACE_MS: u64 = 10_000;

/// A forward-set key: internal address, protocol, internal port.
pub(super) type FwdKey = (Ipv4Addr, Proto, u16);
/// One mapping referencing a forward element, with its lease end.
type FwdRef = (Key, Option<Millis>);

/// The mappings referencing one forward element. Nearly every element
/// has one, kept in place: a Vec would be a heap block per mapping.
#[derive(Debug, Clone, Default)]
pub(super) enum FwdRefs {
    #[default]
    None,
    One(FwdRef),
    Many(Vec<FwdRef>),
}

impl FwdRefs {
    pub(super) fn push(&mut self, r: FwdRef) {
        *self = match std::mem::take(self) {
            FwdRefs::None => FwdRefs::One(r),
            FwdRefs::One(a) => FwdRefs::Many(vec![a, r]),
            FwdRefs::Many(mut v) => {
                v.push(r);
                FwdRefs::Many(v)
            }
        };
    }

    /// Forgets the reference of mapping `key`.
    pub(super) fn remove(&mut self, key: Key) {
        *self = match std::mem::take(self) {
            FwdRefs::One((k, _)) if k == key => FwdRefs::None,
            FwdRefs::Many(mut v) => {
                v.retain(|(k, _)| *k != key);
                match v.as_slice() {
                    [] => FwdRefs::None,
                    [one] => FwdRefs::One(*one),
                    _ => FwdRefs::Many(v),
                }
            }
            other => other,
        };
    }

    pub(super) fn as_slice(&self) -> &[FwdRef] {
        match self {
            FwdRefs::None => &[],
            FwdRefs::One(r) => std::slice::from_ref(r),
            FwdRefs::Many(v) => v,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

pub(super) fn fwd_key(m: &Mapping) -> FwdKey {
    (m.iaddr, m.key.proto, m.iport)
}

/// IANA protocol number, as `inet_proto` holds it.
fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// Longest element lifetime we ask for (leases are far shorter).
const TIMEOUT_MAX_S: u64 = 366 * 24 * 3600;

/// An element's lifetime: the lease left (at least a second) plus the
/// grace period, in whole seconds as `nft list` shows them; None =
/// permanent.
pub(super) fn timeout_ms(expires: Option<Millis>, now: Millis) -> Option<u64> {
    expires.map(|e| {
        (e.saturating_sub(now).max(1000).saturating_add(GRACE_MS))
            .div_ceil(1000)
            .min(TIMEOUT_MAX_S)
            * 1000
    })
}

/// The first and last address of a remote-host prefix.
fn prefix_range(a: Ipv4Addr, prefix: u8) -> (Ipv4Addr, Ipv4Addr) {
    let p = u32::from(prefix.min(32));
    let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
    let lo = u32::from(a) & mask;
    (Ipv4Addr::from(lo), Ipv4Addr::from(lo | !mask))
}

/// A mapping's DNAT element, without lifetime: `proto . eport : iaddr .
/// iport` in upnp_dnat, or with a remote host the range `rhost/prefix .
/// proto . eport` in upnp_dnat_rh.
pub(super) fn dnat_elem(m: &Mapping) -> (&'static str, Elem) {
    let data = Some(Data::new().ipv4(m.iaddr).service(m.iport));
    let p = proto_number(m.key.proto);
    match m.remote {
        Some(r) => {
            let (lo, hi) = prefix_range(r.addr, r.prefix);
            let key = |a| Data::new().ipv4(a).proto(p).service(m.key.eport);
            (
                DNAT_RH,
                Elem {
                    key: key(lo),
                    key_end: Some(key(hi)),
                    data,
                    ..Elem::default()
                },
            )
        }
        None => (
            DNAT,
            Elem {
                key: Data::new().proto(p).service(m.key.eport),
                data,
                ..Elem::default()
            },
        ),
    }
}

/// The SNAT element of a PCP PEER mapping, if it is one: `iaddr . proto
/// . iport . peer . pport : ext . eport`.
pub(super) fn snat_elem(m: &Mapping, ext: Option<Ipv4Addr>) -> Option<Elem> {
    let (pport, peer, ext) = (m.peer_port?, m.remote?, ext?);
    Some(Elem {
        key: Data::new()
            .ipv4(m.iaddr)
            .proto(proto_number(m.key.proto))
            .service(m.iport)
            .ipv4(peer.addr)
            .service(pport),
        data: Some(Data::new().ipv4(ext).service(m.key.eport)),
        ..Elem::default()
    })
}

/// A pinhole's element: its set by wildcard shape, keys ending with
/// `iaddr . proto . iport`.
pub(super) fn pin_elem(p: &Pinhole) -> (&'static str, Elem) {
    let tail = |d: Data| d.ipv6(p.iaddr).proto(p.proto).service(p.iport);
    let (set, key) = match (p.remote, p.rport) {
        (None, 0) => (PIN6, tail(Data::new())),
        (Some(r), 0) => (PIN6_H, tail(Data::new().ipv6(r))),
        (None, rp) => (PIN6_P, tail(Data::new().service(rp))),
        (Some(r), rp) => (PIN6_HP, tail(Data::new().ipv6(r).service(rp))),
    };
    (
        set,
        Elem {
            key,
            ..Elem::default()
        },
    )
}

pub(super) fn fwd_elem(k: &FwdKey) -> Elem {
    Elem {
        key: Data::new().ipv4(k.0).proto(proto_number(k.1)).service(k.2),
        ..Elem::default()
    }
}

/// The mapping key in a DNAT element's key: protocol and external port
/// are its last two fields.
pub(super) fn dnat_mapping_key(key: &[u8]) -> Option<Key> {
    let f = key.get(key.len().checked_sub(8)?..)?;
    let proto = match f.first()? {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    Some(Key::new(
        proto,
        u16::from_be_bytes([*f.get(4)?, *f.get(5)?]),
    ))
}

/// The key [`super::Nft::pinhole_counter_map`] files a pinhole element under.
pub(super) fn pin_map_key(set: &str, key: &[u8]) -> String {
    format!("{set} {}", nftables::hex(key))
}

/// An element's counter as the firewall interface reports it.
pub(super) fn counters(c: Counter) -> Counters {
    Counters {
        packets: c.packets,
        bytes: c.bytes,
    }
}

/// The forward element an endpoint needs: present while any mapping
/// points at it, living as long as the longest of them (None inside
/// `Some` = permanent).
pub(super) fn fwd_state(refs: &[FwdRef]) -> Option<Option<Millis>> {
    if refs.is_empty() {
        return None;
    }
    if refs.iter().any(|(_, e)| e.is_none()) {
        return Some(None);
    }
    Some(refs.iter().filter_map(|(_, e)| *e).max())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::table::{Origin, RemoteFilter};

    fn m(eport: u16, iport: u16, d: u8, expires: Option<Millis>) -> Mapping {
        Mapping {
            key: Key::new(Proto::Tcp, eport),
            iaddr: Ipv4Addr::new(192, 168, 77, d),
            iport,
            remote: None,
            desc: String::new(),
            origin: Origin::UpnpV2,
            client: Ipv4Addr::new(192, 168, 77, d),
            expires,
            nonce: None,
            peer_port: None,
        }
    }

    fn hex_of(d: &Data) -> String {
        nftables::hex(d.as_bytes())
    }

    /// Keys and values as `nft --debug=netlink add element` shows them for
    /// the same elements (nft 1.0.6), byte for byte.
    #[test]
    fn element_encodings() {
        let a = m(18080, 8080, 2, Some(3_600_000));
        let (set, e) = dnat_elem(&a);
        assert_eq!(set, DNAT);
        assert_eq!(hex_of(&e.key), "06000000 46a00000");
        assert_eq!(hex_of(&e.data.unwrap()), "c0a84d02 1f900000");
        assert_eq!(e.key_end, None);

        let mut r = a.clone();
        r.key = Key::new(Proto::Udp, 18080);
        r.remote = Some(RemoteFilter {
            addr: Ipv4Addr::new(192, 0, 3, 77),
            prefix: 24,
        });
        let (set, e) = dnat_elem(&r);
        assert_eq!(set, DNAT_RH);
        assert_eq!(hex_of(&e.key), "c0000300 11000000 46a00000");
        assert_eq!(hex_of(&e.key_end.unwrap()), "c00003ff 11000000 46a00000");
        r.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let (_, e) = dnat_elem(&r);
        assert_eq!(e.key, e.key_end.unwrap());

        let mut p = a.clone();
        p.peer_port = Some(5000);
        p.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let e = snat_elem(&p, Some(Ipv4Addr::new(192, 0, 3, 1))).unwrap();
        assert_eq!(
            hex_of(&e.key),
            "c0a84d02 06000000 1f900000 c0000302 13880000"
        );
        assert_eq!(hex_of(&e.data.unwrap()), "c0000301 46a00000");
        assert!(snat_elem(&p, None).is_none());
        assert!(snat_elem(&a, Some(Ipv4Addr::new(192, 0, 3, 1))).is_none());

        assert_eq!(
            hex_of(&fwd_elem(&fwd_key(&a)).key),
            "c0a84d02 06000000 1f900000"
        );
    }

    #[test]
    fn pinhole_encodings() {
        let mut p = Pinhole {
            id: 1,
            remote: None,
            rport: 0,
            iaddr: "fd77::2".parse().unwrap(),
            iport: 8080,
            proto: 17,
            expires: 60_000,
            client: "fd77::2".parse().unwrap(),
            origin: crate::core::table::Origin::Pcp,
            nonce: None,
            peer: false,
        };
        let tail = "fd770000 00000000 00000000 00000002 11000000 1f900000";
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6, tail.to_string()));
        p.rport = 5000;
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6_P, format!("13880000 {tail}")));
        p.remote = Some("2001:db8::1".parse().unwrap());
        let remote = "20010db8 00000000 00000000 00000001";
        let (set, e) = pin_elem(&p);
        assert_eq!(
            (set, hex_of(&e.key)),
            (PIN6_HP, format!("{remote} 13880000 {tail}"))
        );
        p.rport = 0;
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6_H, format!("{remote} {tail}")));
        // the counter map and the lookup agree on the key
        assert_eq!(
            super::super::Nft::pinhole_key(&p),
            pin_map_key(PIN6_H, e.key.as_bytes())
        );
    }

    #[test]
    fn lifetimes_and_ranges() {
        assert_eq!(timeout_ms(Some(3_600_000), 0), Some(3_610_000));
        assert_eq!(timeout_ms(None, 0), None);
        assert_eq!(timeout_ms(Some(10), 5000), Some(11_000));
        assert_eq!(timeout_ms(Some(1500), 0), Some(12_000));
        assert_eq!(timeout_ms(Some(u64::MAX), 0), Some(TIMEOUT_MAX_S * 1000));
        let a = Ipv4Addr::new(192, 0, 3, 77);
        assert_eq!(prefix_range(a, 32), (a, a));
        assert_eq!(
            prefix_range(a, 0),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        );
        assert_eq!(
            prefix_range(a, 31),
            (Ipv4Addr::new(192, 0, 3, 76), Ipv4Addr::new(192, 0, 3, 77))
        );
        assert_eq!(prefix_range(a, 200), (a, a));
    }

    #[test]
    fn mapping_keys_from_dumped_dnat_keys() {
        let a = m(18080, 8080, 2, None);
        let (_, e) = dnat_elem(&a);
        assert_eq!(dnat_mapping_key(e.key.as_bytes()), Some(a.key));
        let mut r = a.clone();
        r.key = Key::new(Proto::Udp, 1);
        r.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let (_, e) = dnat_elem(&r);
        assert_eq!(dnat_mapping_key(e.key.as_bytes()), Some(r.key));
        assert_eq!(dnat_mapping_key(&[6, 0, 0, 0, 0x46]), None);
        assert_eq!(dnat_mapping_key(&[]), None);
        assert_eq!(dnat_mapping_key(&[1, 0, 0, 0, 0, 80, 0, 0]), None);
    }

    #[test]
    fn forward_refs_one_in_place_many_in_a_vec() {
        let (k1, k2, k3) = (
            Key::new(Proto::Tcp, 1),
            Key::new(Proto::Tcp, 2),
            Key::new(Proto::Udp, 2),
        );
        let mut r = FwdRefs::default();
        assert!(r.is_empty());
        r.push((k1, Some(5)));
        assert!(matches!(r, FwdRefs::One(_)));
        r.push((k2, None));
        r.push((k3, Some(7)));
        assert_eq!(r.as_slice(), &[(k1, Some(5)), (k2, None), (k3, Some(7))]);
        r.remove(k2);
        assert_eq!(r.as_slice(), &[(k1, Some(5)), (k3, Some(7))]);
        r.remove(k1);
        assert!(matches!(r, FwdRefs::One((k, Some(7))) if k == k3));
        r.remove(k1);
        assert_eq!(r.as_slice(), &[(k3, Some(7))]);
        r.remove(k3);
        assert!(r.is_empty() && matches!(r, FwdRefs::None));
    }

    #[test]
    fn forward_refcounts() {
        let k1 = Key::new(Proto::Tcp, 1);
        let k2 = Key::new(Proto::Tcp, 2);
        assert_eq!(fwd_state(&[]), None);
        assert_eq!(fwd_state(&[(k1, Some(5)), (k2, Some(9))]), Some(Some(9)));
        assert_eq!(fwd_state(&[(k1, Some(5)), (k2, None)]), Some(None));
    }
}
