//! The request path without sockets: an HTTP request in as a control
//! point writes it, the exact response out.

use std::net::{Ipv4Addr, SocketAddr};

use super::*;
use crate::config::Config;
use crate::core::facts::{FixedFacts, LinkCounters};
use crate::core::firewall::Recording;
use crate::core::lan::Lan;
use crate::core::pinhole::PinPolicy;
use crate::core::policy::Policy;
use crate::core::wan::Link;

const DATE: &str = "Thu, 01 Jan 1970 00:00:00 GMT";
const LAN: &str = "192.168.77.1:5000";
const LAN6: &str = "[fd77::1]:5000";
const ME: &str = "192.168.77.2";
const ME6: &str = "fd77::2";

/// A router: the core, the HTTP side, and what they read.
struct Router {
    core: Core,
    web: Web,
    device: Device,
    lans: Lans,
    wan: Wan,
    facts: FixedFacts,
    now: Millis,
    /// The events of every turn so far.
    events: Vec<crate::core::Event>,
}

/// One parsed SOAP reply: the out-arguments, or the UPnP error code.
type Outcome = Result<Vec<(String, String)>, u16>;

impl Router {
    fn new(cfg: Config) -> Router {
        let mut wan = Wan::new(cfg.external_ip);
        wan.update(
            Link {
                dev: Some("wan".into()),
                addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
                up: true,
            },
            cfg.external_ip,
        );
        Router {
            core: Core::new(
                Policy::from_config(&cfg, vec![]),
                PinPolicy::from_config(&cfg),
            ),
            web: Web::new(4, 2),
            device: Device::new(
                &cfg,
                "00000000-0000-4000-8000-000000000000".into(),
                7,
                "test".into(),
            ),
            lans: Lans::new(vec![Lan {
                dev: "br-lan".into(),
                addr: Ipv4Addr::new(192, 168, 77, 1),
                nets: vec![(Ipv4Addr::new(192, 168, 77, 0), 24)],
                nets6: vec![("fd77::".parse().unwrap(), 64)],
                http_port: 5000,
            }]),
            wan,
            facts: FixedFacts {
                counters: Some(LinkCounters {
                    tx_bytes: (1 << 32) + 5,
                    rx_bytes: 7,
                    tx_packets: 1,
                    rx_packets: 2,
                }),
                speed_bps: 100_000_000,
                uptime: Some(42),
                conntrack: Some((3600, 60)),
                ..FixedFacts::default()
            },
            now: 10_000,
            events: Vec::new(),
        }
    }

    fn igd2() -> Router {
        Router::new(Config::default())
    }

    /// `raw` from `from` to `local`; the response as the client reads it.
    fn send_to(&mut self, from: &str, local: &str, raw: &str) -> String {
        let (req, head) = crate::proto::http::parse_head(raw.as_bytes())
            .unwrap()
            .unwrap();
        let body = &raw.as_bytes()[head..];
        let peer = SocketAddr::new(from.parse().unwrap(), 40000);
        let client = Client {
            peer,
            local: local.parse().unwrap(),
        };
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        let q = Inbound {
            client,
            head: &req,
            body,
            now: self.now,
            facts: &self.facts,
        };
        let r = self.web.handle(&mut self.core, site, &q);
        // the turn ends: the firewall takes the changes
        let turn = self.core.commit_turn(&mut Recording::default(), self.now);
        self.events.extend(turn.events);
        self.web.track_evented(&self.core, site);
        let head_only = req.method() == Method::Head;
        String::from_utf8(r.ok.emit("test", DATE, head_only)).unwrap()
    }

    /// The event messages due at `now`.
    fn notifications(&mut self, now: Millis) -> Vec<Notify> {
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        self.web.notifications(&self.core, site, now)
    }

    fn send(&mut self, raw: &str) -> String {
        self.send_to(ME, LAN, raw)
    }

