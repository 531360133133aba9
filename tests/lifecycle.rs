//! The front ends' life cycle (issue 13 item 1): every socket a front end
//! opens, and every task reading or serving it, ends when that front end
//! closes. Reloads that move the HTTP port, `enabled 0`/`1` and the
//! protocol toggles through ubus, again and again, leave the daemon with
//! exactly one socket of each kind, the HTTP connections of a closed
//! server cut, and one answer per search target to an M-SEARCH.

mod common;
mod support;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use support::ubusd::{Broker, Peer, socket_path};
use support::wire::json;

const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

/// The IPv4 and IPv6 sockets of the daemon's front ends, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct FrontSockets {
    /// UDP on port 1900, IPv4.
    ssdp: usize,
    /// UDP on port 5351, IPv4.
    natpmp_pcp: usize,
    /// Ports of the TCP listeners on the LAN's IPv4 and IPv6 address.
    http4: Vec<u16>,
    http6: Vec<u16>,
    /// Accepted HTTP connections still open in the daemon.
    http_conns: usize,
}

fn front_sockets(pid: u32) -> FrontSockets {
    let lan4: IpAddr = LAN_IP.parse().unwrap();
    let lan6: IpAddr = LAN6.parse().unwrap();
    let mut f = FrontSockets::default();
    for s in sockets_of(pid) {
        let (ip, port) = (s.local.ip(), s.local.port());
        match (s.tcp, ip.is_ipv4(), port) {
            (false, true, 1900) => f.ssdp += 1,
            (false, true, 5351) => f.natpmp_pcp += 1,
            (true, ..) if s.tcp_listener() && ip == lan4 => f.http4.push(port),
            (true, ..) if s.tcp_listener() && ip == lan6 => f.http6.push(port),
            (true, ..) if !s.tcp_listener() && (ip == lan4 || ip == lan6) => f.http_conns += 1,
            _ => {}
        }
    }
    f.http4.sort_unstable();
    f.http6.sort_unstable();
    f
}

/// What a LAN's front ends hold with UPnP on port `http` (or off),
/// NAT-PMP/PCP on or off.
fn serving(http: Option<u16>, natpmp_pcp: bool) -> FrontSockets {
    FrontSockets {
        ssdp: usize::from(http.is_some()),
        natpmp_pcp: usize::from(natpmp_pcp),
        http4: http.into_iter().collect(),
        http6: http.into_iter().collect(),
        http_conns: 0,
    }
}

/// Waits until the daemon's front-end sockets are `want`.
async fn sockets_become(bed: &Bed, pid: u32, want: FrontSockets, after: &str) {
    let t = Instant::now();
    loop {
        let have = front_sockets(pid);
        if have == want {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "after {after}: the daemon holds {have:?}, not {want:?}\n{}",
            bed.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn config(bed: &Bed, port: u16) -> String {
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption port '{port}'\n\n{RULES}"
    ));
    dir.to_str().unwrap().to_string()
}

async fn set(caller: &Peer, args: &str) {
    caller
        .call("rupnpd", "set", json(args))
        .await
        .unwrap_or_else(|st| panic!("set {args}: ubus status {st}"));
}

/// Every answer to one multicast `ssdp:all` M-SEARCH (MX 1) from the LAN
/// host within two seconds, counted by search target.
fn search_answers(bed: &Bed) -> BTreeMap<String, usize> {
    let client: Ipv4Addr = CLIENT_IP.parse().unwrap();
    let sock: UdpSocket = bed.in_ns(&bed.c, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((client, 0)).into()).unwrap();
        s.set_multicast_if_v4(&client).unwrap();
        s.into()
    });
    let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
MAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
    sock.send_to(search, (Ipv4Addr::new(239, 255, 255, 250), 1900))
        .unwrap();
    // MX 1: every answer is due within a second; the second one more is
    // for a duplicate to show up.
    let end = Instant::now() + Duration::from_secs(2);
    let mut by_target = BTreeMap::new();
    let mut buf = [0u8; 2048];
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        sock.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let Ok(n) = sock.recv(&mut buf) else {
            break;
        };
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let st = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("ST")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("an answer without ST: {text}"));
        *by_target.entry(st).or_insert(0) += 1;
    }
    by_target
}

