//! `proto::ssdp::parse` on arbitrary datagrams and `answer` for the search
//! target it found, with a fixed IGD:2 (and IGD:1) identity; then the
//! same datagram through `core::ssdp::Ssdp` from a source of either
//! family, and the replies it schedules.
//!
//! Input: one source byte, then the datagram. Source bits 0–1 pick the
//! family and kind: 0 an IPv4 LAN host (192.168.1.x), 1 an IPv6
//! link-local host (fe80::x, scope 3), 2 a host of the LAN's ULA prefix
//! (fd77::x), 3 a host of no served prefix (2001:db8:9::x); bit 2 gives
//! the LAN no IPv6 address; bits 3–7 are the host's last byte.
//!
//! Checks besides "no panic": a parsed search has a non-empty ST of at most
//! 256 bytes and an MX of at most `MAX_MX`; an answer has at most one row
//! per announcement, and (but for `ssdp:all`) every row repeats the ST
//! asked for; no row carries CR or LF (they become header lines). Through
//! the core: at most `MAX_ROWS` replies, each to the source on LAN 0, one
//! header per line and the blank line last; LOCATION is the LAN's IPv4
//! address for an IPv4 source and the LAN's ULA in brackets for an IPv6
//! one; a foreign source, or an IPv6 one on a LAN without an IPv6
//! address, gets none.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use libfuzzer_sys::fuzz_target;
use rupnpd::config::Config;
use rupnpd::core::device::Device;
use rupnpd::core::lan::{Lan, Lans};
use rupnpd::core::ssdp::{MAX_ROWS, Ssdp};
use rupnpd::proto::ssdp::{Identity, MAX_MX, answer, parse, rows};

const UUID: &str = "3d3cec3a-8cf0-11e0-98ee-001a6bd2d070";

fn lans(v6: bool) -> Lans {
    Lans::new(vec![Lan {
        dev: "br-lan".into(),
        addr: Ipv4Addr::new(192, 168, 1, 1),
        nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        nets6: if v6 {
            vec![(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1), 64)]
        } else {
            Vec::new()
        },
        http_port: 5000,
    }])
}

fn source(b: u8) -> SocketAddr {
    let host = u16::from(b >> 3) + 2;
    match b & 3 {
        0 => SocketAddr::from((Ipv4Addr::new(192, 168, 1, host as u8), 50000)),
        1 => SocketAddr::V6(SocketAddrV6::new(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, host),
            50000,
            0,
            3,
        )),
        2 => SocketAddr::from((Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, host), 50000)),
        _ => SocketAddr::from((Ipv6Addr::new(0x2001, 0xdb8, 9, 0, 0, 0, 0, host), 50000)),
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&src, data)) = input.split_first() else {
        return;
    };
    let Some(s) = parse(data) else {
        return;
    };
    assert!(!s.st.is_empty() && s.st.len() <= 256);
    assert!(s.mx.is_none_or(|mx| mx <= MAX_MX));
    for version in [1, 2] {
        let id = Identity {
            uuid: UUID.into(),
            version,
            pinholes: true,
        };
        let all = rows(&id).len();
        let got = answer(&id, &s.st);
        assert!(got.len() <= all);
        for (st, usn) in &got {
            if s.st != "ssdp:all" {
                assert_eq!(st, &s.st);
            }
            assert!(!st.contains(['\r', '\n']) && !usn.contains(['\r', '\n']));
        }
    }

    let with_v6 = src & 4 == 0;
    let lans = lans(with_v6);
    let device = Device::new(&Config::default(), UUID.into(), 7, "fuzz".into());
    let from = source(src);
    let mut ssdp = Ssdp::new(true, 0, 1);
    ssdp.on_datagram(&device, &lans, 0, from, data, 0);
    let replies = ssdp.due_replies(&device, &lans, 6_000, "Thu, 01 Jan 1970 00:00:00 GMT");
    assert!(replies.len() <= MAX_ROWS);
    let answered = match from.ip() {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => with_v6 && (a.segments()[0] == 0xfe80 || a.segments()[0] == 0xfd77),
    };
    if !answered {
        assert!(replies.is_empty(), "{from}: {replies:?}");
    }
    let location = match from {
        SocketAddr::V4(_) => "http://192.168.1.1:5000/rootDesc.xml",
        SocketAddr::V6(_) => "http://[fd77::1]:5000/rootDesc.xml",
    };
    for (lan, to, msg) in &replies {
        assert_eq!((*lan, *to), (0, from));
        assert!(msg.starts_with("HTTP/1.1 200 OK\r\n") && msg.ends_with("\r\n\r\n"), "{msg:?}");
        let head = &msg[..msg.len() - 4];
        assert!(
            head.split("\r\n").all(|l| !l.contains(['\r', '\n'])),
            "{msg:?}"
        );
        assert_eq!(head.split("\r\n").count(), 10, "{msg:?}");
        assert!(msg.contains(&format!("\r\nLOCATION: {location}\r\n")), "{msg:?}");
    }
});
