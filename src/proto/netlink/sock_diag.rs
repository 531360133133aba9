//! sock_diag messages (linux/sock_diag.h, linux/inet_diag.h): the dump
//! of the host's TCP and UDP sockets in given states, from which the
//! daemon learns the ports that listen on the WAN side.
//!
//! Owns: `inet_diag_req_v2` and the part of `inet_diag_msg` read (family,
//! source port and address). Pure: no IO.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Msg, NLM_F_DUMP, NLM_F_REQUEST, put_attr, request};

/// linux/sock_diag.h: the request and reply type of inet_diag.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// linux/socket.h address families.
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;
/// netinet/in.h protocol numbers.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// include/net/tcp_states.h, as bits of the request's state mask: a
/// listening TCP socket, and an unconnected (bound) UDP socket.
pub const TCP_LISTEN: u32 = 1 << 10;
pub const TCP_CLOSE: u32 = 1 << 7;
/// Length of `struct inet_diag_req_v2`: family, protocol, extensions,
/// padding, state mask, and a socket id (48 bytes) that a dump ignores.
const REQ_V2_LEN: usize = 56;
/// `struct inet_diag_msg` up to the end of the source address: family,
/// state, timer, retransmits, source and destination port, then the
/// source address (16 bytes, IPv4 in the first 4).
const MSG_SRC_END: usize = 24;

/// linux/inet_diag.h: the request attribute carrying a filter program
/// (`struct inet_diag_bc_op` steps), and the two local-port comparisons
/// ours is made of. Every kernel with inet_diag has both; the single
/// equality step came only with Linux 4.16.
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_S_GE: u8 = 2;
const INET_DIAG_BC_S_LE: u8 = 3;

/// Dumps the sockets of `family` and `protocol` in the `states` (bits);
/// with `sport`, only those bound to that local port, which the kernel
/// filters itself.
pub fn get_sockets(seq: u32, family: u8, protocol: u8, states: u32, sport: Option<u16>) -> Vec<u8> {
    request(SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, |b| {
        let at = b.len();
        b.resize(at + REQ_V2_LEN, 0);
        b[at] = family;
        b[at + 1] = protocol;
        b[at + 4..at + 8].copy_from_slice(&states.to_ne_bytes());
        if let Some(port) = sport {
            put_attr(b, INET_DIAG_REQ_BYTECODE, &port_filter(port));
        }
    })
}

/// "sport >= port && sport <= port" as an inet_diag program. Each step is
/// `{code, yes, no}` (u8, u8, host-order u16) followed by a step whose
/// `no` holds the port in host order; `yes` and `no` are how many bytes
/// to jump ahead. The program accepts a socket when a jump lands exactly
/// on its end (16), and rejects it when one lands 4 bytes past it
/// (net/ipv4/inet_diag.c, `inet_diag_bc_run`).
fn port_filter(port: u16) -> [u8; 16] {
    let step = |code: u8, yes: u8, no: u16| {
        let n = no.to_ne_bytes();
        [code, yes, n[0], n[1]]
    };
    let operand = {
        let p = port.to_ne_bytes();
        [0, 0, p[0], p[1]]
    };
    let mut f = [0u8; 16];
    f[0..4].copy_from_slice(&step(INET_DIAG_BC_S_GE, 8, 20));
    f[4..8].copy_from_slice(&operand);
    f[8..12].copy_from_slice(&step(INET_DIAG_BC_S_LE, 8, 12));
    f[12..16].copy_from_slice(&operand);
    f
}

/// One socket of a dump (in one of the states asked for): its local
/// address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    pub src: IpAddr,
    pub sport: u16,
}