    /// A SOAP action of `service` (`WANIPConnection:2`) at `ctl`.
    fn soap_from(
        &mut self,
        from: &str,
        local: &str,
        service: &str,
        action: &str,
        args: &[(&str, &str)],
    ) -> String {
        let ctl = match service.split(':').next().unwrap_or("") {
            "WANIPConnection" => "/ctl/IPConn",
            "WANCommonInterfaceConfig" => "/ctl/CmnIfCfg",
            "Layer3Forwarding" => "/ctl/L3F",
            "WANIPv6FirewallControl" => "/ctl/IP6FCtl",
            other => panic!("no service {other}"),
        };
        let ns = format!("urn:schemas-upnp-org:service:{service}");
        let mut body = format!(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:{action} xmlns:u=\"{ns}\">"
        );
        for (k, v) in args {
            body.push_str(&format!("<{k}>{v}</{k}>"));
        }
        body.push_str(&format!("</u:{action}></s:Body></s:Envelope>"));
        let raw = format!(
            "POST {ctl} HTTP/1.1\r\nHost: {local}\r\nSOAPAction: \"{ns}#{action}\"\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send_to(from, local, &raw)
    }

    /// A SOAP action, its reply parsed.
    fn call(&mut self, service: &str, action: &str, args: &[(&str, &str)]) -> Outcome {
        parse_soap_reply(&self.soap_from(ME, LAN, service, action, args))
    }

    fn call6(&mut self, action: &str, args: &[(&str, &str)]) -> Outcome {
        parse_soap_reply(&self.soap_from(ME6, LAN6, "WANIPv6FirewallControl:1", action, args))
    }
}

fn parse_soap_reply(reply: &str) -> Outcome {
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    if let Some(code) = body.split_once("<errorCode>") {
        assert!(head.starts_with("HTTP/1.1 500 "), "{reply}");
        return Err(code.1.split('<').next().unwrap().parse().unwrap());
    }
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{reply}");
    let parsed = crate::proto::soap::parse_body(body.as_bytes()).unwrap();
    Ok(parsed.args.0)
}

fn ok(pairs: &[(&str, &str)]) -> Outcome {
    Ok(pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn add_args<'a>(eport: &'a str, client: &'a str, lease: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("NewRemoteHost", ""),
        ("NewExternalPort", eport),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", "8080"),
        ("NewInternalClient", client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "game"),
        ("NewLeaseDuration", lease),
    ]
}

fn key(eport: &str) -> [(&'static str, String); 3] {
    [
        ("NewRemoteHost", String::new()),
        ("NewExternalPort", eport.to_string()),
        ("NewProtocol", "TCP".to_string()),
    ]
}

fn refs<'a>(a: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    a.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

const IP2: &str = "WANIPConnection:2";
const IP1: &str = "WANIPConnection:1";

// --------------------------------------------------------------- routing

#[test]
fn the_description_names_the_lan_address_and_the_configuration() {
    let mut r = Router::igd2();
    let reply = r.send("GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\r\n");
    let desc = r.device.description(&r.lans, 0, None, 2);
    assert_eq!(
        reply,
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nServer: test\r\nDate: {DATE}\r\nConnection: keep-alive\r\n\r\n{desc}",
            desc.len()
        )
    );
    assert!(
        desc.contains(
            "<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>"
        )
    );
    assert!(desc.contains("<presentationURL>http://192.168.77.1/</presentationURL>"));
    assert!(desc.contains(&format!("configId=\"{}\"", r.device.config_id(&r.lans))));
    // HEAD: the same head, no body
    let head = r.send("HEAD /rootDesc.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\r\n");
    assert_eq!(head, reply[..reply.len() - desc.len()]);
    // a query string is ignored
    assert!(
        r.send("GET /WANIPCn.xml?x=1 HTTP/1.1\r\nHost: 192.168.77.1\r\n\r\n")
            .starts_with("HTTP/1.1 200 OK\r\n")
    );
}

#[test]
fn the_host_header_must_be_our_literal_address() {
    let mut r = Router::igd2();
    let refused = format!(
        "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 51\r\nServer: test\r\nDate: {DATE}\r\nConnection: close\r\n\r\n400 Bad Request: Host must be the router's address\n"
    );
    // DNS rebinding: a name that resolves to the router
    for host in [
        "Host: evil.example:5000\r\n",
        "Host: 192.168.77.1:5001\r\n",
        "Host: 192.168.77.9:5000\r\n",
        "",
    ] {
        let reply = r.send(&format!("GET /rootDesc.xml HTTP/1.1\r\n{host}\r\n"));
        assert_eq!(reply, refused, "{host:?}");
    }
    for host in ["192.168.77.1:5000", "192.168.77.1"] {
        let reply = r.send(&format!(
            "GET /rootDesc.xml HTTP/1.1\r\nHost: {host}\r\n\r\n"
        ));
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{host}");
    }
    // over IPv6 the Host is the bracketed literal of the address the
    // client reached, and nothing else
    for host in ["[fd77::1]:5000", "[fd77::1]"] {
        let reply = r.send_to(
            ME6,
            LAN6,
            &format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        );
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {reply}");
    }
    for host in [
        "fd77::1",
        "fd77::1:5000",
        "[fd77::1]:5001",
        "[fd77::9]:5000",
        "[fe80::1]:5000",
        "[fd77::1%25br-lan]:5000",
        "192.168.77.1:5000",
        "router.lan:5000",
    ] {
        let reply = r.send_to(
            ME6,
            LAN6,
            &format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {host}\r\n\r\n"),
        );
        assert_eq!(reply, refused, "{host}");
    }
}

#[test]
fn only_lan_hosts_are_served() {
    let mut r = Router::igd2();
    assert_eq!(
        r.send_to(
            "192.0.3.2",
            LAN,
            "GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n\r\n"
        ),
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 32\r\nServer: test\r\nDate: {DATE}\r\nConnection: close\r\n\r\n403 Forbidden: not a LAN client\n"
        )
    );
    assert!(
        r.send_to(
            "fd78::2",
            LAN6,
            "GET /rootDesc.xml HTTP/1.1\r\nHost: [fd77::1]:5000\r\n\r\n"
        )
        .starts_with("HTTP/1.1 403 ")
    );
}

#[test]
fn unknown_urls_and_methods() {
    let mut r = Router::igd2();
    let h = "Host: 192.168.77.1:5000\r\n";
    assert!(
        r.send(&format!("GET /nope.xml HTTP/1.1\r\n{h}\r\n"))
            .starts_with("HTTP/1.1 404 Not Found\r\n")
    );
    assert!(
        r.send(&format!(
            "POST /ctl/nope HTTP/1.1\r\n{h}Content-Length: 0\r\n\r\n"
        ))
        .contains("404 Not Found: no such control URL")
    );
    assert!(
        r.send(&format!("SUBSCRIBE /evt/nope HTTP/1.1\r\n{h}\r\n"))
            .contains("404 Not Found: no such event URL")
    );
    assert!(
        r.send(&format!("PUT /rootDesc.xml HTTP/1.1\r\n{h}\r\n"))
            .starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
    );
}

