//! blobmsg (ubus wire format) and ubus message parsers:
//! `rupnpd::proto::blob::decode_blobmsg` and `rupnpd::proto::ubus::Message::decode`.
//!
//! Checks: no panic on any input; whatever decodes encodes again, and that
//! encoding is stable through a second decode (NaN doubles make `==` on
//! values useless, so the bytes are compared).

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::blob::{decode_blobmsg, encode_blobmsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = decode_blobmsg(data) {
        if let Ok(bytes) = encode_blobmsg(&v) {
            let v2 = decode_blobmsg(&bytes).expect("our own encoding decodes");
            let bytes2 = encode_blobmsg(&v2).expect("and encodes again");
            assert_eq!(bytes, bytes2);
        }
    }
    let _ = rupnpd::proto::ubus::Message::decode(data);
});
