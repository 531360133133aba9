//! The LAN interfaces served: their addresses and subnets, which decide
//! who may talk to the daemon at all.
//!
//! Owns: [`Lan`], [`Lans`] and the rule that only a host on a served
//! subnet is answered (SSDP amplification, RFC 6886 §3.1 for NAT-PMP, the
//! HTTP server's 403). Pure data: the daemon reads the addresses, and its
//! front ends find their LAN by device and address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::prefix_contains;

/// One LAN interface served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lan {
    pub dev: String,
    /// The address the description, SSDP LOCATION and NAT-PMP use.
    pub addr: Ipv4Addr,
    pub nets: Vec<(Ipv4Addr, u8)>,
    /// Global and unique-local IPv6 prefixes (HTTP for pinhole control
    /// points; link-local ones need a scope and are left out).
    pub nets6: Vec<(Ipv6Addr, u8)>,
    /// The HTTP port actually bound (the configured one, or the one the
    /// kernel picked for port 0).
    pub http_port: u16,
}

/// The LANs served, in configuration order (the first one's address
/// names the device in its description).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lans(Vec<Lan>);

/// True if `addr` lies in `net/prefix`.
pub fn prefix6_contains(net: Ipv6Addr, prefix: u8, addr: Ipv6Addr) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = 128 - u32::from(prefix.min(128));
    u128::from(net).checked_shr(shift) == u128::from(addr).checked_shr(shift)
}

/// fe80::/10.
pub fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// fc00::/7 (RFC 4193).
pub fn is_unique_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xfe00) == 0xfc00
}

/// Whether a LAN's IPv6 address is served: global and unique-local ones
/// are; link-local ones need a scope, and loopback is no LAN.
pub fn serves_ipv6(a: &Ipv6Addr) -> bool {
    !is_link_local(a) && !a.is_loopback() && !a.is_multicast() && !a.is_unspecified()
}

impl Lan {
    /// The IPv6 address that names this LAN to a host at `peer` (SSDP
    /// LOCATION, the description's URLs): ours in the peer's own prefix,
    /// else the first unique-local one (stable when the ISP renumbers the
    /// global prefix), else the first global one. Never a link-local
    /// one: its URL would need a zone naming the *client's* interface
    /// (RFC 6874), which only the client knows. `None` without any.
    pub fn addr6_for(&self, peer: Option<Ipv6Addr>) -> Option<Ipv6Addr> {
        let own = peer.and_then(|p| {
            self.nets6
                .iter()
                .find(|(a, n)| prefix6_contains(*a, *n, p))
                .map(|(a, _)| *a)
        });
        own.or_else(|| self.nets6.iter().map(|(a, _)| *a).find(is_unique_local))
            .or_else(|| self.nets6.first().map(|(a, _)| *a))
    }

    /// Whether a datagram from IPv6 `src` that arrived on this LAN's
    /// device is answered: a link-local source is on this link (the
    /// socket is bound to the device, and routers never forward
    /// link-local sources), any other must be on a served prefix.
    pub fn accepts6(&self, src: &Ipv6Addr) -> bool {
        is_link_local(src)
            || self
                .nets6
                .iter()
                .any(|(n, p)| prefix6_contains(*n, *p, *src))
    }
}

