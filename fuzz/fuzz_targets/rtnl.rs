//! `proto::netlink::route::parse_neighbour` (the rtnetlink neighbour
//! dump `sys::netif::neighbours` reads) on arbitrary datagrams, and the
//! dump request it sends.
//!
//! Checks besides "no panic": only RTM_NEWNEIGH messages yield an entry,
//! at most one per message; its address and link-layer address are bytes
//! of the message; the request, numbered from the input, reads back as
//! one message of that number.

#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::netlink::messages;
use rupnpd::proto::netlink::route::{RTM_NEWNEIGH, get_neighbours, parse_neighbour};

fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let mut count = 0usize;
    for m in messages(data) {
        count += 1;
        let Some(n) = parse_neighbour(&m) else {
            continue;
        };
        assert_eq!(m.ty, RTM_NEWNEIGH);
        let addr = match n.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        assert!(holds(m.payload, &addr));
        assert!(holds(m.payload, &n.lladdr));
    }
    assert!(count <= data.len() / 16);
    let seq = data
        .get(..4)
        .map_or(0, |b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let req = get_neighbours(seq);
    let back: Vec<_> = messages(&req).collect();
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].seq, back[0].payload.len()), (seq, 12));
});
