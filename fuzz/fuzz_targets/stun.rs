//! `proto::stun::Message::parse` on arbitrary datagrams, and `emit` of
//! what it returns.
//!
//! Checks besides "no panic" (under overflow checks): a parsed message
//! came from a datagram of 20–`MAX_MESSAGE` bytes whose length field
//! agrees with it; text attributes are at most `MAX_TEXT` bytes, lists at
//! most `MAX_UNKNOWN` entries; an ERROR-CODE is 300–699; what parses
//! emits to a multiple of 4 bytes with a correct length field that parses
//! back to the same message, with and without a FINGERPRINT.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::stun::{HEADER_LEN, MAX_MESSAGE, MAX_TEXT, MAX_UNKNOWN, Message};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    assert!(data.len() >= HEADER_LEN && data.len() <= MAX_MESSAGE);
    assert_eq!(
        usize::from(u16::from_be_bytes([data[2], data[3]])) + HEADER_LEN,
        data.len()
    );
    assert_eq!(&m.transaction[..], &data[8..20]);
    assert!(m.software.as_ref().is_none_or(|s| s.len() <= MAX_TEXT));
    if let Some(e) = &m.error {
        assert!((300..=699).contains(&e.code) && e.reason.len() <= MAX_TEXT);
    }
    assert!(m.unknown_attributes.as_ref().is_none_or(|l| l.len() <= MAX_UNKNOWN));
    assert!(m.unknown_required.len() <= MAX_UNKNOWN);
    for fingerprint in [false, true] {
        let m = Message { fingerprint, ..m.clone() };
        let b = m.emit();
        assert_eq!(b.len() % 4, 0);
        assert_eq!(usize::from(u16::from_be_bytes([b[2], b[3]])) + HEADER_LEN, b.len());
        assert_eq!(Message::parse(&b), Ok(m));
    }
});