/// An inet_diag_msg of family AF_INET or AF_INET6; None for any other
/// message.
pub fn parse_socket(m: &Msg<'_>) -> Option<Socket> {
    if m.ty != SOCK_DIAG_BY_FAMILY {
        return None;
    }
    let p = m.payload.get(..MSG_SRC_END)?;
    let src: [u8; 16] = p[8..24].try_into().ok()?;
    let src = match p[0] {
        AF_INET => IpAddr::V4(Ipv4Addr::new(src[0], src[1], src[2], src[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(src)),
        _ => return None,
    };
    Some(Socket {
        src,
        sport: u16::from_be_bytes([p[4], p[5]]),
    })
}

#[cfg(test)]
mod tests {
    use super::super::vectors::{Family, P, bytes, capture};
    use super::super::{NLMSG_DONE, messages};
    use super::*;

    /// Linux 6.18's answer to a dump of listening IPv4 TCP sockets in a
    /// namespace with listeners on 127.0.0.1:53 and 0.0.0.0:5000: two
    /// inet_diag_msg with their attributes (shutdown, mark, cgroup,
    /// socket options), then NLMSG_DONE in a datagram of its own.
    const TCP4: [&str; 2] = [
        "7c000000 14000200 02000000 a9430000 020a0000 00350000 7f000001 00000000 \
         00000000 00000000 00000000 00000000 00000000 00000000 00000000 56000000 \
         00000000 00000000 00000000 80000000 00000000 5e440100 05000800 00000000 \
         08000f00 00000000 0c001500 01000000 00000000 06001600 52000000 \
         7c000000 14000200 02000000 a9430000 020a0000 13880000 00000000 00000000 \
         00000000 00000000 00000000 00000000 00000000 00000000 00000000 57000000 \
         00000000 00000000 00000000 80000000 00000000 5d440100 05000800 00000000 \
         08000f00 00000000 0c001500 01000000 00000000 06001600 52000000",
        "14000000 03000200 02000000 a9430000 00000000",
    ];

    /// The same for unconnected IPv6 UDP sockets: one bound to [::]:5351.
    const UDP6: &str = "84000000 14000200 02000000 a9430000 0a070000 14e70000 00000000 00000000 \
         00000000 00000000 00000000 00000000 00000000 00000000 00000000 58000000 \
         00000000 00000000 00000000 00000000 00000000 5f440100 05000800 00000000 \
         05000b00 00000000 08000f00 00000000 0c001500 01000000 00000000 06001600 \
         10000000";

    #[test]
    fn real_socket_dumps() {
        let d = capture(Family::SockDiag, TCP4[0]);
        let got: Vec<_> = messages(&d).filter_map(|m| parse_socket(&m)).collect();
        assert_eq!(
            got,
            vec![
                Socket {
                    src: "127.0.0.1".parse().unwrap(),
                    sport: 53
                },
                Socket {
                    src: "0.0.0.0".parse().unwrap(),
                    sport: 5000
                },
            ]
        );
        let done = capture(Family::SockDiag, TCP4[1]);
        let m = messages(&done).next().unwrap();
        assert_eq!((m.ty, parse_socket(&m)), (NLMSG_DONE, None));
        let d = capture(Family::SockDiag, UDP6);
        let got: Vec<_> = messages(&d).filter_map(|m| parse_socket(&m)).collect();
        assert_eq!(
            got,
            vec![Socket {
                src: "::".parse().unwrap(),
                sport: 5351
            }]
        );
        for cut in 0..d.len() {
            let n = messages(&d[..cut]).filter_map(|m| parse_socket(&m)).count();
            assert!(n <= 1);
        }
    }

    #[test]
    fn short_or_foreign_messages_are_skipped() {
        let msg = |family: u8, body_len: usize| {
            let mut m = bytes(&[
                P::U32(16 + body_len as u32),
                P::U16(SOCK_DIAG_BY_FAMILY),
                P::U16(2),
                P::U32(1),
                P::U32(0),
            ]);
            let mut body = vec![0u8; body_len];
            if let Some(b) = body.first_mut() {
                *b = family;
            }
            m.extend(body);
            m
        };
        let parse = |d: &[u8]| messages(d).next().and_then(|m| parse_socket(&m));
        assert!(parse(&msg(AF_INET, MSG_SRC_END)).is_some());
        assert_eq!(parse(&msg(AF_INET, MSG_SRC_END - 1)), None);
        assert_eq!(parse(&msg(1, 72)), None);
    }

    #[test]
    fn the_dump_request() {
        let want = bytes(&[
            P::U32(72),
            P::U16(SOCK_DIAG_BY_FAMILY),
            P::U16(NLM_F_REQUEST | NLM_F_DUMP),
            P::U32(2),
            P::U32(0),
            P::B(&[AF_INET6, IPPROTO_UDP, 0, 0]),
            P::U32(TCP_CLOSE),
            P::B(&[0; 48]),
        ]);
        assert_eq!(get_sockets(2, AF_INET6, IPPROTO_UDP, TCP_CLOSE, None), want);
    }

    /// `ss -A tcp state listening 'sport >= :5351 and sport <= :5351'`
    /// sends this program (strace), in host order.
    #[test]
    fn the_filtered_dump_request() {
        let want = bytes(&[
            P::U32(92),
            P::U16(SOCK_DIAG_BY_FAMILY),
            P::U16(NLM_F_REQUEST | NLM_F_DUMP),
            P::U32(3),
            P::U32(0),
            P::B(&[AF_INET, IPPROTO_TCP, 0, 0]),
            P::U32(TCP_LISTEN),
            P::B(&[0; 48]),
            P::U16(20),
            P::U16(INET_DIAG_REQ_BYTECODE),
            P::B(&[INET_DIAG_BC_S_GE, 8]),
            P::U16(20),
            P::B(&[0, 0]),
            P::U16(5351),
            P::B(&[INET_DIAG_BC_S_LE, 8]),
            P::U16(12),
            P::B(&[0, 0]),
            P::U16(5351),
        ]);
        assert_eq!(
            get_sockets(3, AF_INET, IPPROTO_TCP, TCP_LISTEN, Some(5351)),
            want
        );
    }
}
