//! `proto::netlink`'s nf_tables parsers on arbitrary datagrams (what the
//! kernel sends back over NETLINK_NETFILTER): `messages`, `parse_ack`,
//! `nftables::parse_elements`, `parse_rule`, `rule_comment` and
//! `notices`.
//!
//! Checks besides "no panic": every message lies inside the datagram and
//! there are no more of them than 16-byte headers fit; every element,
//! rule and comment borrowed from a message lies inside its payload; one
//! notice per message, its table and set names inside the datagram.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::netlink::nftables::{
    Notice, notices, parse_elements, parse_rule, rule_comment,
};
use rupnpd::proto::netlink::{messages, parse_ack};

fn inside(outer: &[u8], inner: &[u8]) -> bool {
    let (o, i) = (outer.as_ptr() as usize, inner.as_ptr() as usize);
    inner.is_empty() || (i >= o && i + inner.len() <= o + outer.len())
}

fuzz_target!(|data: &[u8]| {
    let mut count = 0usize;
    for m in messages(data) {
        count += 1;
        assert!(inside(data, m.payload));
        if let Some(ack) = parse_ack(&m) {
            if let Some(msg) = ack.msg {
                assert!(inside(m.payload, msg.as_bytes()));
            }
        }
        let mut seen = 0usize;
        let n = parse_elements(m.payload, &mut |e| {
            seen += 1;
            assert!(inside(m.payload, e.key));
            for part in [e.key_end, e.data].into_iter().flatten() {
                assert!(inside(m.payload, part));
            }
        });
        assert_eq!(n, seen);
        // Each element takes at least one 4-byte attribute header.
        assert!(n <= m.payload.len() / 4);
        let r = parse_rule(m.payload);
        assert!(inside(m.payload, r.chain));
        assert!(inside(m.payload, r.userdata));
        if let Some(c) = rule_comment(r.userdata) {
            assert!(inside(r.userdata, c));
        }
    }
    assert!(count <= data.len() / 16);
    let mut n = 0usize;
    for notice in notices(data) {
        n += 1;
        match notice {
            Notice::Elements { table, set, .. } => {
                assert!(inside(data, table) && inside(data, set));
            }
            Notice::Object { table, .. } => assert!(inside(data, table)),
            Notice::Gen { .. } | Notice::Unknown => {}
        }
    }
    assert_eq!(n, count);
});
