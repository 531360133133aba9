//! Microbenchmarks of the hot codecs, the NAT-PMP/PCP handler and the
//! whole SOAP request path of the sans-IO core (request bytes in, response
//! bytes out): `cargo bench --bench codecs [FILTER]`.
//!
//! A custom harness (std only: `Instant` and `black_box`) so the crate
//! keeps no benchmarking dependency. Each case is calibrated to about
//! 100 ms per repetition and run 5 times; the table shows the best, the
//! median and the worst repetition in ns per operation. Inputs are the
//! bytes real clients send (upnpc / libminiupnpc, natpmpc, a PCP MAP).
//!
//! `cargo test --all-targets` runs this binary too, without `--bench`:
//! it then only calls every case a few times (a smoke test) and exits.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rupnpd::config::Config;
use rupnpd::core::Core;
use rupnpd::core::device::Device;
use rupnpd::core::facts::FixedFacts;
use rupnpd::core::firewall::Recording;
use rupnpd::core::lan::{Lan, Lans};
use rupnpd::core::natpmp_pcp::{self, Server, Settings};
use rupnpd::core::pinhole::PinPolicy;
use rupnpd::core::policy::Policy;
use rupnpd::core::wan::{Link, Wan};
use rupnpd::core::web::{Client, Inbound, Site, Web};
use rupnpd::proto::blob::{self, Value};
use rupnpd::proto::ubus::{Attr, Message, MsgType};
use rupnpd::proto::{Proto, http, natpmp, pcp, soap, ssdp};

/// A router with no listeners.
static NO_FACTS: FixedFacts = FixedFacts::new();

const REPS: usize = 5;
const TARGET: Duration = Duration::from_millis(100);

/// Which cases to run, and whether to measure them.
struct Opts {
    filter: Option<String>,
    /// False under `cargo test`: call each case a few times, print nothing.
    measure: bool,
}

/// Runs `f` in batches until one repetition takes about `TARGET`, then
/// reports ns/op over `REPS` repetitions.
fn bench(o: &Opts, name: &str, mut f: impl FnMut()) {
    if let Some(p) = &o.filter {
        if !name.contains(p.as_str()) {
            return;
        }
    }
    if !o.measure {
        for _ in 0..3 {
            f();
        }
        return;
    }
    // Calibration: double the batch until it takes ≥ 10 ms.
    let mut iters: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        let e = t.elapsed();
        if e >= Duration::from_millis(10) {
            let per = e.as_secs_f64() / iters as f64;
            iters = ((TARGET.as_secs_f64() / per) as u64).max(1);
            break;
        }
        iters *= 2;
    }
    let mut ns: Vec<f64> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_secs_f64() * 1e9 / iters as f64
        })
        .collect();
    ns.sort_by(f64::total_cmp);
    println!(
        "{name:<52} {:>10.0} {:>10.0} {:>10.0}   ({iters} iters × {REPS})",
        ns[0],
        ns[REPS / 2],
        ns[REPS - 1]
    );
}

/// The head of an AddPortMapping POST as libminiupnpc 2.2.4 sends it.
const SOAP_HEAD: &[u8] = b"POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\
User-Agent: Debian/12 UPnP/1.1 MiniUPnPc/2.2.4\r\nContent-Length: 594\r\nContent-Type: text/xml\r\n\
SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"\r\nConnection: Close\r\n\
Cache-Control: no-cache\r\nPragma: no-cache\r\n\r\n";

const SOAP_ADD: &[u8] = b"<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:AddPortMapping \
xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewRemoteHost></NewRemoteHost>\
<NewExternalPort>18080</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>8080</NewInternalPort>\
<NewInternalClient>192.168.77.2</NewInternalClient><NewEnabled>1</NewEnabled>\
<NewPortMappingDescription>libminiupnpc</NewPortMappingDescription><NewLeaseDuration>3600</NewLeaseDuration>\
</u:AddPortMapping></s:Body></s:Envelope>\r\n";

const MSEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: \
urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n";

const IGD2: &str = "urn:schemas-upnp-org:service:WANIPConnection:2";

fn natpmp_pcp_core() -> Core {
    let cfg = Config {
        max_mappings: 65_535,
        max_mappings_per_client: 65_535,
        ..Config::default()
    };
    Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    )
}

const PMP_CFG: Settings = Settings {
    natpmp: true,
    pcp: true,
    min_lifetime: 120,
    max_lifetime: 86_400,
    allow_third_party: false,
};

/// THIRD_PARTY is off: no LAN is consulted.
static NO_LANS: Lans = Lans::new(Vec::new());

