//! GENA eventing end to end: SUBSCRIBE from the LAN host, event messages
//! received by a subscriber of our own in the LAN namespace.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;

fn started(name: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    bed.start(&[]);
    bed
}

fn subscribe(bed: &Bed, callback: &str, extra: &str) -> String {
    subscribe_to(bed, "/evt/IPConn", callback, extra)
}

/// SUBSCRIBE to the event URL `path` with `callback`.
fn subscribe_to(bed: &Bed, path: &str, callback: &str, extra: &str) -> String {
    let req = format!(
        "SUBSCRIBE {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nCALLBACK: <{callback}>\r\nNT: upnp:event\r\n\
TIMEOUT: Second-300\r\n{extra}Connection: close\r\n\r\n"
    );
    bed.http_raw(req.into_bytes()).unwrap()
}

fn header<'a>(resp: &'a str, name: &str) -> Option<&'a str> {
    resp.lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
        })
        .map(|l| l[name.len() + 1..].trim())
}

#[test]
fn subscribe_initial_event_changes_and_unsubscribe() {
    let bed = started("gena");
    let ns = bed.c.clone();
    let l = in_netns(&ns, || TcpListener::bind((CLIENT_IP, 47000)).unwrap());
    let r = subscribe(&bed, "http://192.168.77.2:47000/evt", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let sid = header(&r, "SID").unwrap().to_string();
    assert!(sid.starts_with("uuid:"), "{r}");
    assert_eq!(header(&r, "TIMEOUT"), Some("Second-1800"));

    let first = receive_event(&l, Duration::from_secs(3)).expect("initial event");
    assert!(first.starts_with("NOTIFY /evt HTTP/1.1\r\n"), "{first}");
    assert!(first.contains(&format!("SID: {sid}\r\n")), "{first}");
    assert!(first.contains("SEQ: 0\r\n"), "{first}");
    assert!(
        first.contains("<PortMappingNumberOfEntries>0</PortMappingNumberOfEntries>"),
        "{first}"
    );
    assert!(
        first.contains("<ExternalIPAddress>192.0.3.1</ExternalIPAddress>"),
        "{first}"
    );
    assert!(
        first.contains("<ConnectionStatus>Connected</ConnectionStatus>"),
        "{first}"
    );
    let id0: u32 = element(&first, "SystemUpdateID").unwrap().parse().unwrap();

    let (code, _) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT_IP, "600", "x"),
    );
    assert_eq!(code, 200);
    let second = receive_event(&l, Duration::from_secs(3)).expect("event after AddPortMapping");
    assert!(second.contains("SEQ: 1\r\n"), "{second}");
    assert!(
        second.contains("<PortMappingNumberOfEntries>1</PortMappingNumberOfEntries>"),
        "{second}"
    );
    let id1: u32 = element(&second, "SystemUpdateID").unwrap().parse().unwrap();
    assert!(id1 > id0, "SystemUpdateID must change: {id0} -> {id1}");

    // renewal
    let req = format!(
        "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nSID: {sid}\r\nTIMEOUT: Second-3600\r\nConnection: close\r\n\r\n"
    );
    let r = bed.http_raw(req.into_bytes()).unwrap();
    assert!(
        r.starts_with("HTTP/1.1 200") && r.contains("Second-3600"),
        "{r}"
    );
    // SID with CALLBACK: 400
    let r = subscribe(
        &bed,
        "http://192.168.77.2:47000/evt",
        &format!("SID: {sid}\r\n"),
    );
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    // unsubscribe, then again: 412
    let req = format!(
        "UNSUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nSID: {sid}\r\nConnection: close\r\n\r\n"
    );
    let r = bed.http_raw(req.clone().into_bytes()).unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r = bed.http_raw(req.into_bytes()).unwrap();
    assert!(r.starts_with("HTTP/1.1 412"), "{r}");
    // no more events
    bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "18080"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert!(receive_event(&l, Duration::from_millis(500)).is_none());
}

#[test]
fn callstranger_callbacks_are_refused() {
    let bed = started("cstr");
    for cb in [
        "http://192.168.77.1:5000/x", // the router itself
        "http://192.0.3.2:80/x",      // a WAN host
        "http://192.168.77.9:80/x",   // a neighbour, not the subscriber
        "http://evil.example/x",      // a name
        "https://192.168.77.2/x",     // not http
    ] {
        let r = subscribe(&bed, cb, "");
        assert!(r.starts_with("HTTP/1.1 412"), "{cb}: {r}");
    }
    // missing NT
    let req = format!(
        "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nCALLBACK: <http://192.168.77.2/>\r\nConnection: close\r\n\r\n"
    );
    assert!(
        bed.http_raw(req.into_bytes())
            .unwrap()
            .starts_with("HTTP/1.1 412")
    );
}

#[test]
fn subscribers_are_capped_per_client() {
    let bed = started("gcap");
    let mut ok = 0;
    let mut refused = 0;
    for i in 0..12 {
        let r = subscribe(&bed, &format!("http://192.168.77.2:{}/e", 48000 + i), "");
        if r.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else if r.starts_with("HTTP/1.1 503") {
            refused += 1;
        }
    }
    // max_subscribers_per_client defaults to 8
    assert_eq!((ok, refused), (8, 4));
}

#[test]
fn a_dead_subscriber_does_not_hold_up_the_loop() {
    let bed = started("slow");
    let ns = bed.c.clone();
    // accepts connections but never reads or answers
    let hang = in_netns(&ns, || TcpListener::bind((CLIENT_IP, 47100)).unwrap());
    let r = subscribe(&bed, "http://192.168.77.2:47100/evt", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..20 {
        let port = (20000 + i).to_string();
        let t = Instant::now();
        let (code, _) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(&port, "UDP", &port, CLIENT_IP, "600", "x"),
        );
        assert_eq!(code, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "request {i} took {:?}",
            t.elapsed()
        );
    }
    drop(hang);
}