/// GENA from an IPv6 control point: its own address in brackets is the
/// only callback taken (CallStranger), events go there with a bracketed
/// HOST, and the description's URLs are IPv6 literals too.
#[test]
fn ipv6_control_points_subscribe_and_are_told() {
    let mut r = Router::igd2();
    let sub6 = |r: &mut Router, cb: &str| {
        r.send_to(
            ME6,
            LAN6,
            &format!(
                "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: [fd77::1]:5000\r\nCALLBACK: <{cb}>\r\nNT: upnp:event\r\n\r\n"
            ),
        )
    };
    for cb in [
        "http://[fd77::1]:4000/cb",
        "http://[fd77::3]:4000/cb",
        "http://[2001:db8:3::2]:4000/cb",
        "http://192.168.77.2:4000/cb",
        "http://[fd77::2%25br-lan]:4000/cb",
    ] {
        assert!(sub6(&mut r, cb).starts_with("HTTP/1.1 412 "), "{cb}");
    }
    let reply = sub6(&mut r, "http://[fd77::2]:4000/cb");
    assert!(
        reply.starts_with("HTTP/1.1 200 OK\r\nSID: uuid:"),
        "{reply}"
    );
    let n = r.notifications(r.now + gena::INITIAL_DELAY);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].to, "[fd77::2]:4000".parse().unwrap());
    let text = String::from_utf8(n[0].request.clone()).unwrap();
    assert!(
        text.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: [fd77::2]:4000\r\n"),
        "{text}"
    );
    let desc = r.send_to(
        ME6,
        LAN6,
        "GET /rootDesc.xml HTTP/1.1\r\nHost: [fd77::1]:5000\r\n\r\n",
    );
    assert!(
        desc.contains("<presentationURL>http://[fd77::1]/</presentationURL>"),
        "{desc}"
    );
}

// ------------------------------------------------------------ IGD version

#[test]
fn igdv1_by_configuration_or_user_agent() {
    let get = |r: &mut Router, ua: &str| {
        r.send(&format!(
            "GET /rootDesc.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n{ua}\r\n"
        ))
    };
    let mut r = Router::igd2();
    assert!(get(&mut r, "").contains("InternetGatewayDevice:2<"));
    assert!(get(&mut r, "User-Agent: upnpc/2.2.4\r\n").contains("InternetGatewayDevice:2<"));
    // Windows and Xbox fail on IGD:2 descriptions
    for ua in [
        "User-Agent: Microsoft-Windows/10.0 UPnP/1.0\r\n",
        "User-Agent: FDSSDP\r\n",
    ] {
        let d = get(&mut r, ua);
        assert!(
            d.contains("InternetGatewayDevice:1<") && !d.contains(":2<"),
            "{ua}"
        );
        assert!(!d.contains("WANIPv6FirewallControl"), "{ua}");
    }
    // the SCPD a Windows client reads has no IGD:2 actions
    let scpd = r.send("GET /WANIPCn.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nUser-Agent: Microsoft-Windows/10.0\r\n\r\n");
    assert!(!scpd.contains("AddAnyPortMapping"), "{scpd}");
    assert!(r
        .send("GET /WANIP6FC.xml HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nUser-Agent: Microsoft-Windows/10.0\r\n\r\n")
        .starts_with("HTTP/1.1 404 "));
    // `option igdv1 1`: every client sees IGD:1
    let mut v1 = Router::new(Config {
        igdv1: true,
        ..Config::default()
    });
    let d = get(&mut v1, "User-Agent: upnpc/2.2.4\r\n");
    assert!(
        d.contains("InternetGatewayDevice:1<") && !d.contains(":2<"),
        "{d}"
    );
}

// --------------------------------------------------------- SOAP dispatch

#[test]
fn get_external_ip_address() {
    let mut r = Router::igd2();
    let body = "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:GetExternalIPAddressResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"><NewExternalIPAddress>192.0.3.1</NewExternalIPAddress></u:GetExternalIPAddressResponse></s:Body></s:Envelope>\n";
    assert_eq!(
        r.soap_from(ME, LAN, IP2, "GetExternalIPAddress", &[]),
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nServer: test\r\nDate: {DATE}\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
    );
}

#[test]
fn a_fault_carries_the_upnp_error() {
    let mut r = Router::igd2();
    let body = "<?xml version=\"1.0\"?>\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns=\"urn:schemas-upnp-org:control-1-0\"><errorCode>401</errorCode><errorDescription>Invalid Action</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>\n";
    assert_eq!(
        r.soap_from(ME, LAN, IP2, "FlyToTheMoon", &[]),
        format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\nServer: test\r\nDate: {DATE}\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
    );
}