fn natpmp_pcp_server(now: u64) -> Server<'static> {
    Server {
        settings: &PMP_CFG,
        external: Some(Ipv4Addr::new(192, 0, 3, 1)),
        epoch: 1000,
        lans: &NO_LANS,
        now,
        facts: &NO_FACTS,
    }
}

fn natpmp_map(proto: Proto, port: u16, lifetime: u32) -> Vec<u8> {
    natpmp::Request::Map(natpmp::MapRequest {
        proto,
        internal_port: port,
        suggested_external_port: port,
        lifetime,
    })
    .emit()
}

fn pcp_map(client: Ipv4Addr, port: u16, lifetime: u32) -> Vec<u8> {
    pcp::Request {
        lifetime,
        client_addr: pcp::mapped(client),
        body: pcp::Body::Map(pcp::Map {
            nonce: [7; 12],
            protocol: 6,
            internal_port: port,
            external_port: port,
            external_addr: Ipv6Addr::UNSPECIFIED,
        }),
        options: vec![],
    }
    .emit()
}

/// One datagram through the handler, then what the daemon does at the end
/// of the loop turn: the journal is committed and the events drained.
fn handle(core: &mut Core, src: SocketAddrV4, pkt: &[u8]) -> Option<natpmp_pcp::Reply> {
    let r = natpmp_pcp::handle(core, &natpmp_pcp_server(10_000), (*src.ip()).into(), pkt);
    black_box(core.commit_turn(&mut Recording::default(), 10_000));
    r
}

/// A core holding `n` NAT-PMP UDP mappings of another LAN host.
fn filled_core(n: u16) -> Core {
    let mut core = natpmp_pcp_core();
    let other = SocketAddrV4::new(Ipv4Addr::new(192, 168, 77, 3), 5350);
    for i in 0..n {
        let pkt = natpmp_map(Proto::Udp, 10_000 + i, 3600);
        let _ = handle(&mut core, other, &pkt);
    }
    core
}

/// A router answering HTTP: the core, the HTTP side and what they read,
/// as the daemon holds them (`src/daemon/frontends.rs`, `commit.rs`).
struct Router {
    core: Core,
    web: Web,
    device: Device,
    lans: Lans,
    wan: Wan,
    facts: FixedFacts,
}

impl Router {
    fn new() -> Router {
        let cfg = Config {
            max_mappings: 65_535,
            max_mappings_per_client: 65_535,
            ..Config::default()
        };
        let mut wan = Wan::new(None);
        wan.update(
            Link {
                dev: Some("eth1".into()),
                addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
                up: true,
            },
            None,
        );
        Router {
            core: Core::new(
                Policy::from_config(&cfg, vec![]),
                PinPolicy::from_config(&cfg),
            ),
            web: Web::new(32, 8),
            device: Device::new(
                &cfg,
                "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b".into(),
                1,
                "Linux/6.1 UPnP/1.1 rupnpd/0.1.0".into(),
            ),
            lans: Lans::new(vec![Lan {
                dev: "br-lan".into(),
                addr: Ipv4Addr::new(192, 168, 77, 1),
                nets: vec![(Ipv4Addr::new(192, 168, 77, 0), 24)],
                nets6: vec![],
                http_port: 5000,
            }]),
            wan,
            facts: FixedFacts::new(),
        }
    }

    /// One request from bytes to bytes, as the daemon answers it: the head
    /// parsed, the request handled, the loop turn committed (a firewall
    /// that records), the response chosen by the turn's outcome and
    /// written, the evented values checked.
    fn request(&mut self, raw: &[u8]) -> Vec<u8> {
        let Ok(Some((head, len))) = http::parse_head(raw) else {
            return Vec::new();
        };
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        let q = Inbound {
            client: Client {
                peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 2)), 40_000),
                local: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 77, 1)), 5000),
            },
            head: &head,
            body: raw.get(len..).unwrap_or_default(),
            now: 10_000,
            facts: &self.facts,
        };
        let reply = self.web.handle(&mut self.core, site, &q);
        let turn = self.core.commit_turn(&mut Recording::default(), 10_000);
        let out = reply.send(turn.refused()).emit(
            &self.device.server,
            "Wed, 25 Nov 2026 23:20:41 GMT",
            false,
        );
        self.web.track_evented(&self.core, site);
        out
    }
}

