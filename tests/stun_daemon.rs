//! The daemon with `use_stun` behind a carrier's NAT: the carrier bed of
//! `tests/common/carrier.rs` (a real carrier NAT in nftables, real coturn
//! on the public segment, fw4's recorded ruleset on the router), driven by
//! the real clients (upnpc, natpmpc), the PCP client of
//! `tests/support/pcp_client.rs`, a GENA subscriber and the ubus broker of
//! `tests/support`, with traffic from a WAN host on the public segment
//! through both NATs.

mod common;
mod support;

use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::carrier::{
    CARRIER_PUBLIC_IP, CARRIER_PUBLIC2_IP, CGN_WAN_IP, Carrier, CarrierBed, Server,
};
use common::*;
use support::pcp_client::{self, Request, Retransmit, TCP, result};
use support::ubusd::{Broker, Peer, socket_path};
use support::wire::{Value, json};

/// The permission rules of the default configuration (high ports only).
const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

/// STUN against the bed's server, by address (resolved off the loop like
/// a name, at once).
const STUN: &str = "\toption use_stun '1'\n\toption stun_host '203.0.113.2'\n";

/// A router behind the carrier: the carrier bed, fw4 on the router, the
/// daemon with `options`, and a ubus broker it registers with.
struct Router {
    cb: CarrierBed,
    sock: PathBuf,
    _broker: Broker,
    dir: PathBuf,
}

impl Router {
    fn start(name: &str, carrier: Carrier, server: Server, options: &str) -> Router {
        Router::start_with(CarrierBed::new(name, carrier, server), name, options)
    }

    fn start_with(mut cb: CarrierBed, name: &str, options: &str) -> Router {
        cb.bed.fw4_start();
        let sock = socket_path(name);
        let broker = Broker::start(&sock);
        let dir = cb.bed.config(&upnpd(&cb.bed, options));
        let (d, s) = (
            dir.to_str().unwrap().to_string(),
            sock.to_str().unwrap().to_string(),
        );
        cb.bed.start(&["--config-dir", &d, "--ubus-socket", &s]);
        let r = Router {
            cb,
            sock,
            _broker: broker,
            dir,
        };
        r.wait_status("the daemon on ubus", |s| s.get("version").is_some());
        r
    }

    fn bed(&self) -> &Bed {
        &self.cb.bed
    }

    /// Writes a new configuration and has the daemon read it (SIGHUP).
    fn reconfigure(&self, options: &str) {
        std::fs::write(self.dir.join("upnpd"), upnpd(self.bed(), options)).unwrap();
        self.bed().signal("HUP");
    }

    /// `ubus call rupnpd status`.
    fn status(&self) -> Value {
        let sock = self.sock.clone();
        rt().block_on(async move {
            let p = Peer::connect(&sock).await;
            match p.call("rupnpd", "status", json("{}")).await {
                Ok(mut v) => v.pop().unwrap_or_else(Value::table),
                Err(_) => Value::table(),
            }
        })
    }

