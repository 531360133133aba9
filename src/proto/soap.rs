//! SOAP 1.1 envelopes for UPnP control: the SOAPAction header, request
//! bodies in, responses and faults out.
//!
//! Owns: [`SoapAction`], [`parse_body`], [`response`], [`fault`]. The XML
//! parser is quick-xml, driven so that a DTD, an entity other than the
//! five predefined ones and character references, deep nesting or too
//! many elements are refused (CVE-2017-1000494 was a hand-written XML
//! parser overflowing). Pure.

use quick_xml::Reader;
use quick_xml::events::Event;

use crate::proto::igd::{Args, UpnpError};
use crate::proto::xml::{chars_into, element, escape_into};

/// Deepest element nesting accepted (a UPnP request needs 4).
pub const MAX_DEPTH: usize = 8;
/// Most XML events (elements, texts, comments) read from one body.
pub const MAX_EVENTS: usize = 512;
/// Most arguments in one action (AddPortMapping has 8).
pub const MAX_ARGS: usize = 32;
/// Longest argument value kept, in bytes.
pub const MAX_ARG_LEN: usize = 1024;

/// The namespace of QueryStateVariable (UDA 1.0).
pub const CONTROL_NS: &str = "urn:schemas-upnp-org:control-1-0";

/// A parsed `SOAPACTION` header: `"<service type>#<action>"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SoapAction {
    /// The full namespace, e.g. `urn:schemas-upnp-org:service:WANIPConnection:2`.
    pub namespace: String,
    /// `WANIPConnection`, or empty for the control namespace.
    pub service: String,
    /// The service version from the namespace (0 if none).
    pub version: u8,
    pub action: String,
}

