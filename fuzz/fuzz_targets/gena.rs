//! `proto::gena::parse_callback` and `parse_timeout` on arbitrary header
//! values, and the NOTIFY request built for each parsed callback.
//!
//! Checks besides "no panic": at most `MAX_URLS` callbacks, each to a
//! non-zero port with a path that starts with `/`, is at most 256 bytes
//! and holds no space or control character, so the NOTIFY request line
//! cannot be split or extended by a subscriber; an IPv6 callback carries
//! no zone and its HOST line is the bracketed literal.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::gena::{MAX_URLS, notify_request, parse_callback, parse_timeout, parse_url};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let cbs = parse_callback(s);
    assert!(cbs.len() <= MAX_URLS);
    for cb in &cbs {
        assert_ne!(cb.addr.port(), 0);
        assert!(cb.path.starts_with('/') && cb.path.len() <= 256);
        assert!(
            !cb.path.bytes().any(|b| b <= b' ' || b == 0x7f),
            "{:?}",
            cb.path
        );
        let req = notify_request(cb, "uuid:1", 0, "");
        let line_end = req
            .windows(2)
            .position(|w| w == b"\r\n")
            .unwrap_or(req.len());
        assert_eq!(&req[..7], b"NOTIFY ");
        assert_eq!(&req[line_end - 9..line_end], b" HTTP/1.1");
        if let std::net::SocketAddr::V6(a) = cb.addr {
            assert_eq!(a.scope_id(), 0);
            let host = format!("\r\nHOST: [{}]:{}\r\n", a.ip(), a.port());
            assert!(req.windows(host.len()).any(|w| w == host.as_bytes()));
        }
    }
    if let Some(cb) = parse_url(s) {
        assert_ne!(cb.addr.port(), 0);
    }
    let _ = parse_timeout(Some(s));
});