#[test]
fn malformed_requests() {
    let mut r = Router::igd2();
    let post = |r: &mut Router, soapaction: &str, body: &str| {
        r.send(&format!(
            "POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n{soapaction}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ))
    };
    let envelope = |action: &str| {
        format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:{action} xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"/></s:Body></s:Envelope>"
        )
    };
    let sa =
        "SOAPAction: \"urn:schemas-upnp-org:service:WANIPConnection:2#GetExternalIPAddress\"\r\n";
    // no SOAPAction, or one we cannot read: 401
    assert_eq!(
        parse_soap_reply(&post(&mut r, "", &envelope("GetExternalIPAddress"))),
        Err(401)
    );
    assert_eq!(
        parse_soap_reply(&post(
            &mut r,
            "SOAPAction: GetExternalIPAddress\r\n",
            &envelope("GetExternalIPAddress")
        )),
        Err(401)
    );
    // the body names another action than the header: 401
    assert_eq!(
        parse_soap_reply(&post(&mut r, sa, &envelope("GetStatusInfo"))),
        Err(401)
    );
    // not XML, or a DTD: 400 and the connection closes
    for bad in ["hello", "<!DOCTYPE x [<!ENTITY a \"b\">]><s:Envelope/>"] {
        let reply = post(&mut r, sa, bad);
        assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
        assert!(reply.contains("Connection: close\r\n"), "{reply}");
    }
    assert_eq!(
        parse_soap_reply(&post(&mut r, sa, &envelope("GetExternalIPAddress"))),
        ok(&[("NewExternalIPAddress", "192.0.3.1")])
    );
}

/// An IGD:2 action asked of the IGD:1 service does not exist there: 401,
/// whatever the arguments (the check once read `since > 2`, never true).
#[test]
fn igd2_actions_are_invalid_in_the_igd1_service() {
    let mut r = Router::igd2();
    assert_eq!(
        r.call(IP1, "AddAnyPortMapping", &add_args("18080", ME, "0")),
        Err(401)
    );
    let range = [
        ("NewStartPort", "0"),
        ("NewEndPort", "65535"),
        ("NewProtocol", "TCP"),
        ("NewManage", "0"),
    ];
    assert_eq!(r.call(IP1, "DeletePortMappingRange", &range), Err(401));
    let mut list = range.to_vec();
    list.push(("NewNumberOfPorts", "0"));
    assert_eq!(r.call(IP1, "GetListOfPortMappings", &list), Err(401));
    assert!(r.core.table().is_empty());
    // the same over :2
    assert_eq!(
        r.call(IP2, "AddAnyPortMapping", &add_args("18080", ME, "0")),
        ok(&[("NewReservedPort", "18080")])
    );
}

#[test]
fn missing_in_arguments_are_402() {
    let mut r = Router::igd2();
    let mut args = add_args("18080", ME, "0");
    args.remove(6);
    assert_eq!(r.call(IP2, "AddPortMapping", &args), Err(402));
    assert_eq!(r.call(IP2, "GetGenericPortMappingEntry", &[]), Err(402));
    assert_eq!(
        r.call("WANCommonInterfaceConfig:1", "GetActiveConnection", &[]),
        Err(402)
    );
    assert_eq!(
        r.call("Layer3Forwarding:1", "SetDefaultConnectionService", &[]),
        Err(402)
    );
    assert_eq!(r.call6("DeletePinhole", &[]), Err(402));
}

// -------------------------------------------------------- WANIPConnection

#[test]
fn connection_status_and_settings() {
    let mut r = Router::igd2();
    assert_eq!(
        r.call(IP2, "GetStatusInfo", &[]),
        ok(&[
            ("NewConnectionStatus", "Connected"),
            ("NewLastConnectionError", "ERROR_NONE"),
            ("NewUptime", "42"),
        ])
    );
    assert_eq!(
        r.call(IP2, "GetConnectionTypeInfo", &[]),
        ok(&[
            ("NewConnectionType", "IP_Routed"),
            ("NewPossibleConnectionTypes", "IP_Routed"),
        ])
    );
    assert_eq!(
        r.call(IP2, "GetNATRSIPStatus", &[]),
        ok(&[("NewRSIPAvailable", "0"), ("NewNATEnabled", "1")])
    );
    for (get, out) in [
        ("GetAutoDisconnectTime", "NewAutoDisconnectTime"),
        ("GetIdleDisconnectTime", "NewIdleDisconnectTime"),
        ("GetWarnDisconnectDelay", "NewWarnDisconnectDelay"),
    ] {
        assert_eq!(r.call(IP2, get, &[]), ok(&[(out, "0")]));
        let set = get.replacen("Get", "Set", 1);
        // only the current value (never) is accepted
        assert_eq!(r.call(IP2, &set, &[(out, "0")]), ok(&[]));
        assert_eq!(r.call(IP2, &set, &[(out, "60")]), Err(606));
    }
    assert_eq!(
        r.call(
            IP2,
            "SetConnectionType",
            &[("NewConnectionType", "IP_Routed")]
        ),
        Err(731)
    );
    // the WAN is the router's: a control point may not bring it down
    assert_eq!(r.call(IP2, "RequestConnection", &[]), ok(&[]));
    assert_eq!(r.call(IP2, "RequestTermination", &[]), Err(606));
    assert_eq!(r.call(IP2, "ForceTermination", &[]), Err(606));
    // a daemon's uptime instead of the system's
    let mut own = Router::new(Config {
        system_uptime: false,
        ..Config::default()
    });
    own.now = 90_500;
    assert_eq!(own.call(IP2, "GetStatusInfo", &[]).unwrap()[2].1, "90");
}

#[test]
fn add_get_list_delete() {
    let mut r = Router::igd2();
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18080", ME, "3600")),
        ok(&[])
    );
    let entry = [
        ("NewRemoteHost", ""),
        ("NewExternalPort", "18080"),
        ("NewProtocol", "TCP"),
        ("NewInternalPort", "8080"),
        ("NewInternalClient", ME),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", "game"),
        ("NewLeaseDuration", "3600"),
    ];
    assert_eq!(
        r.call(
            IP2,
            "GetGenericPortMappingEntry",
            &[("NewPortMappingIndex", "0")]
        ),
        ok(&entry)
    );
    assert_eq!(
        r.call(
            IP2,
            "GetGenericPortMappingEntry",
            &[("NewPortMappingIndex", "1")]
        ),
        Err(713)
    );
    assert_eq!(
        r.call(IP2, "GetSpecificPortMappingEntry", &refs(&key("18080"))),
        ok(&entry[3..])
    );
    assert_eq!(
        r.call(IP2, "GetSpecificPortMappingEntry", &refs(&key("18081"))),
        Err(714)
    );
    let list = [
        ("NewStartPort", "0"),
        ("NewEndPort", "65535"),
        ("NewProtocol", "TCP"),
        ("NewManage", "0"),
        ("NewNumberOfPorts", "0"),
    ];
    let listing = r.call(IP2, "GetListOfPortMappings", &list).unwrap();
    assert_eq!(listing[0].0, "NewPortListing");
    assert!(listing[0].1.contains("<p:PortMappingEntry><p:NewRemoteHost></p:NewRemoteHost><p:NewExternalPort>18080</p:NewExternalPort><p:NewProtocol>TCP</p:NewProtocol><p:NewInternalPort>8080</p:NewInternalPort><p:NewInternalClient>192.168.77.2</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled><p:NewDescription>game</p:NewDescription><p:NewLeaseTime>3600</p:NewLeaseTime></p:PortMappingEntry>"), "{}", listing[0].1);
    assert_eq!(
        r.call(IP2, "GetPortMappingNumberOfEntries", &[]),
        ok(&[("NewPortMappingNumberOfEntries", "1")])
    );
    assert_eq!(
        r.call(IP2, "DeletePortMapping", &refs(&key("18080"))),
        ok(&[])
    );
    assert_eq!(
        r.call(IP2, "DeletePortMapping", &refs(&key("18080"))),
        Err(714)
    );
    assert_eq!(r.call(IP2, "GetListOfPortMappings", &list), Err(730));
}