/// Parses the `SOAPACTION` header value. Quotes are optional (some
/// clients omit them); the length is bounded (CVE-2013-0230 was a stack
/// overflow copying a long one).
pub fn parse_soapaction(h: &str) -> Option<SoapAction> {
    if h.len() > 256 {
        return None;
    }
    let h = h.trim();
    let h = h
        .strip_prefix('"')
        .map(|s| s.strip_suffix('"').unwrap_or(s))
        .unwrap_or(h);
    let (ns, action) = h.rsplit_once('#')?;
    if action.is_empty()
        || !action
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    let (service, version) = match ns.strip_prefix("urn:schemas-upnp-org:service:") {
        Some(rest) => {
            let (name, v) = rest.rsplit_once(':')?;
            let v: u8 = crate::proto::parse_u16(v).and_then(|v| u8::try_from(v).ok())?;
            (name.to_string(), v)
        }
        None if ns == CONTROL_NS => (String::new(), 0),
        None => return None,
    };
    Some(SoapAction {
        namespace: ns.to_string(),
        service,
        version,
        action: action.to_string(),
    })
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoapError {
    /// Not well-formed, not a SOAP envelope, or over a limit.
    Malformed(&'static str),
    /// A DTD, an entity definition or an unknown entity reference.
    Forbidden(&'static str),
}

/// A request body: the action element's local name, its namespace, and
/// its child elements as arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub action: String,
    pub namespace: String,
    pub args: Args,
}

fn local(name: &[u8]) -> &[u8] {
    match name.iter().rposition(|&b| b == b':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

fn utf8(b: &[u8]) -> Result<&str, SoapError> {
    std::str::from_utf8(b).map_err(|_| SoapError::Malformed("not UTF-8"))
}

fn predefined(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => return None,
    })
}

/// Parses a SOAP request body.
pub fn parse_body(body: &[u8]) -> Result<Body, SoapError> {
    let text = utf8(body)?;
    let mut reader = Reader::from_str(text);
    let cfg = reader.config_mut();
    cfg.check_end_names = true;
    cfg.expand_empty_elements = false;
    // Element path: 1 Envelope, 2 Body (or Header), 3 action, 4 argument.
    let mut path: Vec<Vec<u8>> = Vec::with_capacity(MAX_DEPTH);
    let mut action: Option<(String, String)> = None;
    let mut args: Vec<(String, String)> = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut done = false;
    for _ in 0..MAX_EVENTS {
        let ev = reader
            .read_event()
            .map_err(|_| SoapError::Malformed("XML is not well-formed"))?;
        match ev {
            Event::Eof => {
                if !path.is_empty() {
                    return Err(SoapError::Malformed("truncated XML"));
                }
                done = true;
                break;
            }
            Event::DocType(_) => return Err(SoapError::Forbidden("DTD")),
            Event::PI(_) => return Err(SoapError::Forbidden("processing instruction")),
            Event::Decl(_) | Event::Comment(_) => {}
            Event::Start(e) | Event::Empty(e) if path.len() >= MAX_DEPTH => {
                let _ = e;
                return Err(SoapError::Malformed("nested too deeply"));
            }
            ref ev @ (Event::Start(ref e) | Event::Empty(ref e)) => {
                let empty = matches!(ev, Event::Empty(_));
                let name = local(e.name().as_ref()).to_vec();
                let depth = path.len() + 1;
                let in_body = path.get(1).is_some_and(|n| n == b"Body");
                match depth {
                    1 if name != b"Envelope" => {
                        return Err(SoapError::Malformed("root element is not Envelope"));
                    }
                    2 if name != b"Body" && name != b"Header" => {
                        return Err(SoapError::Malformed("unexpected element in Envelope"));
                    }
                    3 if in_body => {
                        if action.is_some() {
                            return Err(SoapError::Malformed("more than one action"));
                        }
                        let prefix = e.name().prefix().map(|p| p.as_ref().to_vec());
                        let mut ns = String::new();
                        for a in e.attributes().with_checks(true) {
                            let a = a.map_err(|_| SoapError::Malformed("bad attribute"))?;
                            let key = a.key.as_ref();
                            let matches = match &prefix {
                                Some(p) => key.strip_prefix(b"xmlns:") == Some(p.as_slice()),
                                None => key == b"xmlns",
                            };
                            if matches {
                                ns = utf8(&a.value)?.to_string();
                            }
                        }
                        action = Some((utf8(&name)?.to_string(), ns));
                    }
                    4 if in_body => {
                        if args.len() >= MAX_ARGS {
                            return Err(SoapError::Malformed("too many arguments"));
                        }
                        let n = utf8(&name)?.to_string();
                        if args.iter().any(|(a, _)| *a == n) {
                            return Err(SoapError::Malformed("duplicate argument"));
                        }
                        if empty {
                            args.push((n, String::new()));
                        } else {
                            current = Some((n, String::new()));
                        }
                    }
                    _ => {}
                }
                if !empty {
                    path.push(name);
                }
            }
            Event::End(_) => {
                if path.len() == 4 {
                    if let Some(arg) = current.take() {
                        args.push(arg);
                    }
                }
                path.pop();
            }
            Event::Text(t) => {
                if let Some((_, v)) = current.as_mut().filter(|_| path.len() == 4) {
                    let s = t
                        .xml10_content()
                        .map_err(|_| SoapError::Malformed("bad text encoding"))?;
                    push_bounded(v, &s)?;
                }
            }
            Event::CData(t) => {
                if let Some((_, v)) = current.as_mut().filter(|_| path.len() == 4) {
                    push_bounded(v, utf8(&t)?)?;
                }
            }
            Event::GeneralRef(r) => {
                let c = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or(SoapError::Malformed("bad character reference"))?
                } else {
                    let name = r
                        .decode()
                        .map_err(|_| SoapError::Malformed("bad entity name"))?;
                    predefined(&name).ok_or(SoapError::Forbidden("entity reference"))?
                };
                if let Some((_, v)) = current.as_mut().filter(|_| path.len() == 4) {
                    push_bounded(v, c.encode_utf8(&mut [0; 4]))?;
                }
            }
        }
    }
    if !done {
        return Err(SoapError::Malformed("too many XML events"));
    }
    let (action, namespace) = action.ok_or(SoapError::Malformed("no action element in Body"))?;
    Ok(Body {
        action,
        namespace,
        args: Args(args),
    })
}

fn push_bounded(v: &mut String, s: &str) -> Result<(), SoapError> {
    if v.len() + s.len() > MAX_ARG_LEN {
        return Err(SoapError::Malformed("argument too long"));
    }
    v.push_str(s);
    Ok(())
}

const ENVELOPE_OPEN: &str = "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>";
const ENVELOPE_CLOSE: &str = "</s:Body></s:Envelope>\n";

/// A successful response: `<u:ActionResponse xmlns:u="namespace">` with
/// the out-arguments in SCPD order.
pub fn response(action: &str, namespace: &str, out: &[(&str, String)]) -> String {
    let mut s = String::with_capacity(
        ENVELOPE_OPEN.len()
            + 128
            + out
                .iter()
                .map(|(n, v)| 2 * n.len() + v.len() + 5)
                .sum::<usize>(),
    );
    s.push_str(ENVELOPE_OPEN);
    s.push_str("<u:");
    s.push_str(action);
    s.push_str("Response xmlns:u=\"");
    escape_into(&mut s, namespace);
    s.push_str("\">");
    for (name, value) in out {
        // The IGD:2 port listing is an XML document carried in a string
        // argument; clients (libminiupnpc among them) expect it verbatim in
        // CDATA. Its text is already escaped, so it can hold no `]]>`; what
        // is no XML character (XML 1.0 §2.2) is dropped here too, as CDATA
        // cannot escape it.
        if *name == "NewPortListing" && !value.contains("]]>") {
            s.push('<');
            s.push_str(name);
            s.push_str("><![CDATA[");
            chars_into(&mut s, value);
            s.push_str("]]></");
            s.push_str(name);
            s.push('>');
        } else {
            element(&mut s, name, value);
        }
    }
    s.push_str("</u:");
    s.push_str(action);
    s.push_str("Response>");
    s.push_str(ENVELOPE_CLOSE);
    s
}

/// A fault carrying a UPnP error (sent with HTTP 500).
pub fn fault(err: UpnpError) -> String {
    let mut s = String::with_capacity(512);
    s.push_str(ENVELOPE_OPEN);
    s.push_str("<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\">");
    element(&mut s, "errorCode", &err.code().to_string());
    element(&mut s, "errorDescription", err.description());
    s.push_str("</UPnPError></detail></s:Fault>");
    s.push_str(ENVELOPE_CLOSE);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: &str = r#"<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
<s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2">
<NewRemoteHost></NewRemoteHost><NewExternalPort>18080</NewExternalPort><NewProtocol>TCP</NewProtocol>
<NewInternalPort>8080</NewInternalPort><NewInternalClient>192.168.77.2</NewInternalClient>
<NewEnabled>1</NewEnabled><NewPortMappingDescription>a &amp; b &#x41;<![CDATA[<c>]]></NewPortMappingDescription>
<NewLeaseDuration>3600</NewLeaseDuration><NewEmpty/></u:AddPortMapping></s:Body></s:Envelope>"#;

    #[test]
    fn add_port_mapping_body() {
        let b = parse_body(ADD.as_bytes()).unwrap();
        assert_eq!(b.action, "AddPortMapping");
        assert_eq!(
            b.namespace,
            "urn:schemas-upnp-org:service:WANIPConnection:2"
        );
        assert_eq!(b.args.get("NewRemoteHost"), Some(""));
        assert_eq!(b.args.get("NewExternalPort"), Some("18080"));
        assert_eq!(b.args.get("NewPortMappingDescription"), Some("a & b A<c>"));
        assert_eq!(b.args.get("NewEmpty"), Some(""));
        assert_eq!(b.args.0.len(), 9);
    }

    #[test]
    fn soapaction_header() {
        let a = parse_soapaction(
            "\"urn:schemas-upnp-org:service:WANIPConnection:1#GetExternalIPAddress\"",
        )
        .unwrap();
        assert_eq!(a.service, "WANIPConnection");
        assert_eq!(a.version, 1);
        assert_eq!(a.action, "GetExternalIPAddress");
        let q = parse_soapaction("urn:schemas-upnp-org:control-1-0#QueryStateVariable").unwrap();
        assert_eq!((q.service.as_str(), q.version), ("", 0));
        assert!(parse_soapaction("\"").is_none());
        assert!(parse_soapaction("'").is_none());
        assert!(parse_soapaction("#").is_none());
        assert!(parse_soapaction("urn:x#A").is_none());
        assert!(parse_soapaction(&format!("\"{}#A\"", "a".repeat(300))).is_none());
        assert!(parse_soapaction("urn:schemas-upnp-org:service:WANIPConnection:999#A").is_none());
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let dtd = r#"<?xml version="1.0"?><!DOCTYPE lol [<!ENTITY lol "lol">]><s:Envelope xmlns:s="x"><s:Body><u:A xmlns:u="y"><X>&lol;</X></u:A></s:Body></s:Envelope>"#;
        assert_eq!(parse_body(dtd.as_bytes()), Err(SoapError::Forbidden("DTD")));
        let ent = r#"<s:Envelope xmlns:s="x"><s:Body><u:A xmlns:u="y"><X>&lol;</X></u:A></s:Body></s:Envelope>"#;
        assert_eq!(
            parse_body(ent.as_bytes()),
            Err(SoapError::Forbidden("entity reference"))
        );
        let deep = format!(
            "<s:Envelope><s:Body><u:A>{}{}</u:A></s:Body></s:Envelope>",
            "<x>".repeat(20),
            "</x>".repeat(20)
        );
        assert_eq!(
            parse_body(deep.as_bytes()),
            Err(SoapError::Malformed("nested too deeply"))
        );
        let truncated = &ADD[..ADD.len() - 30];
        assert!(parse_body(truncated.as_bytes()).is_err());
        assert!(parse_body(b"\xff\xfe").is_err());
        assert!(parse_body(b"").is_err());
        assert!(parse_body(b"<a></b>").is_err());
        let dup = "<s:Envelope><s:Body><u:A><X>1</X><X>2</X></u:A></s:Body></s:Envelope>";
        assert_eq!(
            parse_body(dup.as_bytes()),
            Err(SoapError::Malformed("duplicate argument"))
        );
        let many = format!(
            "<s:Envelope><s:Body><u:A>{}</u:A></s:Body></s:Envelope>",
            (0..600)
                .map(|i| format!("<!-- {i} -->"))
                .collect::<String>()
        );
        assert!(parse_body(many.as_bytes()).is_err());
        let long = format!(
            "<s:Envelope><s:Body><u:A><X>{}</X></u:A></s:Body></s:Envelope>",
            "a".repeat(MAX_ARG_LEN + 1)
        );
        assert_eq!(
            parse_body(long.as_bytes()),
            Err(SoapError::Malformed("argument too long"))
        );
        let pi = "<?xml-stylesheet x?><s:Envelope><s:Body><u:A/></s:Body></s:Envelope>";
        assert!(parse_body(pi.as_bytes()).is_err());
    }

    #[test]
    fn response_and_fault_text() {
        let r = response(
            "GetExternalIPAddress",
            "urn:schemas-upnp-org:service:WANIPConnection:1",
            &[("NewExternalIPAddress", "192.0.3.1".into())],
        );
        assert!(r.contains("<s:Body><u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:1\"><NewExternalIPAddress>192.0.3.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body>"));
        let f = fault(UpnpError::ConflictInMappingEntry);
        assert!(f.contains(
            "<errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription>"
        ));
        // a response can be read back by our own parser
        let back = parse_body(r.as_bytes()).unwrap();
        assert_eq!(back.action, "GetExternalIPAddressResponse");
        assert_eq!(back.args.get("NewExternalIPAddress"), Some("192.0.3.1"));
    }

    /// Whatever a value holds, the response is an XML document (XML 1.0
    /// §2.2: U+FFFE and U+FFFF are no characters), also the port listing
    /// carried in CDATA, and every value reads back without the dropped
    /// characters.
    #[test]
    fn responses_hold_only_xml_characters() {
        let bad = "a\u{FFFF}b\u{FFFE}c\u{1}\r\n";
        let listing = "<p:L><p:D>a\u{FFFF}b\u{1}c</p:D></p:L>".to_string();
        let r = response(
            "GetListOfPortMappings",
            "urn:schemas-upnp-org:service:WANIPConnection:2",
            &[("NewPortListing", listing), ("NewX", bad.into())],
        );
        let stray: Vec<char> = r
            .chars()
            .filter(|&c| matches!(c, '\u{0}'..='\u{8}' | '\u{B}' | '\u{C}' | '\u{E}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}'))
            .collect();
        assert!(stray.is_empty(), "{stray:?} in {r}");
        let back = parse_body(r.as_bytes()).unwrap();
        assert_eq!(back.args.get("NewX"), Some("abc\r\n"));
        assert_eq!(
            back.args.get("NewPortListing"),
            Some("<p:L><p:D>abc</p:D></p:L>")
        );
        assert!(r.contains("<NewPortListing><![CDATA[<p:L>"), "{r}");
    }
}
