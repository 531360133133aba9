//! `proto::uci::parse` on arbitrary text and, when it parses, `set_option`
//! on the first section.
//!
//! Checks besides "no panic" (the contract of uci.rs's own randomised
//! test): on a file that parses, an edit of the first section either
//! succeeds, with a result that parses to as many sections and holds the
//! new value, or is refused because the option is a list, or (the
//! writer's read-back guard) because the file ends in a lone backslash.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::uci::{EditError, SectionRef, Value, parse, set_option};

/// (option, value) pairs: an existing upnpd option, a new one with every
/// quoting hazard, and an empty value (which deletes).
const EDITS: [(&str, &str); 3] = [
    ("enabled", "1"),
    ("new_option", "it's \"quoted\" # not a comment; \\ x"),
    ("port", ""),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(pkg) = parse("upnpd", text) else {
        return;
    };
    let Some(first) = pkg.sections.first() else {
        return;
    };
    let r = match &first.name {
        Some(n) => SectionRef::Named(n.clone()),
        None => SectionRef::Indexed {
            stype: first.stype.clone(),
            index: 0,
        },
    };
    // One edit per input keeps runs fast; the input picks which.
    let (option, value) = EDITS[data.len() % EDITS.len()];
    match set_option(text, &r, option, value) {
        Ok(out) => {
            let again = parse("upnpd", &out).expect("edited file parses");
            assert_eq!(again.sections.len(), pkg.sections.len());
            let got = again.section(&r).and_then(|s| s.get(option));
            match got {
                Some(Value::Option(v)) => assert_eq!(v, value),
                None => assert!(value.is_empty()),
                Some(Value::List(_)) => panic!("{option} became a list"),
            }
        }
        Err(EditError::IsList(_)) => {}
        Err(EditError::Verify) if text.ends_with('\\') => {}
        Err(e) => panic!("{e} editing {r} of {text:?}"),
    }
});
