//! `proto::ssdp::parse` on arbitrary datagrams, and `answer` for the
//! search target it found, with a fixed IGD:2 (and IGD:1) identity.
//!
//! Checks besides "no panic": a parsed search has a non-empty ST of at most
//! 256 bytes and an MX of at most `MAX_MX`; an answer has at most one row
//! per announcement, and (but for `ssdp:all`) every row repeats the ST
//! asked for; no row carries CR or LF (they become header lines).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::ssdp::{Identity, MAX_MX, answer, parse, rows};

fuzz_target!(|data: &[u8]| {
    let Some(s) = parse(data) else {
        return;
    };
    assert!(!s.st.is_empty() && s.st.len() <= 256);
    assert!(s.mx.is_none_or(|mx| mx <= MAX_MX));
    for version in [1, 2] {
        let id = Identity {
            uuid: "3d3cec3a-8cf0-11e0-98ee-001a6bd2d070".into(),
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
});
