//! XML text helpers shared by the description, SOAP and GENA codecs.
//!
//! Owns: which characters an XML document may hold ([`is_char`]) and the
//! escaping of text and attribute values. Everything the daemon emits as
//! XML goes through [`escape_into`], so no input can make it unparseable.
//! Pure.

/// XML 1.0 §2.2 `Char`: `#x9 | #xA | #xD | [#x20-#xD7FF] | [#xE000-#xFFFD]
/// | [#x10000-#x10FFFF]` (surrogates are no Rust `char`). A document with
/// any other character, even as a reference, is not well-formed.
pub fn is_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Appends `s` to `out` with the five XML special characters escaped and
/// every character that is not an XML [`is_char`] dropped. Tab, LF and CR
/// are written as character references, so a parser reads them back as
/// they were (it turns a literal CR into LF, and in an attribute all three
/// into spaces).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if is_char(c) => out.push(c),
            _ => {}
        }
    }
}

/// Appends `<name>text</name>` with `text` escaped.
pub fn element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials_and_drops_controls() {
        let mut e = String::new();
        escape_into(&mut e, "a<b>&\"c'\u{1}]]>");
        assert_eq!(e, "a&lt;b&gt;&amp;&quot;c&apos;]]&gt;");
        let mut s = String::new();
        element(&mut s, "x", "1 & 2");
        assert_eq!(s, "<x>1 &amp; 2</x>");
    }

    /// XML 1.0 §2.2: U+FFFE, U+FFFF and the C0 controls other than tab,
    /// LF and CR are not characters of any XML document; they are dropped.
    /// CR, tab and LF are written as references so a parser reads them
    /// back as they were (a literal CR becomes LF, and in an attribute
    /// all three become spaces).
    #[test]
    fn only_xml_characters_are_emitted() {
        let escape = |s: &str| {
            let mut out = String::new();
            escape_into(&mut out, s);
            out
        };
        assert_eq!(
            escape("a\u{FFFF}b\u{FFFE}c\u{0}\u{1f}d\u{FFFD}\u{E000}\u{10FFFF}"),
            "abcd\u{FFFD}\u{E000}\u{10FFFF}"
        );
        assert_eq!(escape("1\r\n2\t3"), "1&#xD;&#xA;2&#x9;3");
        for c in [
            '\u{9}', '\u{A}', '\u{D}', '\u{20}', '\u{D7FF}', '\u{E000}', '\u{FFFD}',
        ] {
            assert!(is_char(c), "{c:?}");
        }
        for c in ['\u{0}', '\u{8}', '\u{B}', '\u{1F}', '\u{FFFE}', '\u{FFFF}'] {
            assert!(!is_char(c), "{c:?}");
        }
        assert!(is_char('\u{10000}') && is_char('\u{10FFFF}') && is_char('\u{7F}'));
    }
}
