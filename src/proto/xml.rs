//! XML text helpers shared by the description, SOAP and GENA codecs.
//!
//! Owns: escaping of text and attribute values. Pure.

/// Appends `s` to `out` with the five XML special characters escaped, and
/// control characters other than tab/CR/LF dropped (they are not allowed in
/// XML 1.0 at all).
pub fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
}

/// `s` escaped for XML text or attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    escape_into(&mut out, s);
    out
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
        assert_eq!(
            escape("a<b>&\"c'\u{1}]]>"),
            "a&lt;b&gt;&amp;&quot;c&apos;]]&gt;"
        );
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
        assert_eq!(
            escape("a\u{FFFF}b\u{FFFE}c\u{0}\u{1f}d\u{FFFD}\u{E000}\u{10FFFF}"),
            "abcd\u{FFFD}\u{E000}\u{10FFFF}"
        );
        assert_eq!(escape("1\r\n2\t3"), "1&#xD;&#xA;2&#x9;3");
    }
}
