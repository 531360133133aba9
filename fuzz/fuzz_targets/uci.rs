//! `proto::uci::parse` on arbitrary text and, when it parses, `set_option`
//! on the first section.
//!
//! Checks besides "no panic": on a file that parses, an edit of the first
//! section either succeeds or is refused because the option is a list or
//! (the writer's read-back guard) because the file ends in a lone
//! backslash, whose line continuation would swallow an appended line (the
//! contract of uci.rs's own randomised test; with CRLF line ends that is a
//! backslash and a CR). A successful edit changes that one option and
//! nothing else: every section keeps its type, name and other options.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::uci::{EditError, Section, SectionRef, Value, parse, set_option};

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
            // Everything but the edited option reads back as it was.
            let others = |s: &Section, edited: bool| -> Vec<(String, Value)> {
                let keep = |n: &String| !edited || n != option;
                s.options.iter().filter(|(n, _)| keep(n)).cloned().collect()
            };
            for (i, (was, now)) in pkg.sections.iter().zip(&again.sections).enumerate() {
                assert_eq!((&was.stype, &was.name), (&now.stype, &now.name));
                assert_eq!(
                    others(was, i == 0),
                    others(now, i == 0),
                    "section {i}: {out:?}"
                );
            }
            match again.sections[0].get(option) {
                Some(Value::Option(v)) => assert_eq!(v, value),
                None => assert!(value.is_empty()),
                Some(Value::List(_)) => panic!("{option} became a list"),
            }
        }
        Err(EditError::IsList(_)) => {}
        Err(EditError::Verify) if text.ends_with('\\') || text.ends_with("\\\r") => {}
        Err(e) => panic!("{e} editing {r} of {text:?}"),
    }
});
