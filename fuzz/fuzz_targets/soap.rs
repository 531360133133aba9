//! `proto::soap::parse_soapaction` and `parse_body`.
//!
//! Input: the SOAPACTION header value, a line feed, then the request body
//! (the seeds are real upnpc requests in that form).
//!
//! Checks besides "no panic": the parsed body respects `MAX_ARGS` and
//! `MAX_ARG_LEN` and has no duplicate argument; a response built from the
//! parsed action and arguments with `soap::response` reads back through
//! `parse_body` with the same names and the same values less the
//! characters XML cannot hold (or, when its character references exceed
//! the request event budget, is at least well-formed), and holds only XML
//! characters (XML 1.0 §2.2), so any parser can read it.

#![no_main]

#[path = "xml_check.rs"]
mod xml_check;

use libfuzzer_sys::fuzz_target;
use rupnpd::proto::soap::{
    MAX_ARG_LEN, MAX_ARGS, SoapError, parse_body, parse_soapaction, response,
};
use rupnpd::proto::xml::is_char;
use xml_check::well_formed;

fuzz_target!(|data: &[u8]| {
    let (header, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(h) = std::str::from_utf8(header)
        && let Some(a) = parse_soapaction(h)
    {
        assert!(!a.action.is_empty());
        assert!(
            a.action
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        );
        assert!(a.namespace.len() <= 256);
    }
    let Ok(b) = parse_body(body) else {
        return;
    };
    let args = &b.args.0;
    assert!(args.len() <= MAX_ARGS);
    for (i, (name, value)) in args.iter().enumerate() {
        assert!(value.len() <= MAX_ARG_LEN, "{name}: {} bytes", value.len());
        assert!(args[..i].iter().all(|(n, _)| n != name), "duplicate {name}");
    }
    // Our own response to it must be readable by our own parser. The
    // daemon only ever answers for an action named like the SOAPACTION
    // header (ASCII letters, digits, `_`) with argument names from the
    // schema, so the round trip is only asked of such names (quick-xml
    // lets stranger element names through, which the daemon then refuses
    // as an unknown action).
    let upnp_name =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !upnp_name(&b.action) || !args.iter().all(|(n, _)| upnp_name(n)) {
        return;
    }
    let out: Vec<(&str, String)> = args.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
    let text = response(&b.action, &b.namespace, &out);
    assert!(text.chars().all(is_char), "not an XML character in {text:?}");
    let back = match parse_body(text.as_bytes()) {
        Ok(back) => back,
        // A request's event budget, not a fault of the document (each
        // character reference is an event): it must still be XML.
        Err(SoapError::Malformed("too many XML events")) => return well_formed(&text),
        Err(e) => panic!("own response does not parse: {e:?}\n{text}"),
    };
    assert_eq!(back.action, format!("{}Response", b.action));
    assert_eq!(back.args.0.len(), args.len());
    for ((n1, v1), (n2, v2)) in args.iter().zip(&back.args.0) {
        assert_eq!(n1, n2);
        let kept: String = v1.chars().filter(|&c| is_char(c)).collect();
        assert_eq!(&kept, v2, "value of {n1} changed in a round trip");
    }
});