impl Lans {
    pub const fn new(lans: Vec<Lan>) -> Lans {
        Lans(lans)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<&Lan> {
        self.0.get(i)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut Lan> {
        self.0.get_mut(i)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Lan> {
        self.0.iter()
    }

    /// The same devices with the same addresses, in the same order,
    /// whatever HTTP ports were bound on them.
    pub fn same_interfaces(&self, other: &Lans) -> bool {
        let same = |a: &Lan, b: &Lan| {
            a.dev == b.dev && a.addr == b.addr && a.nets == b.nets && a.nets6 == b.nets6
        };
        self.0.len() == other.0.len() && self.0.iter().zip(&other.0).all(|(a, b)| same(a, b))
    }

    /// The LAN whose subnets hold `a`.
    pub fn of(&self, a: IpAddr) -> Option<usize> {
        self.0.iter().position(|l| match a {
            IpAddr::V4(a) => l.nets.iter().any(|(n, p)| prefix_contains(*n, *p, a)),
            IpAddr::V6(a) => l.nets6.iter().any(|(n, p)| prefix6_contains(*n, *p, a)),
        })
    }

    /// Whether a datagram from `src` that arrived on LAN `lan` is
    /// answered: only from a host of that LAN's subnets (for IPv6, see
    /// [`Lan::accepts6`]).
    pub fn accepts(&self, lan: usize, src: IpAddr) -> bool {
        match src {
            IpAddr::V4(_) => self.of(src) == Some(lan),
            IpAddr::V6(a) => self.get(lan).is_some_and(|l| l.accepts6(&a)),
        }
    }

    /// True if `a` is on a served IPv4 subnet.
    pub fn holds(&self, a: Ipv4Addr) -> bool {
        self.of(IpAddr::V4(a)).is_some()
    }

    /// True if `a` is on a served IPv6 prefix.
    pub fn holds6(&self, a: Ipv6Addr) -> bool {
        self.of(IpAddr::V6(a)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lans() -> Lans {
        Lans::new(vec![
            Lan {
                dev: "br-lan".into(),
                addr: Ipv4Addr::new(192, 168, 1, 1),
                nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
                nets6: vec![("fd00::".parse().unwrap(), 64)],
                http_port: 5000,
            },
            Lan {
                dev: "br-guest".into(),
                addr: Ipv4Addr::new(10, 0, 0, 1),
                nets: vec![(Ipv4Addr::new(10, 0, 0, 0), 8)],
                nets6: vec![],
                http_port: 5000,
            },
        ])
    }

    #[test]
    fn a_host_belongs_to_the_lan_of_its_subnet() {
        let l = lans();
        assert_eq!(l.of("192.168.1.77".parse().unwrap()), Some(0));
        assert_eq!(l.of("10.9.9.9".parse().unwrap()), Some(1));
        assert_eq!(l.of("fd00::9".parse().unwrap()), Some(0));
        assert_eq!(l.of("fd01::9".parse().unwrap()), None);
        assert_eq!(l.of("192.0.3.2".parse().unwrap()), None);
        // a datagram is answered only on the LAN it belongs to
        assert!(l.accepts(1, "10.1.2.3".parse().unwrap()));
        assert!(!l.accepts(0, "10.1.2.3".parse().unwrap()));
        // over IPv6: the LAN's prefixes, and link-local sources (they can
        // only come from the link the socket is bound to)
        assert!(l.accepts(0, "fd00::9".parse().unwrap()));
        assert!(l.accepts(0, "fe80::9".parse().unwrap()));
        assert!(!l.accepts(0, "2001:db8::9".parse().unwrap()));
        assert!(!l.accepts(1, "fd00::9".parse().unwrap()));
    }

    /// LOCATION names our address in the searcher's prefix, else the ULA
    /// (stable across renumbering), else a global one; never link-local.
    #[test]
    fn the_ipv6_address_that_names_a_lan() {
        let mut lan = lans().get(0).unwrap().clone();
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        lan.nets6 = vec![(a("2001:db8:1::1"), 64), (a("fd77::1"), 64)];
        assert_eq!(
            lan.addr6_for(Some(a("2001:db8:1::9"))),
            Some(a("2001:db8:1::1"))
        );
        assert_eq!(lan.addr6_for(Some(a("fd77::9"))), Some(a("fd77::1")));
        assert_eq!(lan.addr6_for(Some(a("fe80::9"))), Some(a("fd77::1")));
        assert_eq!(lan.addr6_for(None), Some(a("fd77::1")));
        lan.nets6.remove(1);
        assert_eq!(lan.addr6_for(Some(a("fe80::9"))), Some(a("2001:db8:1::1")));
        lan.nets6.clear();
        assert_eq!(lan.addr6_for(None), None);
    }

    #[test]
    fn the_same_interfaces_whatever_their_http_ports() {
        let a = lans();
        let mut b = lans();
        b.get_mut(1).unwrap().http_port = 40000;
        assert!(a.same_interfaces(&b));
        b.get_mut(1).unwrap().addr = Ipv4Addr::new(10, 0, 0, 2);
        assert!(!a.same_interfaces(&b));
        assert!(!a.same_interfaces(&Lans::new(vec![])));
    }

    #[test]
    fn ipv6_prefixes() {
        let n: Ipv6Addr = "fd77::".parse().unwrap();
        assert!(prefix6_contains(n, 64, "fd77::2".parse().unwrap()));
        assert!(!prefix6_contains(n, 64, "fd78::2".parse().unwrap()));
        assert!(prefix6_contains(n, 0, "2001:db8::1".parse().unwrap()));
        assert!(prefix6_contains(n, 128, "fd77::".parse().unwrap()));
        assert!(serves_ipv6(&"fd77::1".parse().unwrap()));
        assert!(serves_ipv6(&"2001:db8::1".parse().unwrap()));
        assert!(!serves_ipv6(&"fe80::1".parse().unwrap()));
        assert!(!serves_ipv6(&"::1".parse().unwrap()));
    }
}
