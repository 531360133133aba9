//! Pure codecs: bytes or text in, typed values out, and back again.
//!
//! Nothing here performs IO, reads a clock, or depends on tokio. Every
//! parser bounds what it accepts and returns an error instead of panicking;
//! each has a fuzz target under `fuzz/`.

pub mod blob;
pub mod desc;
pub mod gena;
pub mod http;
pub mod igd;
pub mod lease;
pub mod natpmp;
pub mod netlink;
pub mod pcp;
pub mod schema;
pub mod soap;
pub mod ssdp;
pub mod stun;
pub mod ubus;
pub mod uci;
pub mod xml;

use std::fmt;

/// A transport protocol a port mapping can carry.
///
/// Ordered TCP before UDP, which is the order listings use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// Both protocols, in listing order.
    pub const ALL: [Proto; 2] = [Proto::Tcp, Proto::Udp];

    /// Parses the UPnP spelling (`TCP`/`UDP`), case-insensitively as
    /// clients such as upnpc send either case.
    pub fn from_upnp(s: &str) -> Option<Proto> {
        if s.eq_ignore_ascii_case("TCP") {
            Some(Proto::Tcp)
        } else if s.eq_ignore_ascii_case("UDP") {
            Some(Proto::Udp)
        } else {
            None
        }
    }

    /// The UPnP spelling: `TCP` or `UDP`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "TCP",
            Proto::Udp => "UDP",
        }
    }

    /// The nftables spelling: `tcp` or `udp`.
    pub fn as_lower(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    /// From an IANA protocol number; anything but 6 and 17 is unsupported.
    pub fn from_iana(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The other protocol (NAT-PMP's companion port, RFC 6886 §3.3).
    pub fn other(self) -> Proto {
        match self {
            Proto::Tcp => Proto::Udp,
            Proto::Udp => Proto::Tcp,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one sanitiser of client text: keeps only characters that are no
/// control character (so no description can break a lease-file or log
/// line) and are XML characters ([`xml::is_char`]: no U+FFFE/U+FFFF, so
/// none can break a listing), and bounds the length in bytes, on a
/// character boundary.
pub fn sanitize_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars().filter(|&c| !c.is_control() && xml::is_char(c)) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

/// Parses a decimal number that must consist only of ASCII digits (no sign,
/// no spaces, at most 10 digits), as every numeric protocol field must.
pub fn parse_u32(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 10 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: u64 = b.iter().fold(0u64, |a, d| a * 10 + u64::from(d - b'0'));
    u32::try_from(v).ok()
}

/// Like [`parse_u32`] but for 16-bit fields.
pub fn parse_u16(s: &str) -> Option<u16> {
    parse_u32(s).and_then(|v| u16::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_digits_only() {
        assert_eq!(parse_u32("0"), Some(0));
        assert_eq!(parse_u32("4294967295"), Some(u32::MAX));
        assert_eq!(parse_u32("4294967296"), None);
        assert_eq!(parse_u32("99999999999"), None);
        assert_eq!(parse_u32(""), None);
        assert_eq!(parse_u32("+1"), None);
        assert_eq!(parse_u32(" 1"), None);
        assert_eq!(parse_u16("65535"), Some(65535));
        assert_eq!(parse_u16("65536"), None);
    }

    /// Client text is stored only as characters every XML document may
    /// hold (XML 1.0 §2.2 `Char`), so a description can never make a
    /// listing unparseable.
    #[test]
    fn client_text_keeps_only_xml_characters() {
        assert_eq!(sanitize_text("a\u{FFFF}b\u{FFFE}c\td\u{1}", 64), "abcd");
        assert_eq!(
            sanitize_text("\u{FFFD}\u{E000}\u{10FFFF}é", 64),
            "\u{FFFD}\u{E000}\u{10FFFF}é"
        );
        assert_eq!(crate::proto::lease::sanitize_desc("x\u{FFFF}"), "x");
    }

    #[test]
    fn protocol_spellings() {
        assert_eq!(Proto::from_upnp("tcp"), Some(Proto::Tcp));
        assert_eq!(Proto::from_upnp("UDP"), Some(Proto::Udp));
        assert_eq!(Proto::from_upnp("SCTP"), None);
        assert_eq!(Proto::from_iana(17), Some(Proto::Udp));
        assert_eq!(Proto::Tcp.other(), Proto::Udp);
        assert!(Proto::Tcp < Proto::Udp);
    }
}