#[test]
fn mapping_refusals_and_their_codes() {
    let mut r = Router::igd2();
    // 716: wildcard external port; 732: wildcard internal port (IGD:2)
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("0", ME, "0")),
        Err(716)
    );
    let mut a = add_args("18080", ME, "0");
    a[3].1 = "0";
    assert_eq!(r.call(IP2, "AddPortMapping", &a), Err(732));
    assert_eq!(r.call(IP1, "AddPortMapping", &a), Err(402));
    // 402: a name for the client, a port out of range, a bad protocol
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18080", "host.lan", "0")),
        Err(402)
    );
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("70000", ME, "0")),
        Err(402)
    );
    let mut a = add_args("18080", ME, "0");
    a[2].1 = "SCTP";
    assert_eq!(r.call(IP2, "AddPortMapping", &a), Err(402));
    // 606 (IGD:2) / 718 (IGD:1): the rules deny low ports, secure mode
    // another host, and a host off the LAN
    for (eport, client) in [("80", ME), ("18080", "192.168.77.3"), ("18080", "10.0.0.1")] {
        assert_eq!(
            r.call(IP2, "AddPortMapping", &add_args(eport, client, "0")),
            Err(606)
        );
        assert_eq!(
            r.call(IP1, "AddPortMapping", &add_args(eport, client, "0")),
            Err(718)
        );
    }
    // 718: another client holds the port; an empty client is the caller
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18080", "", "0")),
        ok(&[])
    );
    let other = r.soap_from(
        "192.168.77.3",
        LAN,
        IP2,
        "AddPortMapping",
        &add_args("18080", "192.168.77.3", "0"),
    );
    assert_eq!(parse_soap_reply(&other), Err(718));
    // 606: deleting another client's mapping (714 in IGD:1)
    let del = r.soap_from(
        "192.168.77.3",
        LAN,
        IP2,
        "DeletePortMapping",
        &refs(&key("18080")),
    );
    assert_eq!(parse_soap_reply(&del), Err(606));
    let del = r.soap_from(
        "192.168.77.3",
        LAN,
        IP1,
        "DeletePortMapping",
        &refs(&key("18080")),
    );
    assert_eq!(parse_soap_reply(&del), Err(714));
    // 729: a local service listens on the port
    r.facts.listeners.push((crate::proto::Proto::Tcp, 18090));
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18090", ME, "0")),
        Err(729)
    );
    // 733 and 606 for ranges
    let range = |start: &'static str, end: &'static str, manage: &'static str| {
        [
            ("NewStartPort", start),
            ("NewEndPort", end),
            ("NewProtocol", "TCP"),
            ("NewManage", manage),
        ]
    };
    assert_eq!(
        r.call(IP2, "DeletePortMappingRange", &range("200", "100", "0")),
        Err(733)
    );
    assert_eq!(
        r.call(IP2, "DeletePortMappingRange", &range("100", "200", "0")),
        Err(730)
    );
    assert_eq!(
        r.call(IP2, "DeletePortMappingRange", &range("0", "65535", "1")),
        Err(606)
    );
    assert_eq!(
        r.call(IP2, "DeletePortMappingRange", &range("0", "65535", "0")),
        ok(&[])
    );
    assert!(r.core.table().is_empty());
}

#[test]
fn quotas_are_728_in_igd2_and_501_in_igd1() {
    let mut r = Router::new(Config {
        max_mappings_per_client: 1,
        ..Config::default()
    });
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18080", ME, "0")),
        ok(&[])
    );
    assert_eq!(
        r.call(IP2, "AddPortMapping", &add_args("18081", ME, "0")),
        Err(728)
    );
    assert_eq!(
        r.call(IP1, "AddPortMapping", &add_args("18081", ME, "0")),
        Err(501)
    );
}

#[test]
fn leases_per_version() {
    let mut r = Router::new(Config {
        upnp_max_lease: 0,
        ..Config::default()
    });
    r.call(IP1, "AddPortMapping", &add_args("5001", ME, "0"))
        .unwrap();
    r.call(IP2, "AddPortMapping", &add_args("5002", ME, "0"))
        .unwrap();
    r.call(IP2, "AddPortMapping", &add_args("5003", ME, "9999999"))
        .unwrap();
    let lease = |r: &mut Router, port: &str| {
        r.call(IP2, "GetSpecificPortMappingEntry", &refs(&key(port)))
            .unwrap()[4]
            .1
            .clone()
    };
    // IGD:1 lease 0 is permanent; IGD:2 turns 0 and longer leases into 7 days
    assert_eq!(lease(&mut r, "5001"), "0");
    assert_eq!(lease(&mut r, "5002"), "604800");
    assert_eq!(lease(&mut r, "5003"), "604800");
}

