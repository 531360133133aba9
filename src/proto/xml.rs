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
    copy_into(out, s, true);
}

/// Appends `s` to `out` without the characters that are not XML
/// [`is_char`], and nothing escaped (for CDATA).
pub fn chars_into(out: &mut String, s: &str) {
    copy_into(out, s, false);
}

/// The copy behind [`escape_into`] and [`chars_into`]: runs of plain text
/// go over as one copy, and only the bytes that need it are looked at.
/// In UTF-8 every character that is no XML `Char` is a C0 control byte
/// other than tab, LF and CR, or U+FFFE / U+FFFF (EF BF BE / EF BF BF);
/// every special character is one ASCII byte. So the scan is bytewise,
/// and cuts only before an ASCII byte or a lead byte: char boundaries.
fn copy_into(out: &mut String, s: &str, escape: bool) {
    let b = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        // Eight bytes at a time while none needs a look (most text).
        if let Some(w) = b.get(i..i + 8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            if !needs_look(u64::from_ne_bytes(w), escape) {
                i += 8;
                continue;
            }
        }
        let (with, len) = match c {
            b'&' if escape => ("&amp;", 1),
            b'<' if escape => ("&lt;", 1),
            b'>' if escape => ("&gt;", 1),
            b'"' if escape => ("&quot;", 1),
            b'\'' if escape => ("&apos;", 1),
            b'\t' if escape => ("&#x9;", 1),
            b'\n' if escape => ("&#xA;", 1),
            b'\r' if escape => ("&#xD;", 1),
            b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            0..=0x1f => ("", 1),
            0xef if b.get(i + 1) == Some(&0xbf) && matches!(b.get(i + 2), Some(0xbe | 0xbf)) => {
                ("", 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(s.get(plain..i).unwrap_or_default());
        out.push_str(with);
        i += len;
        plain = i;
    }
    out.push_str(s.get(plain..).unwrap_or_default());
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether a byte of the word `w` is below 0x20 (a control), is 0xEF (a
/// lead byte of U+FFFE/U+FFFF) or, with `escape`, is one of the five
/// special characters: [`copy_into`]'s test, eight bytes at once. Byte
/// `x` of `w` is below `n` (n ≤ 128) exactly when some byte of
/// `(w - n·ONES) & !w & HIGHS` is set; equal to `v` when one of `w ^ v·ONES`
/// is zero, i.e. below 1.
fn needs_look(w: u64, escape: bool) -> bool {
    let below = |w: u64, n: u64| w.wrapping_sub(ONES * n) & !w & HIGHS != 0;
    let has = |v: u8| below(w ^ (ONES * u64::from(v)), 1);
    below(w, 0x20)
        || has(0xef)
        || (escape && (has(b'&') || has(b'<') || has(b'>') || has(b'"') || has(b'\'')))
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
        let chars = |s: &str| {
            let mut out = String::new();
            chars_into(&mut out, s);
            out
        };
        assert_eq!(
            chars("<a>\u{FFFF}&\u{1}\t\u{EFBF}\u{FFFD}"),
            "<a>&\t\u{EFBF}\u{FFFD}"
        );
    }

    /// The eight-byte test flags a word exactly when one of its bytes
    /// needs a look, wherever it is and whatever its neighbours.
    #[test]
    fn the_word_test_is_exact() {
        for escape in [false, true] {
            let look = |v: u8| v < 0x20 || v == 0xef || (escape && b"&<>\"'".contains(&v));
            for v in 0..=255u8 {
                for at in 0..8 {
                    for fill in [0x20, b'a', 0x7f, 0x80, 0xbf, 0xee, 0xf0, 0xff] {
                        let mut w = [fill; 8];
                        w[at] = v;
                        assert_eq!(
                            needs_look(u64::from_ne_bytes(w), escape),
                            look(v),
                            "{v:#x} at {at} among {fill:#x}, escape {escape}"
                        );
                    }
                }
            }
        }
    }

    /// The bytewise copy keeps exactly the characters [`is_char`] keeps,
    /// whatever the text (every char below U+10000, then the planes'
    /// edges, next to ASCII and to the specials).
    #[test]
    fn the_copy_agrees_with_is_char() {
        let mut text = String::new();
        for c in (0..=0xFFFFu32)
            .chain([0x10000, 0x1FFFE, 0x1FFFF, 0x10FFFF])
            .filter_map(char::from_u32)
        {
            text.push(c);
            text.push('a');
        }
        let mut got = String::new();
        chars_into(&mut got, &text);
        let want: String = text.chars().filter(|&c| is_char(c)).collect();
        assert_eq!(got, want);
        let mut got = String::new();
        escape_into(&mut got, &text);
        let mut want = String::new();
        for c in text.chars() {
            match c {
                '&' => want.push_str("&amp;"),
                '<' => want.push_str("&lt;"),
                '>' => want.push_str("&gt;"),
                '"' => want.push_str("&quot;"),
                '\'' => want.push_str("&apos;"),
                '\t' => want.push_str("&#x9;"),
                '\n' => want.push_str("&#xA;"),
                '\r' => want.push_str("&#xD;"),
                c if is_char(c) => want.push(c),
                _ => {}
            }
        }
        assert_eq!(got, want);
    }
}
