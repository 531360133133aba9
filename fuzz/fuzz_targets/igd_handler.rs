//! `core::igd::handle`: a sequence of SOAP requests from a few LAN hosts
//! into one `Core` built from `Config::default()`, with `NoListeners`, a
//! fixed WAN and `now`; each answer rendered as the daemon renders it
//! (`soap::response` or `soap::fault`).
//!
//! Input: records of `[flags][len_hi][len_lo][len bytes of SOAP body]`
//! (the last record takes what is left). Flags: bits 0–1 pick the client
//! 192.168.1.2–5, bit 2 asks for IGDv1 semantics, bits 4–5 pick the
//! service (WANIPConnection, WANCommonInterfaceConfig, Layer3Forwarding,
//! WANIPv6FirewallControl).
//!
//! Checks besides "no panic": every out-argument value holds only XML
//! characters (client text is stored sanitised, XML 1.0 §2.2); every
//! response and fault holds only XML characters and reads back through
//! `parse_body` with the same argument names and values; the port listing
//! of GetListOfPortMappings is itself a well-formed XML document of XML
//! characters; the table never exceeds the configured maximum.

#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use quick_xml::Reader;
use quick_xml::events::Event;
use rupnpd::config::Config;
use rupnpd::core::Core;
use rupnpd::core::igd::{Ctx, LinkCounters, WanInfo, handle};
use rupnpd::core::policy::{NoListeners, Policy};
use rupnpd::proto::schema::{Service, ServiceKind};
use rupnpd::proto::soap::{fault, parse_body, response};
use rupnpd::proto::xml::is_char;

const LAN: [(Ipv4Addr, u8); 1] = [(Ipv4Addr::new(192, 168, 1, 0), 24)];
const NOW: u64 = 10_000_000;
/// Most requests read from one input.
const MAX_REQUESTS: usize = 32;

/// The whole document parses (matching end tags, no stray markup).
fn well_formed(doc: &str) {
    let mut r = Reader::from_str(doc);
    r.config_mut().check_end_names = true;
    let mut depth = 0usize;
    loop {
        match r.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(_)) => depth += 1,
            Ok(Event::End(_)) => depth -= 1,
            Ok(_) => {}
            Err(e) => panic!("listing is not XML ({e}): {doc:?}"),
        }
    }
    assert_eq!(depth, 0, "listing is not closed: {doc:?}");
}

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut core = Core::new(Policy::from_config(&config, Vec::new()));
    let wan = WanInfo {
        external_ip: Some(Ipv4Addr::new(203, 0, 113, 1)),
        connected: true,
        uptime: 42,
        up_bps: 1000,
        down_bps: 2000,
        counters: Some(LinkCounters::default()),
    };
    let mut rest = data;
    for _ in 0..MAX_REQUESTS {
        let Some((&flags, tail)) = rest.split_first() else {
            break;
        };
        let (len, tail) = match tail {
            [hi, lo, t @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), t),
            t => (t.len(), &[][..]),
        };
        let (body, tail) = tail.split_at(len.min(tail.len()));
        rest = tail;
        let Ok(req) = parse_body(body) else {
            continue;
        };

        let client = Ipv4Addr::new(192, 168, 1, 2 + (flags & 3));
        let version = if flags & 4 != 0 { 1 } else { 2 };
        let kind = match (flags >> 4) & 3 {
            0 => ServiceKind::WanIpConnection,
            1 => ServiceKind::WanCommonInterfaceConfig,
            2 => ServiceKind::Layer3Forwarding,
            _ => ServiceKind::WanIpv6FirewallControl,
        };
        let service = Service::by_kind(kind);
        let ctx = Ctx {
            client,
            version,
            now: NOW,
            wan: &wan,
            env: &NoListeners,
            lan_nets: &LAN,
            upnp_max_lease: 0,
            conn_udn: "uuid:fuzz-2",
            requester: IpAddr::V4(client),
            lan_nets6: &[],
            pin_packets: None,
            outbound_timeout: (7440, 60),
        };
        let text = match handle(&mut core, &ctx, kind, &req.action, &req.args) {
            Ok(out) => {
                for (name, value) in &out {
                    assert!(value.chars().all(is_char), "{name} = {value:?}");
                    if *name == "NewPortListing" {
                        well_formed(value);
                    }
                }
                let ns = service.urn(service.version_in(version));
                let text = response(&req.action, &ns, &out);
                if req.action.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    let back = parse_body(text.as_bytes())
                        .unwrap_or_else(|e| panic!("response does not parse: {e:?}\n{text}"));
                    assert_eq!(back.action, format!("{}Response", req.action));
                    assert_eq!(back.args.0.len(), out.len());
                    for ((n1, v1), (n2, v2)) in out.iter().zip(&back.args.0) {
                        assert_eq!((*n1, v1), (n2.as_str(), v2), "{text}");
                    }
                }
                text
            }
            Err(e) => {
                let text = fault(e);
                parse_body(text.as_bytes())
                    .unwrap_or_else(|e| panic!("fault does not parse: {e:?}\n{text}"));
                text
            }
        };
        assert!(text.chars().all(is_char), "not an XML character in {text:?}");
        core.table.commit();
        core.take_events();
        assert!(core.table.len() <= config.max_mappings as usize);
    }
});
