//! `core::igd::handle`: a sequence of SOAP requests from a few LAN hosts
//! into one `Core` built from `Config::default()`, with `FixedFacts` (no
//! listeners), one LAN, a WAN that is up and a fixed `now`; each answer
//! rendered as the daemon renders it (`soap::response` or `soap::fault`),
//! and each turn committed to a `Recording` firewall.
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

#[path = "xml_check.rs"]
mod xml_check;

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use rupnpd::config::Config;
use rupnpd::core::Core;
use rupnpd::core::device::Device;
use rupnpd::core::facts::FixedFacts;
use rupnpd::core::firewall::Recording;
use rupnpd::core::igd::{Call, handle};
use rupnpd::core::lan::{Lan, Lans};
use rupnpd::core::pinhole::PinPolicy;
use rupnpd::core::policy::Policy;
use rupnpd::core::wan::{Link, Wan};
use rupnpd::proto::schema::{Service, ServiceKind};
use rupnpd::proto::soap::{fault, parse_body, response};
use rupnpd::proto::xml::is_char;
use xml_check::well_formed;

const NOW: u64 = 10_000_000;
static NO_FACTS: FixedFacts = FixedFacts::new();
/// Most requests read from one input.
const MAX_REQUESTS: usize = 32;

fuzz_target!(|data: &[u8]| {
    let config = Config::default();
    let mut core = Core::new(
        Policy::from_config(&config, Vec::new()),
        PinPolicy::from_config(&config),
    );
    let device = Device::new(
        &config,
        "00000000-0000-4000-8000-000000000000".into(),
        1,
        "fuzz".into(),
    );
    let lans = Lans::new(vec![Lan {
        dev: "br-lan".into(),
        addr: Ipv4Addr::new(192, 168, 1, 1),
        nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
        nets6: vec![("fd00::".parse().unwrap(), 64)],
        http_port: 5000,
    }]);
    let mut wan = Wan::new(None);
    wan.update(
        Link {
            dev: Some("wan".into()),
            addr: Some(Ipv4Addr::new(203, 0, 113, 1)),
            up: true,
        },
        None,
    );
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
        let call = Call {
            client,
            requester: IpAddr::V4(client),
            version,
            now: NOW,
            device: &device,
            lans: &lans,
            wan: &wan,
            facts: &NO_FACTS,
        };
        let text = match handle(&mut core, &call, kind, &req.action, &req.args) {
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
        core.commit_turn(&mut Recording::default(), NOW);
        core.take_events();
        assert!(core.table().len() <= config.max_mappings as usize);
    }
});
