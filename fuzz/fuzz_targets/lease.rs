//! `proto::lease::parse_file` and `parse_file6` on arbitrary text.
//!
//! Checks besides "no panic": every bad line is reported with a line
//! number inside the file; every lease read re-emits (description
//! sanitised) to a line that parses to the same lease, and a whole file
//! emitted from the leases reads back with no error.

#![no_main]

use libfuzzer_sys::fuzz_target;
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
});