/// A SOAP POST of `action` to WANIPConnection:2 with `args`, shaped like
/// libminiupnpc's (the head of [`SOAP_HEAD`], its envelope).
fn soap_request(action: &str, args: &[(&str, &str)]) -> Vec<u8> {
    let mut body = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{IGD2}\">"
    );
    for (k, v) in args {
        body.push_str(&format!("<{k}>{v}</{k}>"));
    }
    body.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    format!(
        "POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\
         User-Agent: Debian/12 UPnP/1.1 MiniUPnPc/2.2.4\r\nContent-Length: {}\r\n\
         Content-Type: text/xml\r\nSOAPAction: \"{IGD2}#{action}\"\r\nConnection: Close\r\n\
         Cache-Control: no-cache\r\nPragma: no-cache\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn add_mapping(port: u16) -> Vec<u8> {
    let port = port.to_string();
    soap_request(
        "AddPortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", &port),
            ("NewProtocol", "TCP"),
            ("NewInternalPort", &port),
            ("NewInternalClient", "192.168.77.2"),
            ("NewEnabled", "1"),
            ("NewPortMappingDescription", "libminiupnpc"),
            ("NewLeaseDuration", "3600"),
        ],
    )
}

/// Whether a response is a SOAP success (a smoke check that the bench
/// measures the path it names, not an error reply).
fn soap_ok(resp: &[u8]) -> bool {
    resp.starts_with(b"HTTP/1.1 200 OK\r\n")
}

