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

/// Whether a LAN's IPv6 address is served: global and unique-local ones
/// are; link-local ones need a scope, and loopback is no LAN.
pub fn serves_ipv6(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) != 0xfe80 && !a.is_loopback()
}

impl Lans {
    pub fn new(lans: Vec<Lan>) -> Lans {
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
    /// answered: only from a host of that LAN's subnets.
    pub fn accepts(&self, lan: usize, src: Ipv4Addr) -> bool {
        self.of(IpAddr::V4(src)) == Some(lan)
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
        assert!(l.accepts(1, Ipv4Addr::new(10, 1, 2, 3)));
        assert!(!l.accepts(0, Ipv4Addr::new(10, 1, 2, 3)));
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