#[test]
fn query_state_variable() {
    let mut r = Router::igd2();
    let qsv = |r: &mut Router, service: &str, var: &str| {
        let body = format!(
            "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:QueryStateVariable xmlns:u=\"urn:schemas-upnp-org:control-1-0\"><u:varName>{var}</u:varName></u:QueryStateVariable></s:Body></s:Envelope>"
        );
        let raw = format!(
            "POST {service} HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nSOAPAction: \"urn:schemas-upnp-org:control-1-0#QueryStateVariable\"\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        parse_soap_reply(&r.send(&raw))
    };
    assert_eq!(
        qsv(&mut r, "/ctl/IPConn", "ConnectionStatus"),
        ok(&[("return", "Connected")])
    );
    assert_eq!(
        qsv(&mut r, "/ctl/IPConn", "ExternalIPAddress"),
        ok(&[("return", "192.0.3.1")])
    );
    assert_eq!(
        qsv(&mut r, "/ctl/IPConn", "PortMappingNumberOfEntries"),
        ok(&[("return", "0")])
    );
    assert_eq!(
        qsv(&mut r, "/ctl/IPConn", "SystemUpdateID"),
        ok(&[("return", "1")])
    );
    assert_eq!(qsv(&mut r, "/ctl/IPConn", "Colour"), Err(404));
    assert_eq!(qsv(&mut r, "/ctl/IPConn", ""), Err(404));
    assert_eq!(qsv(&mut r, "/ctl/L3F", "ConnectionStatus"), Err(401));
    // no varName at all: 402
    let body = "<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\"><s:Body><u:QueryStateVariable xmlns:u=\"urn:schemas-upnp-org:control-1-0\"/></s:Body></s:Envelope>";
    let raw = format!(
        "POST /ctl/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nSOAPAction: \"urn:schemas-upnp-org:control-1-0#QueryStateVariable\"\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_eq!(parse_soap_reply(&r.send(&raw)), Err(402));
}

// ---------------------------------------- WANCommonInterfaceConfig, L3F

#[test]
fn link_properties_and_counters() {
    let mut r = Router::igd2();
    let cmn = "WANCommonInterfaceConfig:1";
    assert_eq!(
        r.call(cmn, "GetCommonLinkProperties", &[]),
        ok(&[
            ("NewWANAccessType", "Ethernet"),
            ("NewLayer1UpstreamMaxBitRate", "100000000"),
            ("NewLayer1DownstreamMaxBitRate", "100000000"),
            ("NewPhysicalLinkStatus", "Up"),
        ])
    );
    // ui4 counters wrap at 2^32
    assert_eq!(
        r.call(cmn, "GetTotalBytesSent", &[]),
        ok(&[("NewTotalBytesSent", "5")])
    );
    assert_eq!(
        r.call(cmn, "GetTotalBytesReceived", &[]),
        ok(&[("NewTotalBytesReceived", "7")])
    );
    assert_eq!(
        r.call(cmn, "GetTotalPacketsSent", &[]),
        ok(&[("NewTotalPacketsSent", "1")])
    );
    assert_eq!(
        r.call(cmn, "GetTotalPacketsReceived", &[]),
        ok(&[("NewTotalPacketsReceived", "2")])
    );
    assert_eq!(
        r.call(cmn, "GetEnabledForInternet", &[]),
        ok(&[("NewEnabledForInternet", "1")])
    );
    assert_eq!(
        r.call(cmn, "GetWANAccessProvider", &[]),
        ok(&[("NewWANAccessProvider", "")])
    );
    assert_eq!(
        r.call(cmn, "GetMaximumActiveConnections", &[]),
        ok(&[("NewMaximumActiveConnections", "1")])
    );
    let conn = "uuid:00000000-0000-4000-8000-000000000002";
    assert_eq!(
        r.call(
            cmn,
            "GetActiveConnection",
            &[("NewActiveConnectionIndex", "0")]
        ),
        ok(&[
            ("NewActiveConnDeviceContainer", conn),
            (
                "NewActiveConnectionServiceID",
                "urn:upnp-org:serviceId:WANIPConn1"
            ),
        ])
    );
    assert_eq!(
        r.call(
            cmn,
            "GetActiveConnection",
            &[("NewActiveConnectionIndex", "1")]
        ),
        Err(713)
    );
    let l3 = "Layer3Forwarding:1";
    let service = format!("{conn}:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1");
    assert_eq!(
        r.call(l3, "GetDefaultConnectionService", &[]),
        ok(&[("NewDefaultConnectionService", service.as_str())])
    );
    assert_eq!(
        r.call(
            l3,
            "SetDefaultConnectionService",
            &[("NewDefaultConnectionService", service.as_str())]
        ),
        ok(&[])
    );
    assert_eq!(
        r.call(
            l3,
            "SetDefaultConnectionService",
            &[("NewDefaultConnectionService", "uuid:other")]
        ),
        Err(600)
    );
    // a link going down is seen at once
    r.wan.update(Link::default(), None);
    assert_eq!(
        r.call(cmn, "GetCommonLinkProperties", &[]).unwrap()[3].1,
        "Down"
    );
    assert_eq!(r.call(IP2, "RequestConnection", &[]), Err(606));
}

// --------------------------------------------------- WANIPv6FirewallControl

fn pinhole_args<'a>(
    client: &'a str,
    port: &'a str,
    proto: &'a str,
    lease: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("RemoteHost", ""),
        ("RemotePort", "0"),
        ("InternalClient", client),
        ("InternalPort", port),
        ("Protocol", proto),
        ("LeaseTime", lease),
    ]
}

