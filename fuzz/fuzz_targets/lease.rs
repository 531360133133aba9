//! `proto::lease::parse_file` and `parse_file6` on arbitrary text.
//!
//! Checks besides "no panic": every bad line is reported with a line
//! number inside the file; every lease read re-emits (description
//! sanitised) to a line that parses to the same lease, and a whole file
//! emitted from the leases reads back with no error. Then the restore
//! path, `core::persist::from_lease` and `from_lease6`, under hostile
//! clocks (both at 0, at their ends, the wall clock past every expiry):
//! no overflow, a restored lifetime no longer than 2^32-1 s (a pinhole's
//! no longer than a day), NAT-PMP/PCP origin and a nonce only from a line
//! marked as the daemon's own label, and the mapping written back reads
//! back the same; a pinhole is PCP's exactly when it has a nonce, a PEER
//! one names its peer, and written back it reads back with the same
//! origin, nonce and PEER flag.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::core::persist::{from_lease, from_lease6, to_lease, to_lease6};
use rupnpd::core::pinhole::MAX_LEASE;
use rupnpd::core::table::Origin;
use rupnpd::proto::lease::{
    Lease4, Lease6, emit_file, emit_file6, parse_file, parse_file6, sanitize_desc,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();

    let (ok, bad) = parse_file(text);
    assert!(bad.iter().all(|e| e.line >= 1 && e.line <= lines));
    let mut clean = Vec::with_capacity(ok.len());
    for mut l in ok {
        l.desc = sanitize_desc(&l.desc);
        assert_eq!(Lease4::parse(&l.emit()).as_ref(), Ok(&l), "{:?}", l.emit());
        clean.push(l);
    }
    let (again, bad) = parse_file(&emit_file(&clean));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(again, clean);
    for l in &clean {
        for (now, wall) in CLOCKS {
            let Some(m) = from_lease(l, now, wall) else {
                continue;
            };
            if let Some(e) = m.expires {
                assert!(e.saturating_sub(now) <= u64::from(u32::MAX) * 1000, "{l:?}");
            }
            if !l.own_label {
                assert!(matches!(m.origin, Origin::UpnpV1 | Origin::UpnpV2), "{l:?}");
                assert_eq!((m.nonce, m.peer_port), (None, None), "{l:?}");
            }
            let back = Lease4::parse(&to_lease(&m, now, wall).emit()).unwrap();
            if let Some(again) = from_lease(&back, now, wall) {
                assert_eq!(
                    (again.origin, again.nonce, again.peer_port),
                    (m.origin, m.nonce, m.peer_port),
                    "{l:?}"
                );
            }
        }
    }

    let (ok, bad) = parse_file6(text);
    assert!(bad.iter().all(|e| e.line >= 1 && e.line <= lines));
    let mut clean = Vec::with_capacity(ok.len());
    for mut l in ok {
        l.desc = sanitize_desc(&l.desc);
        assert_eq!(Lease6::parse(&l.emit()).as_ref(), Ok(&l), "{:?}", l.emit());
        clean.push(l);
    }
    let (again, bad) = parse_file6(&emit_file6(&clean));
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(again, clean);
    for l in &clean {
        for (now, wall) in CLOCKS {
            if let Some(p) = from_lease6(l, now, wall) {
                assert!(p.expires.saturating_sub(now) <= u64::from(MAX_LEASE) * 1000);
                let back = Lease6::parse(&to_lease6(&p, now, wall).emit()).unwrap();
                // a PCP pinhole comes back with its origin, nonce and PEER
                // flag; a PEER one always has its peer
                if let Some(again) = from_lease6(&back, now, wall) {
                    assert_eq!(
                        (again.origin, again.nonce, again.peer),
                        (p.origin, p.nonce, p.peer),
                        "{l:?}"
                    );
                }
                assert!(!p.peer || (p.remote.is_some() && p.rport != 0), "{l:?}");
                assert_eq!(p.origin == Origin::Pcp, p.nonce.is_some(), "{l:?}");
            }
        }
    }
});

/// (monotonic ms, UNIX s) pairs the restore runs under.
const CLOCKS: [(u64, u64); 5] = [
    (0, 0),
    (5_000, 1_700_000_000),
    (u64::MAX - 1, 0),
    (0, u64::MAX - 1),
    (u64::MAX, u64::MAX),
];