fn main() {
    // `cargo bench --bench codecs -- FILTER` (cargo adds `--bench`).
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts {
        filter: args.iter().find(|a| !a.starts_with('-')).cloned(),
        measure: args.iter().any(|a| a == "--bench"),
    };
    let f = &opts;
    if !f.measure {
        println!("codecs: smoke run (measure with `cargo bench --bench codecs`)");
    } else {
        println!(
            "{:<52} {:>10} {:>10} {:>10}",
            "case (ns/op: best, median, worst of 5)", "best", "median", "worst"
        );
    }

    // ---- HTTP
    bench(f, "http::parse_head (upnpc POST head)", || {
        black_box(http::parse_head(black_box(SOAP_HEAD)).ok());
    });

    // ---- SOAP
    bench(f, "soap::parse_body (AddPortMapping)", || {
        black_box(soap::parse_body(black_box(SOAP_ADD)).ok());
    });
    bench(f, "soap::parse_soapaction", || {
        black_box(soap::parse_soapaction(black_box(
            "\"urn:schemas-upnp-org:service:WANIPConnection:2#AddPortMapping\"",
        )));
    });
    bench(f, "soap::response (AddPortMapping, no out-args)", || {
        black_box(soap::response(
            black_box("AddPortMapping"),
            IGD2,
            black_box(&[]),
        ));
    });
    let entry: Vec<(&str, String)> = vec![
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", "18080".into()),
        ("NewProtocol", "TCP".into()),
        ("NewInternalPort", "8080".into()),
        ("NewInternalClient", "192.168.77.2".into()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", "libminiupnpc".into()),
        ("NewLeaseDuration", "3587".into()),
    ];
    bench(f, "soap::response (GetGenericPortMappingEntry)", || {
        black_box(soap::response(
            "GetGenericPortMappingEntry",
            IGD2,
            black_box(&entry),
        ));
    });

    // ---- SSDP
    let id = ssdp::Identity {
        uuid: "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b".into(),
        version: 2,
        pinholes: true,
    };
    let common = ssdp::Common {
        location: "http://192.168.77.1:5000/rootDesc.xml",
        host: ssdp::Group::V4.host(),
        server: "Linux/6.1 UPnP/1.1 rupnpd/0.1.0",
        boot_id: 1,
        config_id: 1,
        max_age: 1800,
    };
    let date = "Wed, 25 Nov 2026 23:20:41 GMT";
    bench(f, "ssdp::parse (M-SEARCH, IGD:1 search target)", || {
        black_box(ssdp::parse(black_box(MSEARCH)));
    });
    bench(f, "ssdp::answer + search_response (IGD:1 ST)", || {
        let rows = ssdp::answer(
            &id,
            black_box("urn:schemas-upnp-org:device:InternetGatewayDevice:1"),
        );
        for r in &rows {
            black_box(ssdp::search_response(&common, r, date));
        }
    });
    bench(
        f,
        "ssdp::answer + search_response (ssdp:all, 11 rows)",
        || {
            let rows = ssdp::answer(&id, black_box("ssdp:all"));
            for r in &rows {
                black_box(ssdp::search_response(&common, r, date));
            }
        },
    );

    // ---- NAT-PMP / PCP codecs
    let pmp_pkt = natpmp_map(Proto::Udp, 9000, 3600);
    bench(f, "natpmp::parse (map request)", || {
        black_box(natpmp::parse(black_box(&pmp_pkt)).ok());
    });
    let client = Ipv4Addr::new(192, 168, 77, 2);
    let pcp_pkt = pcp_map(client, 9000, 3600);
    bench(f, "pcp::parse (MAP request)", || {
        black_box(pcp::parse(black_box(&pcp_pkt)).ok());
    });

    // ---- core::natpmp_pcp::handle: request in, reply bytes out, table updated
    let src = SocketAddrV4::new(client, 40_000);
    let big = if f.measure { 10_000 } else { 100 };
    for n in [0u16, big] {
        let mut core = filled_core(n);
        let map = natpmp_map(Proto::Udp, 9000, 3600);
        let del = natpmp_map(Proto::Udp, 9000, 0);
        bench(
            f,
            &format!("natpmp_pcp::handle NAT-PMP map + delete ({n} in table)"),
            || {
                black_box(handle(&mut core, src, black_box(&map)));
                black_box(handle(&mut core, src, black_box(&del)));
            },
        );
        let _ = handle(&mut core, src, &map);
        bench(
            f,
            &format!("natpmp_pcp::handle NAT-PMP renewal ({n} in table)"),
            || {
                black_box(handle(&mut core, src, black_box(&map)));
            },
        );
        let pmap = pcp_map(client, 9100, 3600);
        let pdel = pcp_map(client, 9100, 0);
        bench(
            f,
            &format!("natpmp_pcp::handle PCP MAP + delete ({n} in table)"),
            || {
                black_box(handle(&mut core, src, black_box(&pmap)));
                black_box(handle(&mut core, src, black_box(&pdel)));
            },
        );
    }

    // ---- core::web: a whole SOAP request, bytes in, bytes out
    let add = add_mapping(18_080);
    let del = soap_request(
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "18080"),
            ("NewProtocol", "TCP"),
        ],
    );
    let get0 = soap_request(
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "0")],
    );
    for n in [0u16, if f.measure { 1000 } else { 10 }] {
        let mut r = Router::new();
        for i in 0..n {
            let filled = r.request(&add_mapping(20_000 + i));
            assert!(soap_ok(&filled), "filling the table failed");
        }
        let sample = (r.request(&add), r.request(&get0), r.request(&del));
        assert!(soap_ok(&sample.0) && soap_ok(&sample.1) && soap_ok(&sample.2));
        bench(
            f,
            &format!("web SOAP Add+DeletePortMapping ({n} in table)"),
            || {
                black_box(r.request(black_box(&add)));
                black_box(r.request(black_box(&del)));
            },
        );
        let _ = r.request(&add);
        bench(
            f,
            &format!("web SOAP AddPortMapping renewal ({n} in table)"),
            || {
                black_box(r.request(black_box(&add)));
            },
        );
        let last = soap_request(
            "GetGenericPortMappingEntry",
            &[("NewPortMappingIndex", &n.to_string())],
        );
        assert!(soap_ok(&r.request(&last)));
        bench(
            f,
            &format!("web SOAP GetGenericPortMappingEntry, last of {}", n + 1),
            || {
                black_box(r.request(black_box(&last)));
            },
        );
    }

    // ---- blobmsg (ubus)
    // An INVOKE as `ubus call rupnpd delete '{...}'` sends it, and a reply
    // the size of one `list` entry (a table of 14 fields, nested counters).
    let invoke = Message::new(MsgType::Invoke, 7, 0x1234_5678)
        .with(Attr::ObjId(0x9abc_def0))
        .with(Attr::Method("delete".into()))
        .with(Attr::Data(
            Value::table()
                .with("proto", "TCP")
                .with("external_port", 8080u32),
        ));
    let invoke_bytes = invoke.encode().unwrap_or_default();
    bench(f, "ubus::Message::decode (INVOKE delete)", || {
        black_box(Message::decode(black_box(&invoke_bytes)).is_ok());
    });
    let entry = Value::table()
        .with("proto", "TCP")
        .with("external_port", 8080u32)
        .with("internal_client", "192.168.1.100")
        .with("internal_port", 8080u32)
        .with("remote_host", "")
        .with("description", "Transmission at 8080")
        .with("origin", "UPnP IGDv2")
        .with("client", "192.168.1.100")
        .with("enabled", true)
        .with("expires_in", 3541u32)
        .with(
            "counters",
            Value::table()
                .with("packets", 123_456u64)
                .with("bytes", 98_765_432u64),
        )
        .with("lease_duration", 3600u32)
        .with("remote_port", 0u32)
        .with("hairpin", false);
    let reply = Value::table().with("mappings", Value::from(vec![entry]));
    bench(f, "blob::encode_blobmsg (one list entry)", || {
        black_box(
            blob::encode_blobmsg(black_box(&reply))
                .map(|v| v.len())
                .ok(),
        );
    });
    let reply_bytes = blob::encode_blobmsg(&reply).unwrap_or_default();
    bench(f, "blob::decode_blobmsg (one list entry)", || {
        black_box(blob::decode_blobmsg(black_box(&reply_bytes)).is_ok());
    });
}
