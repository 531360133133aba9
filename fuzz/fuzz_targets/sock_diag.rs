//! `proto::netlink::sock_diag::parse_socket` (the inet_diag dump
//! `sys::netif::Listeners` reads) on arbitrary datagrams, and the dump
//! request it sends.
//!
//! Checks besides "no panic": only SOCK_DIAG_BY_FAMILY messages of family
//! AF_INET or AF_INET6 yield a socket; its port and address are the
//! message's bytes at their places in inet_diag_msg; the request,
//! built from the input's first bytes, reads back with the family,
//! protocol and states it was given.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::netlink::messages;
use rupnpd::proto::netlink::sock_diag::{
    AF_INET, AF_INET6, SOCK_DIAG_BY_FAMILY, get_sockets, parse_socket,
};

fuzz_target!(|data: &[u8]| {
    let mut count = 0usize;
    for m in messages(data) {
        count += 1;
        let Some(s) = parse_socket(&m) else {
            continue;
        };
        assert_eq!(m.ty, SOCK_DIAG_BY_FAMILY);
        let p = m.payload;
        assert_eq!(s.sport, u16::from_be_bytes([p[4], p[5]]));
        match s.src {
            IpAddr::V4(a) => assert_eq!((p[0], &a.octets()[..]), (AF_INET, &p[8..12])),
            IpAddr::V6(a) => assert_eq!((p[0], &a.octets()[..]), (AF_INET6, &p[8..24])),
        }
    }
    assert!(count <= data.len() / 16);
    let (family, protocol) = (data.first().copied(), data.get(1).copied());
    let states = data
        .get(2..6)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let sport = data
        .get(6..8)
        .map(|b| u16::from_ne_bytes([b[0], b[1]]));
    let req = get_sockets(7, family.unwrap_or(0), protocol.unwrap_or(0), states, sport);
    let back: Vec<_> = messages(&req).collect();
    assert_eq!(back.len(), 1);
    let p = back[0].payload;
    // the request, then the 20-byte filter attribute when a port is given
    assert_eq!(p.len(), if sport.is_some() { 76 } else { 56 });
    if let Some(port) = sport {
        assert_eq!(&p[66..68], &port.to_ne_bytes());
        assert_eq!(&p[74..76], &port.to_ne_bytes());
    }
    assert_eq!((p[0], p[1]), (family.unwrap_or(0), protocol.unwrap_or(0)));
    assert_eq!(u32::from_ne_bytes([p[4], p[5], p[6], p[7]]), states);
});
