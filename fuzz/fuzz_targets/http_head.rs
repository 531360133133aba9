//! `proto::http::parse_head` on arbitrary bytes, then `host_matches` on the
//! Host header it found.
//!
//! Checks besides "no panic": a complete head lies inside the buffer and
//! within `MAX_HEAD`, its body length within `MAX_BODY`; "read more" is only
//! ever asked while the buffer is within `MAX_HEAD`; a Host header that
//! matches our address names it literally (IPv4 with or without our port,
//! IPv6 in brackets without a zone, link-local or unique-local).

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::http::{MAX_BODY, MAX_HEAD, host_matches, parse_head};

const LAN4: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1));
const LAN6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1));
const ULA: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1));
const PORT: u16 = 5000;

fuzz_target!(|data: &[u8]| {
    match parse_head(data) {
        Ok(Some((req, n))) => {
            assert!(n <= data.len() && n <= MAX_HEAD, "head length {n}");
            assert!(req.content_length <= MAX_BODY);
            if let Some(host) = req.host.as_deref() {
                // Only the literal address can match, never a name (the
                // DNS rebinding defence).
                if host_matches(host, LAN4, PORT) {
                    let port = host.strip_prefix("192.168.77.1");
                    assert!(
                        port.is_some_and(|p| p.is_empty()
                            || p.strip_prefix(':')
                                .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))),
                        "{host:?}"
                    );
                }
                for a in [LAN6, ULA] {
                    if host_matches(host, a, PORT) {
                        assert!(host.starts_with('[') && !host.contains('%'), "{host:?}");
                    }
                }
            }
        }
        Ok(None) => assert!(data.len() <= MAX_HEAD, "asked for more past MAX_HEAD"),
        Err(e) => {
            let _ = e.status();
        }
    }
    // host_matches on the raw text too: it sees any header value a client sends.
    if let Ok(s) = std::str::from_utf8(data)
        && s.len() <= 256
    {
        let _ = host_matches(s, LAN4, PORT);
        let _ = host_matches(s, LAN6, PORT);
        if host_matches(s, ULA, PORT) {
            assert!(s.starts_with("[f") || s.starts_with("[F"), "{s:?}");
        }
        if host_matches(s, LAN4, PORT) {
            assert!(!s.starts_with('['), "{s:?}");
        }
    }
});