#[test]
fn pinholes_add_update_count_delete() {
    let mut r = Router::igd2();
    assert_eq!(
        r.call6("GetFirewallStatus", &[]),
        ok(&[("FirewallEnabled", "1"), ("InboundPinholeAllowed", "1")])
    );
    let mut tuple = pinhole_args(ME6, "8080", "6", "3600");
    tuple.pop();
    assert_eq!(
        r.call6("GetOutboundPinholeTimeout", &tuple),
        ok(&[("OutboundPinholeTimeout", "3600")])
    );
    tuple[4].1 = "17";
    assert_eq!(
        r.call6("GetOutboundPinholeTimeout", &tuple),
        ok(&[("OutboundPinholeTimeout", "60")])
    );
    assert_eq!(
        r.call6("AddPinhole", &pinhole_args(ME6, "8080", "6", "3600")),
        ok(&[("UniqueID", "1")])
    );
    // the same traffic again: the same pinhole, extended
    assert_eq!(
        r.call6("AddPinhole", &pinhole_args(ME6, "8080", "6", "7200")),
        ok(&[("UniqueID", "1")])
    );
    assert_eq!(
        r.call6(
            "UpdatePinhole",
            &[("UniqueID", "1"), ("NewLeaseTime", "60")]
        ),
        ok(&[])
    );
    let id = [("UniqueID", "1")];
    assert_eq!(
        r.call6("GetPinholePackets", &id),
        ok(&[("PinholePackets", "0")])
    );
    assert_eq!(r.call6("CheckPinholeWorking", &id), Err(709));
    r.facts.pinhole_packets = Some((1 << 32) + 3);
    assert_eq!(
        r.call6("GetPinholePackets", &id),
        ok(&[("PinholePackets", "3")])
    );
    assert_eq!(
        r.call6("CheckPinholeWorking", &id),
        ok(&[("IsWorking", "1")])
    );
    assert_eq!(r.call6("DeletePinhole", &id), ok(&[]));
    assert_eq!(r.call6("DeletePinhole", &id), Err(704));
    assert_eq!(
        r.call6(
            "UpdatePinhole",
            &[("UniqueID", "1"), ("NewLeaseTime", "60")]
        ),
        Err(704)
    );
    assert_eq!(r.call6("GetPinholePackets", &id), Err(704));
    // every change was an event of the turn that made it
    use crate::core::{EventKind as E, Subject};
    let kinds: Vec<_> = r
        .events
        .iter()
        .map(|e| (e.kind, matches!(e.subject, Subject::Pinhole(_))))
        .collect();
    assert_eq!(
        kinds,
        [
            (E::Add, true),
            (E::Renew, true),
            (E::Renew, true),
            (E::Delete, true)
        ]
    );
    assert_eq!(r.events[3].reason, "deleted by fd77::2");
}

#[test]
fn pinhole_refusals_and_their_codes() {
    let mut r = Router::igd2();
    let add = |r: &mut Router, args: &[(&str, &str)]| r.call6("AddPinhole", args);
    // 708: the internal client may not be a wildcard
    assert_eq!(add(&mut r, &pinhole_args("", "8080", "6", "60")), Err(708));
    // 706, 707, 705: internal port wildcard, protocol wildcard, SCTP
    assert_eq!(add(&mut r, &pinhole_args(ME6, "0", "6", "60")), Err(706));
    assert_eq!(
        add(&mut r, &pinhole_args(ME6, "8080", "65535", "60")),
        Err(707)
    );
    assert_eq!(
        add(&mut r, &pinhole_args(ME6, "8080", "132", "60")),
        Err(705)
    );
    // 402: a lease outside 1..=86400
    assert_eq!(add(&mut r, &pinhole_args(ME6, "8080", "6", "0")), Err(402));
    assert_eq!(
        add(&mut r, &pinhole_args(ME6, "8080", "6", "86401")),
        Err(402)
    );
    // 606: off the LAN, another host in secure mode, a denied port
    assert_eq!(
        add(&mut r, &pinhole_args("2001:db8::9", "8080", "6", "60")),
        Err(606)
    );
    assert_eq!(
        add(&mut r, &pinhole_args("fd77::3", "8080", "6", "60")),
        Err(606)
    );
    assert_eq!(add(&mut r, &pinhole_args(ME6, "22", "6", "60")), Err(606));
    // over IPv4, a host's own IPv6 address is known through the neighbours
    let from4 = |r: &mut Router| {
        parse_soap_reply(&r.soap_from(
            ME,
            LAN,
            "WANIPv6FirewallControl:1",
            "AddPinhole",
            &pinhole_args(ME6, "8080", "6", "60"),
        ))
    };
    assert_eq!(from4(&mut r), Err(606));
    r.facts
        .same_hosts
        .push((ME.parse().unwrap(), ME6.parse().unwrap()));
    assert_eq!(from4(&mut r), ok(&[("UniqueID", "1")]));
    // 701: no room (max_mappings_per_client pinholes per client)
    let mut full = Router::new(Config {
        max_mappings_per_client: 1,
        ..Config::default()
    });
    assert_eq!(
        full.call6("AddPinhole", &pinhole_args(ME6, "8080", "6", "60")),
        ok(&[("UniqueID", "1")])
    );
    assert_eq!(
        full.call6("AddPinhole", &pinhole_args(ME6, "8081", "6", "60")),
        Err(701)
    );
    // 703: pinholes denied (the service switched off)
    let mut off = Router::new(Config {
        enabled: false,
        ..Config::default()
    });
    assert_eq!(
        off.call6("GetFirewallStatus", &[]),
        ok(&[("FirewallEnabled", "1"), ("InboundPinholeAllowed", "0")])
    );
    assert_eq!(
        off.call6("AddPinhole", &pinhole_args(ME6, "8080", "6", "60")),
        Err(703)
    );
    // without ipv6_pinholes the service is not there
    let mut none = Router::new(Config {
        ipv6_pinholes: false,
        ..Config::default()
    });
    let reply = none.soap_from(
        ME6,
        LAN6,
        "WANIPv6FirewallControl:1",
        "GetFirewallStatus",
        &[],
    );
    assert!(reply.starts_with("HTTP/1.1 404 "), "{reply}");
}