/// Four port changes by SIGHUP, then several rounds of `enabled`,
/// `enable_upnp` and `enable_natpmp`/`enable_pcp` through ubus: each
/// step leaves exactly the sockets it should, an idle keep-alive
/// connection ends with the HTTP server it came in on, and an M-SEARCH
/// gets one answer per target. rupnpd 0.1.0 kept every SSDP and
/// NAT-PMP/PCP socket it ever opened (5 of each after the port changes),
/// left them all open with `enabled 0`, and answered an M-SEARCH once per
/// SSDP socket.
#[tokio::test(flavor = "current_thread")]
async fn reloads_and_toggles_leave_one_socket_of_each_kind() {
    let mut bed = Bed::new("lcyc");
    bed.fw4_start();
    let sock = socket_path("lcyc");
    let _broker = Broker::start(&sock);
    let dir = config(&bed, 5000);
    let ubus = sock.to_str().unwrap().to_string();
    let pid = bed.start(&["--config-dir", &dir, "--ubus-socket", &ubus]);
    sockets_become(&bed, pid, serving(Some(5000), true), "start").await;

    for port in [5001, 5002, 5003, 5000] {
        config(&bed, port);
        bed.signal("HUP");
        sockets_become(
            &bed,
            pid,
            serving(Some(port), true),
            &format!("SIGHUP to port {port}"),
        )
        .await;
    }

    let caller = Peer::connect(&sock).await;
    caller.wait_for("rupnpd", Duration::from_secs(5)).await;
    for round in 0..3 {
        // an idle keep-alive connection, then UPnP goes: so does it
        let mut conn = KeepAlive::open(&bed);
        assert_eq!(conn.call("GetExternalIPAddress", &[]).0, 200);
        assert_eq!(front_sockets(pid).http_conns, 1);
        set(&caller, r#"{"enable_upnp": false}"#).await;
        let what = format!("enable_upnp 0 (round {round})");
        sockets_become(&bed, pid, serving(None, true), &what).await;
        assert!(
            conn.try_call("GetExternalIPAddress", &[]).is_none(),
            "{what}: the keep-alive connection is still served"
        );
        set(&caller, r#"{"enable_upnp": true}"#).await;
        sockets_become(&bed, pid, serving(Some(5000), true), "enable_upnp 1").await;

        set(&caller, r#"{"enabled": false}"#).await;
        sockets_become(&bed, pid, FrontSockets::default(), "enabled 0").await;
        set(&caller, r#"{"enabled": true}"#).await;
        sockets_become(&bed, pid, serving(Some(5000), true), "enabled 1").await;

        set(&caller, r#"{"enable_natpmp": false, "enable_pcp": false}"#).await;
        sockets_become(&bed, pid, serving(Some(5000), false), "NAT-PMP and PCP off").await;
        set(&caller, r#"{"enable_pcp": true}"#).await;
        sockets_become(&bed, pid, serving(Some(5000), true), "PCP on").await;
        set(&caller, r#"{"enable_natpmp": true}"#).await;
        sockets_become(&bed, pid, serving(Some(5000), true), "NAT-PMP on").await;
    }

    let answers = search_answers(&bed);
    assert!(
        answers.len() >= 3 && answers.contains_key("upnp:rootdevice"),
        "{answers:?}"
    );
    assert!(
        answers.values().all(|n| *n == 1),
        "answers per search target: {answers:?}"
    );
    assert!(
        bed.http_get("/rootDesc.xml")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}

/// An address the LAN gains later is served (the kernel's rtnetlink
/// notice makes the daemon read its LANs again), and only that: the
/// sockets already open stay, an idle keep-alive connection with them.
#[tokio::test(flavor = "current_thread")]
async fn a_lan_address_added_later_is_served_and_nothing_else_reopens() {
    let mut bed = Bed::new("laddr");
    bed.fw4_start();
    let dir = config(&bed, 5000);
    let pid = bed.start(&["--config-dir", &dir]);
    sockets_become(&bed, pid, serving(Some(5000), true), "start").await;
    let mut conn = KeepAlive::open(&bed);
    assert_eq!(conn.call("GetExternalIPAddress", &[]).0, 200);
    let before = sockets_of(pid);

    let o = bed.exec(
        &bed.r,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "fd78::1/64",
            "dev",
            LAN_DEV,
            "nodad",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let new: SocketAddr = "[fd78::1]:5000".parse().unwrap();
    let t = Instant::now();
    while !sockets_of(pid)
        .iter()
        .any(|s| s.tcp_listener() && s.local == new)
    {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no listener on {new}\n{}",
            bed.log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let after = sockets_of(pid);
    for s in &before {
        assert!(after.contains(s), "{s:?} was closed");
    }
    assert_eq!(
        conn.try_call("GetExternalIPAddress", &[]).map(|r| r.0),
        Some(200)
    );
}
