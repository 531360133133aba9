//! A bounded HTTP/1.1 request-head parser and a response writer, for the
//! description, SOAP control and GENA event URLs.
//!
//! Owns: [`Request`] (the few headers UPnP needs), the size limits, and
//! [`Response`] serialisation. Pure: the caller supplies the `Date` text
//! and does all socket IO.

use std::net::IpAddr;

/// Largest request head accepted (request line plus headers). miniupnpd
/// grows its buffer without bound; a longer head gets 431.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most header lines accepted.
pub const MAX_HEADERS: usize = 32;
/// Largest request body (SOAP requests are a few hundred bytes).
pub const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Subscribe,
    Unsubscribe,
    Other,
}

/// The parts of a request head that rupnpd uses. Header values are kept
/// verbatim (trimmed); unknown headers are dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub method: Option<Method>,
    pub path: String,
    /// True for HTTP/1.1 (persistent by default), false for 1.0.
    pub http11: bool,
    pub host: Option<String>,
    pub content_length: usize,
    pub soapaction: Option<String>,
    pub user_agent: Option<String>,
    pub callback: Option<String>,
    pub nt: Option<String>,
    pub sid: Option<String>,
    pub timeout: Option<String>,
    /// Whether the client allows the connection to stay open.
    pub keep_alive: bool,
}

impl Request {
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }
}

/// Why a request head was rejected, with the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: not HTTP, or contradictory headers.
    Malformed,
    /// 431: head longer than [`MAX_HEAD`] or more than [`MAX_HEADERS`] lines.
    TooLarge,
    /// 413: body longer than [`MAX_BODY`].
    BodyTooLarge,
    /// 501: a transfer coding we do not accept (chunked request bodies).
    Unsupported,
    /// 505: not HTTP/1.0 or 1.1.
    Version,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Malformed => 400,
            HeadError::TooLarge => 431,
            HeadError::BodyTooLarge => 413,
            HeadError::Unsupported => 501,
            HeadError::Version => 505,
        }
    }
}

