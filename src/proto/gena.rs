//! GENA eventing (UDA 1.1 §4): the SUBSCRIBE/UNSUBSCRIBE headers in, the
//! event NOTIFY request and its property set out.
//!
//! Owns: parsing of CALLBACK and TIMEOUT, and the NOTIFY text. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::proto::xml::escape_into;

/// Longest CALLBACK header read.
pub const MAX_CALLBACK: usize = 512;
/// Most URLs considered in one CALLBACK header.
pub const MAX_URLS: usize = 4;

/// A delivery URL: `http://<ipv4>[:port]/path` or
/// `http://[<ipv6>][:port]/path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub addr: SocketAddr,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Parses one `http://host[:port][/path]` URL. Only address literals are
/// accepted, an IPv4 one bare and an IPv6 one in brackets (RFC 3986
/// §3.2.2), without a zone: no names, so nothing is ever resolved.
pub fn parse_url(url: &str) -> Option<Callback> {
    let rest = url.strip_prefix("http://")?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (ip, port) = match hostport.strip_prefix('[') {
        Some(v6) => {
            let (h, port) = v6.split_once(']')?;
            let a: Ipv6Addr = h.parse().ok()?;
            (IpAddr::V6(a), port)
        }
        None => match hostport.split_once(':') {
            Some((h, _)) => (
                IpAddr::V4(h.parse::<Ipv4Addr>().ok()?),
                hostport.get(h.len()..)?,
            ),
            None => (IpAddr::V4(hostport.parse::<Ipv4Addr>().ok()?), ""),
        },
    };
    let port = match port {
        "" => 80,
        p => crate::proto::parse_u16(p.strip_prefix(':')?).filter(|p| *p != 0)?,
    };
    if path.len() > 256 || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return None;
    }
    Some(Callback {
        addr: SocketAddr::new(ip, port),
        path: path.to_string(),
    })
}

/// The URLs of a CALLBACK header (`<url1><url2>…`), in order; malformed
/// ones are skipped. UDA: the publisher tries them in order.
pub fn parse_callback(h: &str) -> Vec<Callback> {
    if h.len() > MAX_CALLBACK {
        return Vec::new();
    }
    h.split('<')
        .skip(1)
        .filter_map(|part| part.split_once('>').map(|(u, _)| u.trim()))
        .take(MAX_URLS)
        .filter_map(parse_url)
        .collect()
}

/// Parses `TIMEOUT: Second-<n>`; `Second-infinite` (not allowed by
/// UDA 1.1) and a missing header both give `None`, meaning "the default".
pub fn parse_timeout(h: Option<&str>) -> Option<u32> {
    let v = h?.trim();
    let n = v
        .strip_prefix("Second-")
        .or_else(|| v.strip_prefix("second-"))?;
    crate::proto::parse_u32(n)
}

/// A property set body (UDA §4.3.2) for `(variable, value)` pairs.
pub fn propertyset(vars: &[(&str, String)]) -> String {
    let mut s = String::with_capacity(128 + vars.len() * 64);
    s.push_str(
        "<?xml version=\"1.0\"?>\r\n<e:propertyset xmlns:e=\"urn:schemas-upnp-org:event-1-0\">",
    );
    for (name, value) in vars {
        s.push_str("<e:property><");
        s.push_str(name);
        s.push('>');
        escape_into(&mut s, value);
        s.push_str("</");
        s.push_str(name);
        s.push_str("></e:property>");
    }
    s.push_str("</e:propertyset>\r\n");
    s
}

/// The complete NOTIFY request for one event message.
pub fn notify_request(cb: &Callback, sid: &str, seq: u32, body: &str) -> Vec<u8> {
    format!(
        "NOTIFY {} HTTP/1.1\r\nHOST: {}\r\nCONTENT-TYPE: text/xml; charset=\"utf-8\"\r\n\
CONTENT-LENGTH: {}\r\nNT: upnp:event\r\nNTS: upnp:propchange\r\nSID: {sid}\r\nSEQ: {seq}\r\n\
CONNECTION: close\r\n\r\n{body}",
        cb.path,
        cb.addr,
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks() {
        let c = parse_callback("<http://192.168.77.2:5555/evt/1?x=1>");
        assert_eq!(
            c,
            vec![Callback {
                addr: "192.168.77.2:5555".parse().unwrap(),
                path: "/evt/1?x=1".into()
            }]
        );
        let c = parse_callback(
            "<https://x/> <http://host.lan/> <http://10.0.0.1> <http://10.0.0.2:0/>",
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(c[0].path, "/");
        assert!(parse_callback("http://10.0.0.1/").is_empty());
        assert!(parse_callback(&format!("<http://10.0.0.1/{}>", "a".repeat(600))).is_empty());
        assert!(parse_url("http://10.0.0.1/a b").is_none());
        assert!(parse_url("http://10.0.0.1:99999/").is_none());
        assert!(parse_url("http://10.0.0.1:/").is_none());
        // IPv6 literals in brackets only, with or without a port, no zone
        let c = parse_url("http://[fd77::2]:5555/cb").unwrap();
        assert_eq!(c.addr, "[fd77::2]:5555".parse().unwrap());
        assert_eq!(parse_url("http://[fd77::2]/").unwrap().addr.port(), 80);
        assert!(parse_url("http://fd77::2/").is_none());
        assert!(parse_url("http://[fe80::2%25eth0]:5555/").is_none());
        assert!(parse_url("http://[fd77::2]x/").is_none());
        assert!(parse_url("http://[10.0.0.1]/").is_none());
        assert!(parse_url("http://[fd77::2/").is_none());
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout(Some("Second-1800")), Some(1800));
        assert_eq!(parse_timeout(Some("Second-infinite")), None);
        assert_eq!(parse_timeout(Some("1800")), None);
        assert_eq!(parse_timeout(None), None);
    }

    #[test]
    fn notify_text() {
        let body = propertyset(&[
            ("PortMappingNumberOfEntries", "3".into()),
            ("X", "a<b".into()),
        ]);
        assert!(body.contains(
            "<e:property><PortMappingNumberOfEntries>3</PortMappingNumberOfEntries></e:property>"
        ));
        assert!(body.contains("<X>a&lt;b</X>"));
        let cb = parse_url("http://192.168.77.2:5555/cb").unwrap();
        let req = String::from_utf8(notify_request(&cb, "uuid:1", 0, &body)).unwrap();
        assert!(req.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: 192.168.77.2:5555\r\n"));
        assert!(req.contains("\r\nSEQ: 0\r\n") && req.contains("\r\nNTS: upnp:propchange\r\n"));
        assert!(req.ends_with(&body));
        let cb = parse_url("http://[fd77::2]:5555/cb").unwrap();
        let req = String::from_utf8(notify_request(&cb, "uuid:1", 0, &body)).unwrap();
        assert!(
            req.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: [fd77::2]:5555\r\n"),
            "{req}"
        );
    }
}
