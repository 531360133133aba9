//! Shared by the `soap` and `igd_handler` targets (not a target itself):
//! a strict reading of a whole document with quick-xml.

use quick_xml::Reader;
use quick_xml::events::Event;
use rupnpd::proto::xml::is_char;

/// The whole document parses: matching end tags, every element closed,
/// every character reference an XML character (XML 1.0 §2.2, §4.1).
pub fn well_formed(doc: &str) {
    let mut r = Reader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut depth = 0usize;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::End(_)) => depth -= 1,
            Ok(Event::GeneralRef(g)) if g.is_char_ref() => {
                let c = g.resolve_char_ref().ok().flatten();
                assert!(c.is_some_and(is_char), "bad reference in {doc:?}");
            }
            Ok(_) => {}
            Err(e) => panic!("not XML ({e}): {doc:?}"),
        }
    }
    assert_eq!(depth, 0, "not closed: {doc:?}");
}
