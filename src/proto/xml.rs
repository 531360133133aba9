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
}