// ------------------------------------------------------------------ GENA

fn subscribe(r: &mut Router, headers: &str) -> String {
    r.send(&format!(
        "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\n{headers}\r\n"
    ))
}

#[test]
fn subscribe_renew_cancel() {
    let mut r = Router::igd2();
    let reply = subscribe(
        &mut r,
        "CALLBACK: <http://192.168.77.2:4000/cb>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\n",
    );
    let sid = "uuid:00000000-0000-4000-8000-000000000001";
    assert_eq!(
        reply,
        format!(
            "HTTP/1.1 200 OK\r\nSID: {sid}\r\nTIMEOUT: Second-1800\r\nContent-Length: 0\r\nServer: test\r\nDate: {DATE}\r\nConnection: keep-alive\r\n\r\n"
        )
    );
    // renewal: the same SID, the granted time clamped to a day
    let reply = subscribe(&mut r, &format!("SID: {sid}\r\nTIMEOUT: Second-999999\r\n"));
    assert!(
        reply.starts_with(&format!(
            "HTTP/1.1 200 OK\r\nSID: {sid}\r\nTIMEOUT: Second-86400\r\n"
        )),
        "{reply}"
    );
    // cancel, then nothing is left to cancel or renew: 412
    let cancel = format!(
        "UNSUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: 192.168.77.1:5000\r\nSID: {sid}\r\n\r\n"
    );
    assert!(r.send(&cancel).starts_with("HTTP/1.1 200 OK\r\n"));
    let precondition = format!(
        "HTTP/1.1 412 Precondition Failed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 46\r\nServer: test\r\nDate: {DATE}\r\nConnection: keep-alive\r\n\r\n412 Precondition Failed: subscription refused\n"
    );
    assert_eq!(r.send(&cancel), precondition);
    assert_eq!(subscribe(&mut r, &format!("SID: {sid}\r\n")), precondition);
    assert_eq!(r.web.subscribers(), 0);
}

#[test]
fn subscriptions_refused() {
    let mut r = Router::igd2();
    // 412: no NT, no CALLBACK, or a callback that is not the subscriber
    // (CallStranger, CVE-2020-12695)
    for h in [
        "CALLBACK: <http://192.168.77.2/cb>\r\n",
        "NT: upnp:event\r\n",
        "CALLBACK: <http://192.0.3.2/cb>\r\nNT: upnp:event\r\n",
        "CALLBACK: <http://192.168.77.3/cb>\r\nNT: upnp:event\r\n",
    ] {
        assert!(subscribe(&mut r, h).starts_with("HTTP/1.1 412 "), "{h:?}");
    }
    // 400: a SID with a CALLBACK
    let reply = subscribe(
        &mut r,
        "SID: uuid:x\r\nCALLBACK: <http://192.168.77.2/>\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply}");
    // 503: two subscriptions per client
    let ok_h = "CALLBACK: <http://192.168.77.2/cb>\r\nNT: upnp:event\r\n";
    assert!(subscribe(&mut r, ok_h).starts_with("HTTP/1.1 200 "));
    assert!(subscribe(&mut r, ok_h).starts_with("HTTP/1.1 200 "));
    assert!(subscribe(&mut r, ok_h).starts_with("HTTP/1.1 503 "));
}

#[test]
fn events_follow_the_table() {
    let mut r = Router::igd2();
    subscribe(
        &mut r,
        "CALLBACK: <http://192.168.77.2:4000/cb>\r\nNT: upnp:event\r\n",
    );
    // the initial event, once the subscriber knows its SID
    assert!(r.notifications(r.now).is_empty());
    let now = r.now + gena::INITIAL_DELAY;
    let n = r.notifications(now);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].to, "192.168.77.2:4000".parse().unwrap());
    let text = String::from_utf8(n[0].request.clone()).unwrap();
    assert!(
        text.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: 192.168.77.2:4000\r\n"),
        "{text}"
    );
    assert!(text.contains("SEQ: 0\r\n"), "{text}");
    assert!(
        text.contains(
            "<e:property><PortMappingNumberOfEntries>0</PortMappingNumberOfEntries></e:property>"
        ),
        "{text}"
    );
    r.web.delivered(&n[0].sid, true);
    // nothing changed: nothing owed
    assert!(r.notifications(now).is_empty());
    // a mapping changes two evented values: one message with both
    r.call(IP2, "AddPortMapping", &add_args("18080", ME, "0"))
        .unwrap();
    let n = r.notifications(now);
    assert_eq!(n.len(), 1);
    let text = String::from_utf8(n[0].request.clone()).unwrap();
    assert!(text.contains("SEQ: 1\r\n"), "{text}");
    assert!(
        text.contains("<PortMappingNumberOfEntries>1</PortMappingNumberOfEntries>"),
        "{text}"
    );
    assert!(
        text.contains("<SystemUpdateID>2</SystemUpdateID>"),
        "{text}"
    );
}
