//! rtnetlink messages (linux/rtnetlink.h, linux/neighbour.h) as the
//! daemon uses them: the dump of the kernel's neighbour tables (ARP and
//! NDP), which ties a client's address to its link-layer address.
//!
//! The address and link watch (`sys::netif::AddrWatch`) only counts
//! notifications and re-reads, so no other rtnetlink message is parsed.
//! Pure: no IO.

use std::net::IpAddr;

use super::{Msg, NLM_F_DUMP, NLM_F_REQUEST, attrs, request};

// linux/rtnetlink.h
pub const RTM_NEWNEIGH: u16 = 28;
const RTM_GETNEIGH: u16 = 30;
/// Length of `struct ndmsg`: family, padding, ifindex, state, flags, type.
const NDMSG_LEN: usize = 12;
// linux/neighbour.h: enum NDA_*
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;

/// Dumps the neighbour tables of every family (an ndmsg of AF_UNSPEC).
pub fn get_neighbours(seq: u32) -> Vec<u8> {
    request(RTM_GETNEIGH, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
        b.extend_from_slice(&[0; NDMSG_LEN])
    })
}

/// One neighbour entry: a network address and its Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    pub lladdr: [u8; 6],
}

/// An RTM_NEWNEIGH that carries an IPv4 or IPv6 address and a 6-byte
/// link-layer address; None for any other message or entry.
pub fn parse_neighbour(m: &Msg<'_>) -> Option<Neighbour> {
    if m.ty != RTM_NEWNEIGH {
        return None;
    }
    let mut addr = None;
    let mut lladdr = None;
    for (t, v) in attrs(m.payload.get(NDMSG_LEN..)?) {
        match t {
            NDA_DST => {
                addr = match v.len() {
                    4 => <[u8; 4]>::try_from(v).ok().map(IpAddr::from),
                    16 => <[u8; 16]>::try_from(v).ok().map(IpAddr::from),
                    _ => addr,
                }
            }
            NDA_LLADDR => lladdr = <[u8; 6]>::try_from(v).ok().or(lladdr),
            _ => {}
        }
    }
    Some(Neighbour {
        addr: addr?,
        lladdr: lladdr?,
    })
}

#[cfg(test)]
mod tests {
    use super::super::vectors::{Family, P, bytes, capture};
    use super::super::{NLMSG_DONE, messages};
    use super::*;

    /// `ip neigh dump` in a namespace holding `192.168.77.2` and
    /// `fd77::2` at 02:00:00:00:77:02 (permanent) on a veth, as Linux 6.18
    /// answered: the two entries, two multicast entries (ff02::16 at
    /// 33:33:00:00:00:16, NOARP) and NLMSG_DONE, in one datagram.
    const DUMP: &str = "4c000000 1c000200 01000000 a9430000 02000000 03000000 80000001 \
         08000100 c0a84d02 0a000200 02000000 77020000 08000400 00000000 14000300 \
         02000000 02000000 02000000 00000000 \
         58000000 1c000200 01000000 a9430000 0a000000 03000000 80000001 14000100 \
         fd770000 00000000 00000000 00000002 0a000200 02000000 77020000 08000400 \
         00000000 14000300 02000000 02000000 02000000 00000000 \
         58000000 1c000200 01000000 a9430000 0a000000 02000000 40000005 14000100 \
         ff020000 00000000 00000000 00000016 0a000200 33330000 00160000 08000400 \
         00000000 14000300 79170000 09000000 09000000 00000000 \
         58000000 1c000200 01000000 a9430000 0a000000 03000000 40000005 14000100 \
         ff020000 00000000 00000000 00000016 0a000200 33330000 00160000 08000400 \
         00000000 14000300 79170000 09000000 09000000 00000000 \
         14000000 03000200 01000000 a9430000 00000000";

    #[test]
    fn a_real_neighbour_dump() {
        let d = capture(Family::Route, DUMP);
        let all: Vec<_> = messages(&d).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4].ty, NLMSG_DONE);
        let got: Vec<_> = all.iter().filter_map(parse_neighbour).collect();
        let mac = [2, 0, 0, 0, 0x77, 2];
        let mcast = [0x33, 0x33, 0, 0, 0, 0x16];
        let ff02: IpAddr = "ff02::16".parse().unwrap();
        assert_eq!(
            got,
            vec![
                Neighbour {
                    addr: "192.168.77.2".parse().unwrap(),
                    lladdr: mac
                },
                Neighbour {
                    addr: "fd77::2".parse().unwrap(),
                    lladdr: mac
                },
                Neighbour {
                    addr: ff02,
                    lladdr: mcast
                },
                Neighbour {
                    addr: ff02,
                    lladdr: mcast
                },
            ]
        );
        // truncated input: no panic, never more entries
        for cut in 0..d.len() {
            let n = messages(&d[..cut])
                .filter_map(|m| parse_neighbour(&m))
                .count();
            assert!(n <= 4);
        }
    }

    #[test]
    fn entries_without_both_addresses_are_skipped() {
        let msg = |attrs: &[P<'_>]| {
            let mut body = bytes(&[P::B(&[2, 0, 0, 0]), P::U32(3), P::U16(4), P::B(&[0, 1])]);
            body.extend(bytes(attrs));
            let mut m = bytes(&[
                P::U32(16 + body.len() as u32),
                P::U16(RTM_NEWNEIGH),
                P::U16(2),
                P::U32(1),
                P::U32(0),
            ]);
            m.extend(body);
            m
        };
        let dst = [P::U16(8), P::U16(NDA_DST), P::B(&[10, 0, 0, 1])];
        let ll = [
            P::U16(10),
            P::U16(NDA_LLADDR),
            P::B(&[1, 2, 3, 4, 5, 6, 0, 0]),
        ];
        let parse = |d: &[u8]| messages(d).next().and_then(|m| parse_neighbour(&m));
        assert_eq!(
            parse(&msg(&[dst, ll].concat())),
            Some(Neighbour {
                addr: "10.0.0.1".parse().unwrap(),
                lladdr: [1, 2, 3, 4, 5, 6]
            })
        );
        assert_eq!(parse(&msg(&dst)), None);
        assert_eq!(parse(&msg(&ll)), None);
        // an 8-byte link-layer address (not Ethernet), a 5-byte address
        let long = [P::U16(12), P::U16(NDA_LLADDR), P::B(&[1; 8])];
        assert_eq!(parse(&msg(&[&dst[..], &long[..]].concat())), None);
        let odd = [P::U16(9), P::U16(NDA_DST), P::B(&[1, 2, 3, 4, 5, 0, 0, 0])];
        assert_eq!(parse(&msg(&[&odd[..], &ll[..]].concat())), None);
        // a message too short for its ndmsg
        let mut short = msg(&[]);
        short.truncate(24);
        short[..4].copy_from_slice(&24u32.to_ne_bytes());
        assert_eq!(parse(&short), None);
    }

    #[test]
    fn the_dump_request() {
        let want = bytes(&[
            P::U32(28),
            P::U16(RTM_GETNEIGH),
            P::U16(NLM_F_REQUEST | NLM_F_DUMP),
            P::U32(1),
            P::U32(0),
            P::B(&[0; 12]),
        ]);
        assert_eq!(get_neighbours(1), want);
    }
}