/// A new WAN address reaches every place that tells clients about it: a
/// GENA event with the new ExternalIPAddress, and fresh NAT-PMP and PCP
/// announcements on 224.0.0.1:5350 carrying the address and a restarted
/// epoch (RFC 6886 §3.2.1, RFC 6887 §8.5). Then the link goes down:
/// ConnectionStatus is evented too.
#[test]
fn a_new_wan_address_is_evented_and_announced() {
    use std::net::{Ipv4Addr, SocketAddr};

    let lan: Ipv4Addr = LAN_IP.parse().unwrap();

    let bed = started("genwan");
    let ns = bed.c.clone();
    let l = in_netns(&ns, || TcpListener::bind((CLIENT_IP, 47010)).unwrap());
    let r = subscribe(&bed, "http://192.168.77.2:47010/evt", "");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let first = receive_event(&l, Duration::from_secs(3)).expect("initial event");
    assert!(
        first.contains("<ExternalIPAddress>192.0.3.1</ExternalIPAddress>"),
        "{first}"
    );
    let mcast = multicast_listener(&ns, Ipv4Addr::new(224, 0, 0, 1), 5350);
    // Past the first seconds, so that a restarted epoch (< 5) cannot be
    // the start-up one (≥ 6 by then); what was announced so far is dropped.
    std::thread::sleep(Duration::from_secs(6));
    mcast.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1100];
    while mcast.recv_from(&mut buf).is_ok() {}
    mcast.set_nonblocking(false).unwrap();
    mcast
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    bed.renumber_wan("192.0.3.1", "192.0.3.9");

    // GENA: an event with the new address (a removed address may first be
    // evented as disconnected)
    let t = Instant::now();
    let mut evented = None;
    while t.elapsed() < Duration::from_secs(5) {
        if let Some(e) = receive_event(&l, Duration::from_millis(500)) {
            if e.contains("<ExternalIPAddress>192.0.3.9</ExternalIPAddress>") {
                evented = Some(e);
                break;
            }
        }
    }
    let e = evented.expect("an event with the new external address");
    assert!(
        e.contains("<ConnectionStatus>Connected</ConnectionStatus>"),
        "{e}"
    );

    // NAT-PMP and PCP announcements of the new address
    let (mut natpmp, mut pcp) = (Vec::new(), Vec::new());
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) && (natpmp.len() < 2 || pcp.len() < 2) {
        let Ok((n, from)) = mcast.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(from, SocketAddr::from((lan, 5351)));
        let b = &buf[..n];
        match b.first() {
            Some(0) if n == 12 && b[1] == 128 && b[8..] == [192, 0, 3, 9] => {
                natpmp.push(u32::from_be_bytes([b[4], b[5], b[6], b[7]]));
            }
            // PCP announcements of the same burst, after the NAT-PMP one
            Some(2) if n == 24 && b[1] == 0x80 && !natpmp.is_empty() => {
                pcp.push(u32::from_be_bytes([b[8], b[9], b[10], b[11]]));
            }
            _ => {}
        }
    }
    assert!(natpmp.len() >= 2, "NAT-PMP announcements: {natpmp:?}");
    assert!(pcp.len() >= 2, "PCP announcements: {pcp:?}");
    // the epoch started again with the new address
    assert!(natpmp[0] < 5, "NAT-PMP epoch {natpmp:?}");
    assert!(pcp[0] < 5, "PCP epoch {pcp:?}");

    // the link goes down: ConnectionStatus is evented
    let o = bed.exec(&bed.r, &["ip", "link", "set", &bed.wan_dev, "down"]);
    assert!(o.status.success());
    let t = Instant::now();
    let mut down = None;
    while t.elapsed() < Duration::from_secs(5) {
        if let Some(e) = receive_event(&l, Duration::from_millis(500)) {
            if !e.contains("<ConnectionStatus>Connected</ConnectionStatus>") {
                down = Some(e);
                break;
            }
        }
    }
    let e = down.expect("an event after the WAN link went down");
    assert!(e.contains("<ConnectionStatus>"), "{e}");
}

/// WANIPv6FirewallControl events: the initial event says whether inbound
/// pinholes are allowed, and a reload that forbids them is evented.
#[test]
fn pinhole_permission_changes_are_evented() {
    let mut bed = Bed::new("gen6");
    bed.fw4_start();
    let dir = bed.config("config upnpd 'config'\n\toption ipv6_pinholes '1'\n");
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    let ns = bed.c.clone();
    let l = in_netns(&ns, || TcpListener::bind((CLIENT_IP, 47020)).unwrap());
    let r = subscribe_to(
        &bed,
        "/evt/IP6FCtl",
        &format!("http://{CLIENT_IP}:47020/evt"),
        "",
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let first = receive_event(&l, Duration::from_secs(3)).expect("initial event");
    assert!(first.contains("SEQ: 0\r\n"), "{first}");
    assert!(
        first.contains("<FirewallEnabled>1</FirewallEnabled>"),
        "{first}"
    );
    assert!(
        first.contains("<InboundPinholeAllowed>1</InboundPinholeAllowed>"),
        "{first}"
    );

    std::fs::write(
        dir.join("upnpd"),
        "config upnpd 'config'\n\toption ipv6_pinholes '0'\n",
    )
    .unwrap();
    bed.signal("HUP");
    let second = receive_event(&l, Duration::from_secs(3)).expect("event after the reload");
    assert!(second.contains("SEQ: 1\r\n"), "{second}");
    assert!(
        second.contains("<InboundPinholeAllowed>0</InboundPinholeAllowed>"),
        "{second}"
    );
}