fn value(v: &[u8]) -> Result<String, HeadError> {
    std::str::from_utf8(v)
        .map(|s| s.trim().to_string())
        .map_err(|_| HeadError::Malformed)
}

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)` means "incomplete, read more" (only while `buf` is within
/// [`MAX_HEAD`]). `Ok(Some((req, n)))` gives the head and its length in
/// bytes; the body (of `req.content_length` bytes) follows.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Request, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let n = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(_) => return Err(HeadError::Malformed),
    };
    if n > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let http11 = match parsed.version {
        Some(1) => true,
        Some(0) => false,
        _ => return Err(HeadError::Version),
    };
    let method = match parsed.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "SUBSCRIBE" => Method::Subscribe,
        "UNSUBSCRIBE" => Method::Unsubscribe,
        _ => Method::Other,
    };
    let mut req = Request {
        method: Some(method),
        path: parsed.path.unwrap_or("").to_string(),
        http11,
        keep_alive: http11,
        ..Request::default()
    };
    let mut length: Option<usize> = None;
    for h in parsed.headers.iter() {
        let name = h.name;
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("content-length") {
            let v = value(h.value)?;
            let len = crate::proto::parse_u32(&v).ok_or(HeadError::Malformed)? as usize;
            // RFC 9112 §6.3: differing Content-Length values are an error.
            if length.is_some_and(|l| l != len) {
                return Err(HeadError::Malformed);
            }
            length = Some(len);
        } else if is("transfer-encoding") {
            return Err(HeadError::Unsupported);
        } else if is("host") {
            if req.host.is_some() {
                return Err(HeadError::Malformed);
            }
            req.host = Some(value(h.value)?);
        } else if is("soapaction") {
            req.soapaction = Some(value(h.value)?);
        } else if is("user-agent") {
            req.user_agent = Some(value(h.value)?);
        } else if is("callback") {
            req.callback = Some(value(h.value)?);
        } else if is("nt") {
            req.nt = Some(value(h.value)?);
        } else if is("sid") {
            req.sid = Some(value(h.value)?);
        } else if is("timeout") {
            req.timeout = Some(value(h.value)?);
        } else if is("connection") {
            let v = value(h.value)?;
            for token in v.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    req.keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    req.keep_alive = true;
                }
            }
        }
    }
    req.content_length = length.unwrap_or(0);
    if req.content_length > MAX_BODY {
        return Err(HeadError::BodyTooLarge);
    }
    Ok(Some((req, n)))
}

/// An address as the host of a URL: an IPv6 address in brackets (RFC
/// 3986 §3.2.2).
pub fn url_host(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// True if a `Host` header names exactly `addr` (and `port`, if it gives
/// one) as a literal address: an IPv4 address bare, an IPv6 address in
/// brackets without a zone (RFC 3986 §3.2.2; a bare IPv6 address or a
/// bracketed IPv4 one is no URI host). Names are refused: this is the
/// defence against DNS rebinding (miniupnpd does the same since 2014).
pub fn host_matches(host: &str, addr: IpAddr, port: u16) -> bool {
    let (h, p) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => match p.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None => return false,
            },
            None => return false,
        }
    } else {
        match host.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    if let Some(p) = p {
        if crate::proto::parse_u16(p) != Some(port) {
            return false;
        }
    }
    let bracketed = host.starts_with('[');
    match (addr, bracketed) {
        (IpAddr::V6(a), true) => h.parse::<std::net::Ipv6Addr>().is_ok_and(|x| x == a),
        (IpAddr::V4(a), false) => h.parse::<std::net::Ipv4Addr>().is_ok_and(|x| x == a),
        _ => false,
    }
}

/// An HTTP date (RFC 9110 §5.6.7, IMF-fixdate) for `secs` since the UNIX
/// epoch, e.g. `Thu, 01 Jan 1970 00:00:00 GMT`.
pub fn date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil date from a day count (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1).clamp(0, 11) as usize],
        y,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The reason phrase for the statuses rupnpd sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A response to serialise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Extra headers; `Content-Length`, `Connection`, `Server` and `Date`
    /// are added by [`Response::emit`].
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
    /// Close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            close: false,
        }
    }

    /// An XML body (descriptions, SOAP, GENA).
    pub fn xml(status: u16, body: String) -> Response {
        let mut r = Response::new(status);
        r.headers
            .push(("Content-Type", "text/xml; charset=\"utf-8\"".into()));
        r.body = body.into_bytes();
        r
    }

    /// An error status with a one-line plain-text explanation.
    pub fn error(status: u16, why: &str) -> Response {
        let mut r = Response::new(status);
        r.headers
            .push(("Content-Type", "text/plain; charset=utf-8".into()));
        r.body = format!("{status} {}: {why}\n", reason(status)).into_bytes();
        r.close = status >= 400 && status != 412 && status != 500;
        r
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes to send. `head_only` omits the body (HEAD requests) but
    /// keeps its length.
    pub fn emit(&self, server: &str, date: &str, head_only: bool) -> Vec<u8> {
        let mut s = String::with_capacity(256);
        s.push_str("HTTP/1.1 ");
        s.push_str(&self.status.to_string());
        s.push(' ');
        s.push_str(reason(self.status));
        s.push_str("\r\n");
        for (k, v) in &self.headers {
            s.push_str(k);
            s.push_str(": ");
            // Header values never carry CR/LF, whatever produced them.
            s.extend(v.chars().filter(|c| *c != '\r' && *c != '\n'));
            s.push_str("\r\n");
        }
        s.push_str("Content-Length: ");
        s.push_str(&self.body.len().to_string());
        s.push_str("\r\nServer: ");
        s.push_str(server);
        s.push_str("\r\nDate: ");
        s.push_str(date);
        s.push_str("\r\nConnection: ");
        s.push_str(if self.close { "close" } else { "keep-alive" });
        s.push_str("\r\n\r\n");
        let mut out = s.into_bytes();
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SOAP: &[u8] = b"POST /ctl/IPConn HTTP/1.1\r\nHOST: 192.168.77.1:5000\r\n\
Content-Length: 12\r\nCONTENT-TYPE: text/xml; charset=\"utf-8\"\r\n\
SOAPACTION: \"urn:schemas-upnp-org:service:WANIPConnection:2#GetExternalIPAddress\"\r\n\
Connection: close\r\nUser-Agent: Linux UPnP/1.1 MiniUPnPc/2.2.4\r\n\r\nbody........";

    #[test]
    fn soap_request_head() {
        let (req, n) = parse_head(SOAP).unwrap().unwrap();
        assert_eq!(req.method(), Method::Post);
        assert_eq!(req.path, "/ctl/IPConn");
        assert_eq!(req.host.as_deref(), Some("192.168.77.1:5000"));
        assert_eq!(req.content_length, 12);
        assert!(!req.keep_alive);
        assert!(req.soapaction.unwrap().ends_with("#GetExternalIPAddress\""));
        assert_eq!(&SOAP[n..], b"body........");
    }

    #[test]
    fn incomplete_then_too_large() {
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        let mut big = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
        big.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
    }

    #[test]
    fn hostile_lengths() {
        let p = |s: &str| parse_head(s.as_bytes());
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: \r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 99999999999999\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nContent-Length: 16385\r\n\r\n"),
            Err(HeadError::BodyTooLarge)
        );
        assert_eq!(
            p("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Unsupported)
        );
        assert_eq!(p("\u{1}\u{2}\r\n\r\n"), Err(HeadError::Malformed));
        assert_eq!(
            p("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(HeadError::Malformed)
        );
    }

    #[test]
    fn http10_closes_by_default() {
        let (req, _) = parse_head(b"GET /rootDesc.xml HTTP/1.0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!req.keep_alive && !req.http11);
    }

    #[test]
    fn host_must_be_our_literal_address() {
        let a = IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1));
        assert!(host_matches("192.168.77.1:5000", a, 5000));
        assert!(host_matches("192.168.77.1", a, 5000));
        assert!(!host_matches("192.168.77.1:80", a, 5000));
        assert!(!host_matches("router.lan:5000", a, 5000));
        assert!(!host_matches("evil.example", a, 5000));
        assert!(!host_matches("192.168.77.10:5000", a, 5000));
        assert!(!host_matches("192.168.77.1:", a, 5000));
        let v6: IpAddr = "fe80::1".parse().unwrap();
        assert!(host_matches("[fe80::1]:5000", v6, 5000));
        assert!(!host_matches("[fe80::1]x", v6, 5000));
        // the bracketed literal of the local IPv6 address, and nothing else
        let ula: IpAddr = "fd77::1".parse().unwrap();
        assert!(host_matches("[fd77::1]:5000", ula, 5000));
        assert!(host_matches("[fd77::1]", ula, 5000));
        assert!(host_matches("[fd77:0::1]:5000", ula, 5000));
        assert!(!host_matches("fd77::1", ula, 5000));
        assert!(!host_matches("fd77::1:5000", ula, 5000));
        assert!(!host_matches("[fd77::1]:80", ula, 5000));
        assert!(!host_matches("[fd77::2]:5000", ula, 5000));
        assert!(!host_matches("[fd77::1%25br-lan]:5000", ula, 5000));
        assert!(!host_matches("[fd77::1]:", ula, 5000));
        assert!(!host_matches("[::ffff:192.168.77.1]:5000", ula, 5000));
        assert!(!host_matches("[::ffff:192.168.77.1]:5000", a, 5000));
        assert!(!host_matches("[192.168.77.1]:5000", a, 5000));
        assert!(!host_matches("router.lan:5000", ula, 5000));
    }

    #[test]
    fn http_dates() {
        assert_eq!(date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date(1_795_000_000), "Wed, 18 Nov 2026 11:06:40 GMT");
        assert_eq!(date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn response_bytes() {
        let r = Response::xml(200, "<a/>".into());
        let out = r.emit("S", "D", false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
Content-Length: 4\r\nServer: S\r\nDate: D\r\nConnection: keep-alive\r\n\r\n<a/>"
        );
        let r = Response::new(200).header("X", "a\r\nInjected: 1");
        let out = String::from_utf8(r.emit("S", "D", true)).unwrap();
        assert!(out.contains("X: aInjected: 1\r\n"));
    }
}