    /// Waits until `status` satisfies `done` (polling the status, at most
    /// 60 s: the longest STUN run of the default schedule is 39.5 s).
    fn wait_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let t = Instant::now();
        loop {
            let s = self.status();
            if done(&s) {
                return s;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; status: {s}\nlog:\n{}",
                self.bed().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn upnpd(bed: &Bed, options: &str) -> String {
    format!(
        "config upnpd 'config'\n\toption internal_iface '{}'\n\toption external_iface '{}'\n\
\toption upnp_lease_file '{}'\n{options}\n{RULES}",
        bed.lan_dev,
        bed.wan_dev,
        bed.dir.join("leases").display()
    )
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    let mut v = v;
    for k in path {
        v = v.get(k).unwrap_or_else(|| panic!("no {path:?} in {v}"));
    }
    v.as_str().unwrap_or_else(|| panic!("{path:?} is not text"))
}

fn number(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for k in path {
        v = v.get(k).unwrap_or_else(|| panic!("no {path:?} in {v}"));
    }
    v.as_i64()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or_else(|| panic!("{path:?} is not a number"))
}

fn reachability(s: &Value) -> &str {
    s.get("stun")
        .and_then(|t| t.get("reachability"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn natpmp_server() -> SocketAddr {
    SocketAddr::from((LAN_IP.parse::<Ipv4Addr>().unwrap(), 5351))
}

fn retransmit() -> Retransmit {
    Retransmit {
        initial: Duration::from_millis(250),
        max_rt: Duration::from_secs(2),
        max_count: 6,
    }
}

/// A raw NAT-PMP TCP mapping request (RFC 6886 §3.3); the answer's
/// result code.
fn natpmp_tcp_map(bed: &Bed, iport: u16, eport: u16) -> u16 {
    let mut req = vec![0, 2, 0, 0];
    req.extend_from_slice(&iport.to_be_bytes());
    req.extend_from_slice(&eport.to_be_bytes());
    req.extend_from_slice(&600u32.to_be_bytes());
    let sock = udp_in(&bed.c, CLIENT_IP);
    let b = pcp_client::exchange_raw(&sock, natpmp_server(), &req, retransmit(), |_| true)
        .expect("a NAT-PMP answer");
    assert_eq!((b.len(), b[1]), (16, 130), "{b:?}");
    u16::from_be_bytes([b[2], b[3]])
}

/// A PCP MAP of TCP `iport` from the LAN host: (result, lifetime).
fn pcp_map(bed: &Bed, nonce: u8, iport: u16) -> (u8, u32) {
    let r = pcp_map_response(bed, nonce, iport);
    (r.result, r.lifetime)
}

fn pcp_map_response(bed: &Bed, nonce: u8, iport: u16) -> pcp_client::Response {
    let sock = udp_in(&bed.c, CLIENT_IP);
    let client: std::net::Ipv4Addr = CLIENT_IP.parse().unwrap();
    let req = Request::map(client, [nonce; 12], TCP, iport, 600);
    pcp_client::exchange(&sock, natpmp_server(), &req, retransmit())
        .unwrap_or_else(|e| panic!("PCP: {e}\nlog:\n{}", bed.log()))
}

fn add_port_mapping(bed: &Bed, eport: &str, iport: &str) -> (u16, String) {
    bed.soap(
        CLIENT_IP,
        "WANIPConnection:1",
        "AddPortMapping",
        &add_args(eport, "TCP", iport, CLIENT_IP, "3600", "stun test"),
    )
}

fn external_ip_address(bed: &Bed) -> String {
    let (code, body) = bed.soap(CLIENT_IP, "WANIPConnection:1", "GetExternalIPAddress", &[]);
    assert_eq!(code, 200, "{body}");
    element(&body, "NewExternalIPAddress")
        .unwrap_or_else(|| panic!("{body}"))
        .to_string()
}

/// Endpoint-independent carrier, RFC 5780 server: the public address is
/// what every protocol and `status` report, the path is found open
/// (through fw4's input chain, which the `upnp_stun` set opens for the
/// answers), and a mapping made with upnpc is reached from the public
/// segment through the carrier's forward and the router's mapping.
#[test]
fn open_carrier_reports_the_public_address_and_mappings_work_through_both_nats() {
    let cb = CarrierBed::new("sdopen", Carrier::EndpointIndependent, Server::Coturn);
    cb.count_stun();
    let r = Router::start_with(cb, "sdopen", STUN);
    let bed = r.bed();
    let s = r.wait_status("the open verdict", |s| {
        reachability(s) == "endpoint-independent"
    });
    assert_eq!(text(&s, &["external_ip"]), CARRIER_PUBLIC_IP, "{s}");
    assert_eq!(text(&s, &["wan_ip"]), CGN_WAN_IP);
    assert_eq!(text(&s, &["new_mappings"]), "allowed");
    assert_eq!(text(&s, &["stun", "public_ip"]), CARRIER_PUBLIC_IP);
    assert_eq!(text(&s, &["stun", "server"]), "203.0.113.2:3478");
    assert!(
        text(&s, &["stun", "reason"]).contains("lets unsolicited traffic through"),
        "{s}"
    );
    // step 1, step 2 and RFC 5780's test II, each answered once: counted
    // by the client and on the carrier's wire alike
    assert_eq!(number(&s, &["stun", "sent"]), 3, "{s}");
    assert_eq!(r.cb.stun_datagrams(), 3);

    let out = bed.upnpc(&["-s"]);
    assert!(
        out.contains(&format!("ExternalIPAddress = {CARRIER_PUBLIC_IP}")),
        "{out}"
    );
    let out = bed.natpmpc(&[]);
    assert!(
        out.contains(&format!("Public IP address : {CARRIER_PUBLIC_IP}")),
        "{out}"
    );
    let m = pcp_map_response(bed, 1, 9100);
    assert_eq!(m.result, result::SUCCESS);
    assert_eq!(m.external_v4(), Some(CARRIER_PUBLIC_IP.parse().unwrap()));

    let out = bed.upnpc(&["-a", CLIENT_IP, "8080", "18080", "TCP"]);
    assert!(out.contains("is redirected to internal"), "{out}");
    assert!(
        r.cb.tcp_from_public(18080, 8080),
        "a WAN host reaches the LAN service through both NATs"
    );
    // a LAN host reaches it through the public address too (hairpin)
    assert!(
        bed.tcp_from_source(&bed.c, CLIENT2_IP, CARRIER_PUBLIC_IP, 18080, 8080),
        "hairpin through the public address"
    );

    // fw4 reloads: its input rule for the STUN answers comes back with it
    // and the set keeps the sockets' ports, so a check finds the path open
    // again with the same three datagrams, each answer accepted there.
    bed.fw4_reload();
    assert_eq!(stun_answers_accepted(bed), 0);
    bed.signal("USR1");
    let t = Instant::now();
    while stun_answers_accepted(bed) < 3 {
        assert!(t.elapsed() < Duration::from_secs(20), "{}", bed.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = r.wait_status("the second check", |s| number(s, &["stun", "sent"]) == 6);
    assert_eq!(reachability(&s), "endpoint-independent", "{s}");
    assert_eq!(r.cb.stun_datagrams(), 6);
    let log = bed.log();
    assert_eq!(
        log.matches(&format!("STUN: public address {CARRIER_PUBLIC_IP}"))
            .count(),
        1,
        "{log}"
    );
}

/// Datagrams fw4's input chain accepted with rupnpd's rule for the STUN
/// answers (`chain-pre/input/20-rupnpd.nft`).
fn stun_answers_accepted(bed: &Bed) -> u64 {
    let text = bed.nft("list chain inet fw4 input");
    let line = text
        .lines()
        .find(|l| l.contains("rupnpd: answers to the STUN client"))
        .unwrap_or_else(|| panic!("no STUN rule in fw4's input chain:\n{text}"));
    line.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {line}"))
}

/// A symmetric carrier NAT (random ports, only replies get in): STUN
/// reports it filtered, and new mappings are refused with each
/// protocol's code (UPnP 501, NAT-PMP 3, PCP NETWORK_FAILURE with its
/// short lifetime) and a log line saying why; `stun_allow_filtered` gives
/// them out again.
#[test]
fn filtered_carrier_refuses_new_mappings_unless_allow_filtered() {
    let r = Router::start("sdfilt", Carrier::Symmetric, Server::Coturn, STUN);
    let bed = r.bed();
    let s = r.wait_status("the filtered verdict", |s| {
        reachability(s) == "address-and-port-dependent"
    });
    assert_eq!(text(&s, &["external_ip"]), CARRIER_PUBLIC_IP, "{s}");
    assert_eq!(text(&s, &["new_mappings"]), "refused", "{s}");
    assert!(
        text(&s, &["new_mappings_reason"]).contains("stun_allow_filtered"),
        "{s}"
    );
    assert!(
        text(&s, &["stun", "reason"]).contains("cannot be reached from the Internet"),
        "{s}"
    );

    let (code, body) = add_port_mapping(bed, "18080", "8080");
    assert_eq!((code, fault_code(&body)), (500, Some(501)), "{body}");
    assert_eq!(natpmp_tcp_map(bed, 9000, 9000), 3);
    assert_eq!(pcp_map(bed, 2, 9200), (result::NETWORK_FAILURE, 30));
    // the address is still the public one
    assert_eq!(external_ip_address(bed), CARRIER_PUBLIC_IP);
    let log = bed.log();
    assert!(
        log.contains("refuse TCP 18080")
            && log.contains("new mappings are refused: STUN found the NAT in front"),
        "{log}"
    );

    r.reconfigure(&format!("{STUN}\toption stun_allow_filtered '1'\n"));
    r.wait_status("mappings allowed", |s| {
        s.get("new_mappings").and_then(Value::as_str) == Some("allowed")
    });
    let (code, body) = add_port_mapping(bed, "18080", "8080");
    assert_eq!(code, 200, "{body}");
    assert_eq!(natpmp_tcp_map(bed, 9000, 9000), 0);
    assert_eq!(pcp_map(bed, 2, 9200).0, result::SUCCESS);
}

/// A STUN server that never answers: the daemon keeps serving (here with
/// `ext_allow_private_ipv4`, so the WAN address is reported and mapped
/// with), says "unknown" and why, and waits a minute before the next try
/// (then 2, 4 … 32 minutes: `core::stun`'s unit tests). The server's
/// segment saw exactly the 7 requests of RFC 8489's schedule.
#[test]
fn silent_server_is_unknown_the_daemon_keeps_serving_and_backs_off() {
    let r = Router::start(
        "sdsilent",
        Carrier::EndpointIndependent,
        Server::Silent,
        &format!("{STUN}\toption ext_allow_private_ipv4 '1'\n"),
    );
    let bed = r.bed();
    // while the first run waits for answers
    assert_eq!(external_ip_address(bed), CGN_WAN_IP);
    let (code, body) = add_port_mapping(bed, "18081", "8081");
    assert_eq!(code, 200, "{body}");
    let s = r.wait_status("the first run to fail", |s| {
        s.get("stun")
            .and_then(|t| t.get("failures"))
            .and_then(Value::as_i64)
            == Some(1)
    });
    assert_eq!(reachability(&s), "unknown", "{s}");
    assert!(
        text(&s, &["stun", "reason"]).contains("did not answer"),
        "{s}"
    );
    assert_eq!(text(&s, &["stun", "public_ip"]), "");
    let next = number(&s, &["stun", "next_check"]);
    assert!((55..=60).contains(&next), "next try in {next} s: {s}");
    assert_eq!(number(&s, &["stun", "sent"]), 7);
    assert_eq!(r.cb.silent_drops(), 7);
    // still serving
    assert_eq!(external_ip_address(bed), CGN_WAN_IP);
    assert_eq!(text(&s, &["new_mappings"]), "allowed");
    let out = bed.upnpc(&["-a", CLIENT_IP, "8082", "18082", "TCP"]);
    assert!(out.contains("is redirected to internal"), "{out}");
    assert_eq!(bed.log().matches("did not answer").count(), 1);
}

/// The carrier moves the router to another public address of its pool
/// (dropping its sessions): a check (SIGUSR1, what the hotplug script and
/// an operator send) finds it, GENA events it, NAT-PMP and PCP announce
/// it on 224.0.0.1:5350 with a new epoch, and it is logged once.
#[test]
fn a_public_address_that_moves_is_evented_and_announced() {
    let cb = CarrierBed::new("sdmove", Carrier::EndpointIndependent, Server::Coturn);
    cb.short_udp_sessions();
    let r = Router::start_with(cb, "sdmove", STUN);
    let bed = r.bed();
    r.wait_status("the public address", |s| {
        s.get("external_ip").and_then(Value::as_str) == Some(CARRIER_PUBLIC_IP)
    });
    let ns = bed.c.clone();
    let l = in_netns(&ns, || TcpListener::bind((CLIENT_IP, 47020)).unwrap());
    let sub = format!(
        "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nCALLBACK: <http://{CLIENT_IP}:47020/evt>\r\n\
NT: upnp:event\r\nTIMEOUT: Second-300\r\nConnection: close\r\n\r\n"
    );
    let resp = bed.http_raw(sub.into_bytes()).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let first = receive_event(&l, Duration::from_secs(3)).expect("initial event");
    assert!(
        first.contains(&format!(
            "<ExternalIPAddress>{CARRIER_PUBLIC_IP}</ExternalIPAddress>"
        )),
        "{first}"
    );
    let mcast = multicast_listener(&ns, Ipv4Addr::new(224, 0, 0, 1), 5350);
    mcast
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    r.cb.carrier_nat(Carrier::EndpointIndependent, CARRIER_PUBLIC2_IP);
    // The carrier forgets a UDP flow 1 s after its last datagram; once
    // the daemon's last check is 2 s old, its next one starts new flows.
    r.wait_status("the carrier to forget the router's flows", |s| {
        s.get("stun")
            .and_then(|t| t.get("last_check"))
            .and_then(Value::as_i64)
            .is_some_and(|secs| secs >= 2)
    });
    bed.signal("USR1");
    let t = Instant::now();
    let mut evented = None;
    while evented.is_none() && t.elapsed() < Duration::from_secs(30) {
        if let Some(e) = receive_event(&l, Duration::from_millis(500)) {
            if e.contains(&format!(
                "<ExternalIPAddress>{CARRIER_PUBLIC2_IP}</ExternalIPAddress>"
            )) {
                evented = Some(e);
            }
        }
    }
    assert!(
        evented.is_some(),
        "no event with the new address; log:\n{}",
        bed.log()
    );
    let (natpmp, pcp) = announcements(&mcast, CARRIER_PUBLIC2_IP.parse().unwrap());
    assert!(!natpmp.is_empty(), "NAT-PMP announcements");
    assert!(!pcp.is_empty(), "PCP announcements");
    assert!(natpmp[0] < 5, "NAT-PMP epoch {natpmp:?}");
    assert!(pcp[0] < 5, "PCP epoch {pcp:?}");
    let s = r.status();
    assert_eq!(text(&s, &["external_ip"]), CARRIER_PUBLIC2_IP, "{s}");
    let log = bed.log();
    let line = format!("STUN: public address {CARRIER_PUBLIC2_IP} (was {CARRIER_PUBLIC_IP})");
    assert_eq!(log.matches(&line).count(), 1, "{log}");
}

/// The carrier gives the router a new WAN address: the daemon rebinds its
/// STUN sockets there (the firewall's `upnp_stun` set follows) and checks
/// at once, finding the same public address (logged only the first
/// time).
#[test]
fn a_new_wan_address_is_checked_at_once() {
    let mut r = Router::start(
        "sdrenum",
        Carrier::EndpointIndependent,
        Server::Coturn,
        STUN,
    );
    r.wait_status("the first check", |s| {
        reachability(s) == "endpoint-independent"
    });
    r.cb.renumber_router(
        Carrier::EndpointIndependent,
        CARRIER_PUBLIC_IP,
        "100.64.0.9",
    );
    // A new WAN address restarts the check ("unknown" until it ends).
    let s = r.wait_status("a check from the new address", |s| {
        s.get("wan_ip").and_then(Value::as_str) == Some("100.64.0.9")
            && reachability(s) == "endpoint-independent"
    });
    assert_eq!(text(&s, &["external_ip"]), CARRIER_PUBLIC_IP, "{s}");
    // three more requests (one more if the first went out before the
    // bed's new default route was in: it is retransmitted)
    assert!(
        (6..=7).contains(&number(&s, &["stun", "sent"])),
        "{s}\n{}",
        r.bed().log()
    );
    let set = r.bed().nft("list set inet fw4 upnp_stun");
    assert_eq!(set.matches("100.64.0.9 . ").count(), 2, "{set}");
    assert!(!set.contains(CGN_WAN_IP), "{set}");
    // Neither the start nor the WAN change logged refusals: STUN answered
    // before anything was settled.
    let log = r.bed().log();
    assert_eq!(log.matches("STUN: public address").count(), 1, "{log}");
    assert!(!log.contains("New port mappings are refused"), "{log}");
    assert!(!log.contains("allowed again"), "{log}");
}

/// NAT-PMP announcements (epochs) of `addr` and PCP ANNOUNCE responses
/// (epochs) arriving within a few seconds.
fn announcements(mcast: &UdpSocket, addr: Ipv4Addr) -> (Vec<u32>, Vec<u32>) {
    let (mut natpmp, mut pcp) = (Vec::new(), Vec::new());
    let mut buf = [0u8; 1100];
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) && (natpmp.is_empty() || pcp.is_empty()) {
        let Ok((n, _)) = mcast.recv_from(&mut buf) else {
            continue;
        };
        let b = &buf[..n];
        match b.first() {
            Some(0) if n == 12 && b[1] == 128 && b[8..] == addr.octets() => {
                natpmp.push(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
            }
            Some(2) if n == 24 && b[1] == 0x80 && !natpmp.is_empty() => {
                pcp.push(u32::from_be_bytes([b[8], b[9], b[10], b[11]]));
            }
            _ => {}
        }
    }
    (natpmp, pcp)
}

/// A private (CGNAT) WAN address and no STUN: `ext_allow_private_ipv4`
/// decides as in miniupnpd. Off: no external address (empty, NAT-PMP
/// 3), new mappings refused (UPnP 501) and `status` says which switch
/// helps. On: the WAN address is reported and mapped with, and where the
/// carrier forwards the port the mapping is reached from the Internet.
#[test]
fn private_wan_without_stun_is_ext_allow_private_ipv4s_call() {
    let r = Router::start("sdpriv", Carrier::EndpointIndependent, Server::Silent, "");
    let bed = r.bed();
    let s = r.status();
    assert_eq!(text(&s, &["external_ip"]), "", "{s}");
    assert_eq!(text(&s, &["wan_ip"]), CGN_WAN_IP);
    assert_eq!(text(&s, &["new_mappings"]), "refused");
    assert!(
        text(&s, &["new_mappings_reason"]).contains("ext_allow_private_ipv4"),
        "{s}"
    );
    assert!(s.get("stun").is_none(), "{s}");
    assert_eq!(external_ip_address(bed), "");
    let (code, body) = add_port_mapping(bed, "18083", "8083");
    assert_eq!((code, fault_code(&body)), (500, Some(501)), "{body}");
    let out = bed.natpmpc(&[]);
    assert!(!out.contains("Public IP address"), "{out}");
    assert_eq!(natpmp_tcp_map(bed, 9001, 9001), 3);

    r.reconfigure("\toption ext_allow_private_ipv4 '1'\n");
    r.wait_status("mappings allowed", |s| {
        s.get("new_mappings").and_then(Value::as_str) == Some("allowed")
    });
    assert_eq!(external_ip_address(bed), CGN_WAN_IP);
    let out = bed.upnpc(&["-a", CLIENT_IP, "8083", "18083", "TCP"]);
    assert!(out.contains("is redirected to internal"), "{out}");
    assert!(r.cb.tcp_from_public(18083, 8083));
}
