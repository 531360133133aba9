//! netifd for real where we can: the daemon follows the LAN and WAN
//! through a stand-in that sends exactly netifd's payloads
//! (tests/fixtures/netifd, with where each field comes from). At start as
//! after, the devices come from netifd (issue 17.1): the daemon waits for
//! netifd rather than exit, serves a LAN on a plain port, and keeps
//! serving the LAN netifd confirms.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::netifd::{Netifd, fixture, notification, renumbered, status_of};
use support::ubusd::{Broker, Peer, rupnpd_status, socket_path};
use support::wire::Value;

/// The fields of a status in the order `netifd_dump_status` writes them.
const STATUS_ORDER: [&str; 27] = [
    "up",
    "pending",
    "available",
    "autostart",
    "dynamic",
    "uptime",
    "l3_device",
    "proto",
    "device",
    "updated",
    "ip4table",
    "ip6table",
    "metric",
    "dns_metric",
    "delegation",
    "ip6weight",
    "ipv4-address",
    "ipv6-address",
    "ipv6-prefix",
    "ipv6-prefix-assignment",
    "route",
    "dns-server",
    "dns-search",
    "neighbors",
    "inactive",
    "data",
    "errors",
];

/// The fields netifd writes exactly while the interface is up.
const WHILE_UP: [&str; 14] = [
    "uptime",
    "l3_device",
    "metric",
    "dns_metric",
    "delegation",
    "ipv4-address",
    "ipv6-address",
    "ipv6-prefix",
    "ipv6-prefix-assignment",
    "route",
    "dns-server",
    "dns-search",
    "neighbors",
    "inactive",
];

fn names(v: &Value) -> Vec<&str> {
    v.as_table()
        .unwrap()
        .iter()
        .map(|(n, _)| n.as_str())
        .collect()
}

/// `status` has netifd's fields in netifd's order, and the up-only ones
/// exactly when it is up.
fn netifd_shaped(what: &str, status: &Value) {
    let fields = names(status);
    let rank = |f: &str| {
        STATUS_ORDER
            .iter()
            .position(|o| *o == f)
            .unwrap_or_else(|| panic!("{what}: {f} is not a field netifd writes"))
    };
    assert!(
        fields.windows(2).all(|w| rank(w[0]) < rank(w[1])),
        "{what}: fields out of netifd's order: {fields:?}"
    );
    let up = status.get("up").and_then(Value::as_bool).unwrap();
    for f in WHILE_UP {
        assert_eq!(fields.contains(&f), up, "{what}: {f} with up = {up}");
    }
    for f in ["up", "pending", "available", "autostart", "dynamic"] {
        assert!(
            matches!(status.get(f), Some(Value::I8(_))),
            "{what}: {f} is a blobmsg bool"
        );
    }
    assert!(status.get("proto").is_some() && status.get("data").is_some());
}

#[test]
fn the_payloads_are_shaped_as_netifd_writes_them() {
    for f in [
        "wan-dhcp.status",
        "wan-dhcp.pending.status",
        "wan-pppoe.status",
        "lan-bridge.status",
        "lan-port.status",
    ] {
        netifd_shaped(f, &fixture(f));
    }
    // a notification is `interface` and then the status
    let status = fixture("wan-dhcp.status");
    let renewed = fixture("wan-dhcp.renewed.update");
    assert_eq!(names(&renewed)[0], "interface");
    netifd_shaped("renewed", &status_of(&renewed));
    // a renewal with a new address: the address and the route's source
    // change, and `updated` says so; only the uptime moved besides
    let mut expect = renumbered(&status, "192.0.3.1", "192.0.3.7");
    let mut got = status_of(&renewed);
    for v in [&mut expect, &mut got] {
        if let Value::Table(t) = v {
            t.retain(|(n, _)| n != "uptime" && n != "updated");
        }
    }
    assert_eq!(got, expect);
    assert_eq!(
        renewed.get("updated"),
        Some(&Value::Array(vec!["addresses".into(), "routes".into()]))
    );
    // interface.down: the status at that moment, nothing of the up state
    let down = fixture("wan-dhcp.down");
    netifd_shaped("down", &status_of(&down));
    assert_eq!(down.get("device"), status.get("device"));
    // PPPoE: layer 3 on its own device, the port as `device`
    let pppoe = fixture("wan-pppoe.status");
    assert_eq!(
        (pppoe.get("l3_device"), pppoe.get("device")),
        (Some(&"pppoe-wan".into()), Some(&"eth1".into()))
    );
    // the dump: every interface by name, each `interface` + its status
    let dump = fixture("dump");
    let list = dump.get("interface").and_then(Value::as_array).unwrap();
    let listed: Vec<&str> = list
        .iter()
        .map(|e| e.get("interface").and_then(Value::as_str).unwrap())
        .collect();
    assert_eq!(listed, ["lan", "loopback", "wan", "wan6"]);
    assert_eq!(list[0], notification("lan", &fixture("lan-bridge.status")));
    assert_eq!(list[2], notification("wan", &status));
    for e in list {
        netifd_shaped("dump entry", &status_of(e));
    }
}

const RULES: &str = "config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n";

/// A UCI config for `bed` with `options`, and the daemon's command line
/// for it and the broker at `socket_path(name)`.
fn daemon_args(bed: &Bed, name: &str, options: &str) -> Vec<String> {
    let dir = bed.config(&format!("config upnpd 'config'\n{options}\n{RULES}"));
    vec![
        "--config-dir".to_string(),
        dir.display().to_string(),
        "--ubus-socket".to_string(),
        socket_path(name).display().to_string(),
    ]
}

/// A broker for test `name` and the netifd stand-in on it.
async fn ubus(name: &str, interfaces: &[(&str, Value)]) -> (Broker, Netifd) {
    let sock = socket_path(name);
    let broker = Broker::start(&sock);
    let netifd = Netifd::start(&sock, interfaces).await;
    (broker, netifd)
}

fn argv(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Waits until the daemon's `status` satisfies `ok`.
async fn status_until(sock_name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let t = Instant::now();
    loop {
        let s = rupnpd_status(&socket_path(sock_name)).await;
        if ok(&s) {
            return s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "{what}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn str_field<'a>(v: &'a Value, name: &str) -> Option<&'a str> {
    v.get(name).and_then(Value::as_str)
}

fn add(bed: &Bed, port: &str) {
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args(port, "TCP", port, CLIENT_IP, "600", "netifd-test"),
    );
    assert_eq!(code, 200, "{text}");
}

/// No WAN configured and no default route on the router: the daemon finds
/// the WAN as `network_find_wan` does, in netifd's dump (the first
/// interface with an IPv4 default route), and serves it.
#[tokio::test(flavor = "current_thread")]
async fn the_wan_is_found_in_netifds_dump() {
    let mut bed = Bed::new("ndump");
    bed.fw4_start();
    let dump = fixture("dump");
    let ifaces: Vec<(String, Value)> = dump
        .get("interface")
        .and_then(Value::as_array)
        .unwrap()
        .iter()
        .map(|e| {
            let name = e.get("interface").and_then(Value::as_str).unwrap();
            (name.to_string(), status_of(e))
        })
        .collect();
    let ifaces: Vec<(&str, Value)> = ifaces
        .iter()
        .map(|(n, s)| (n.as_str(), s.clone()))
        .collect();
    let (_broker, _netifd) = ubus("ndump", &ifaces).await;
    let args = daemon_args(&bed, "ndump", "\toption internal_iface 'br-lan'");
    bed.start_raw(&argv(&args));
    let s = status_until("ndump", "the WAN from the dump", |s| {
        str_field(s, "wan_device") == Some("eth1")
    })
    .await;
    assert_eq!(str_field(&s, "external_ip"), Some(WAN_IP), "{s}");
    add(&bed, "18080");
    assert!(bed.tcp_through(18080, 18080));
}

/// PPPoE: netifd's `l3_device` (`pppoe-wan`) carries the WAN, not the
/// Ethernet port in `device` (`eth1`, present on the router, up, without
/// an address). The link is point-to-point, as a PPP link is.
#[tokio::test(flavor = "current_thread")]
async fn a_pppoe_wan_is_served_on_its_l3_device() {
    let mut bed = Bed::with_devices("npppoe", LAN_DEV, "pppoe-wan");
    for cmd in [
        "ip link add eth1 type veth peer name eth1-line",
        "ip link set eth1 up",
        "ip addr del 192.0.3.1/24 dev pppoe-wan",
        "ip addr add 192.0.3.1 peer 192.0.3.2/32 dev pppoe-wan",
    ] {
        let o = bed.exec(&bed.r, &cmd.split(' ').collect::<Vec<_>>());
        assert!(
            o.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    bed.fw4_start();
    let (_broker, _netifd) = ubus(
        "npppoe",
        &[
            ("lan", fixture("lan-bridge.status")),
            ("wan", fixture("wan-pppoe.status")),
        ],
    )
    .await;
    let args = daemon_args(
        &bed,
        "npppoe",
        "\toption internal_iface 'br-lan'\n\toption external_iface 'wan'",
    );
    bed.start_raw(&argv(&args));
    let s = status_until("npppoe", "the PPPoE WAN", |s| {
        str_field(s, "wan_device") == Some("pppoe-wan") && s.get("wan_up") == Some(&true.into())
    })
    .await;
    assert_eq!(str_field(&s, "external_ip"), Some(WAN_IP), "{s}");
    let rules = bed.nft("list chain inet fw4 upnp_prerouting");
    assert!(rules.contains("iifname \"pppoe-wan\""), "{rules}");
    assert!(!rules.contains("\"eth1\""), "{rules}");
    add(&bed, "18080");
    assert!(bed.tcp_through(18080, 18080));
}

/// At boot the WAN is pending (DHCP not answered yet) when the daemon
/// starts; netifd's `interface.update` when it comes up brings the
/// device and the address, and mappings work.
#[tokio::test(flavor = "current_thread")]
async fn the_wan_comes_up_after_the_daemon() {
    let mut bed = Bed::new("npend");
    bed.fw4_start();
    let (_broker, netifd) = ubus(
        "npend",
        &[
            ("lan", fixture("lan-bridge.status")),
            ("wan", fixture("wan-dhcp.pending.status")),
        ],
    )
    .await;
    let args = daemon_args(
        &bed,
        "npend",
        "\toption internal_iface 'br-lan'\n\toption external_iface 'wan'",
    );
    bed.start_raw(&argv(&args));
    // the daemon asked, and knows the WAN is not up
    status_until("npend", "the pending WAN", |s| {
        s.get("wan_up") == Some(&false.into())
    })
    .await;
    assert!(netifd.asked("wan") > 0);
    // DHCP answers: netifd's interface.update (sent until the daemon,
    // which subscribes on its own schedule, has heard it)
    let up = fixture("wan-dhcp.status");
    let t = Instant::now();
    while netifd.update("wan", up.clone()).await.is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "no subscriber");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = status_until("npend", "the WAN up", |s| {
        s.get("wan_up") == Some(&true.into())
    })
    .await;
    assert_eq!(
        (str_field(&s, "wan_device"), str_field(&s, "external_ip")),
        (Some(WAN_DEV), Some(WAN_IP)),
        "{s}"
    );
    add(&bed, "18080");
    assert!(bed.tcp_through(18080, 18080));
}

/// OpenWrt's shipped configuration names the LAN `lan`. When netifd
/// confirms that `lan` is `br-lan` (the device the daemon already
/// serves), the daemon must go on serving it. Found by the netifd
/// stand-in: rupnpd 0.1.0 opened its front ends again while the old ones
/// still held port 5000, logged "Address already in use" and had no HTTP
/// server left (UPnP gone, NAT-PMP/PCP still there).
#[tokio::test(flavor = "current_thread")]
async fn the_lan_named_lan_keeps_its_http_server() {
    let mut bed = Bed::new("nlan");
    bed.fw4_start();
    let (_broker, netifd) = ubus(
        "nlan",
        &[
            ("lan", fixture("lan-bridge.status")),
            ("wan", fixture("wan-dhcp.status")),
        ],
    )
    .await;
    let args = daemon_args(
        &bed,
        "nlan",
        "\toption internal_iface 'lan'\n\toption external_iface 'wan'",
    );
    bed.start_raw(&argv(&args));
    status_until("nlan", "netifd's answers", |s| {
        str_field(s, "wan_device") == Some(WAN_DEV)
    })
    .await;
    assert!(netifd.asked("lan") > 0);
    // netifd's answer about `lan` has been handled by now (it was sent
    // before the WAN's, which is in); HTTP must still be there, and stay
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(1) {
        let r = bed.http_get("/rootDesc.xml");
        assert!(
            r.as_deref().is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
            "{r:?}\n{}",
            bed.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    add(&bed, "18080");
    assert!(bed.tcp_through(18080, 18080));
}

/// A LAN on a plain port (`option device 'eth0'`, no bridge, so not a
/// name anyone could guess from `lan`): netifd says which device it is,
/// and the daemon serves it. rupnpd 0.1.0 guessed device names at start
/// and exited ("LAN interface lan: no such device", "no usable LAN
/// interface").
#[tokio::test(flavor = "current_thread")]
async fn a_lan_on_a_plain_port_is_served() {
    let mut bed = Bed::with_devices("nport", "eth0", WAN_DEV);
    bed.fw4_start();
    let (_broker, _netifd) = ubus(
        "nport",
        &[
            ("lan", fixture("lan-port.status")),
            ("wan", fixture("wan-dhcp.status")),
        ],
    )
    .await;
    let args = daemon_args(
        &bed,
        "nport",
        "\toption internal_iface 'lan'\n\toption external_iface 'wan'",
    );
    bed.start_raw(&argv(&args));
    let s = status_until("nport", "the LAN from netifd", |s| {
        s.get("lan_devices") == Some(&Value::Array(vec!["eth0".into()]))
    })
    .await;
    assert_eq!(str_field(&s, "wan_device"), Some(WAN_DEV), "{s}");
    let out = bed.upnpc(&["-s"]);
    assert!(
        out.contains(&format!("ExternalIPAddress = {WAN_IP}")),
        "{out}"
    );
    add(&bed, "18080");
    assert!(bed.tcp_through(18080, 18080));
}

/// At boot the daemon can start before netifd has published its
/// interfaces. It says that it waits for netifd (once, with the
/// interface's name), stays up, and serves the LAN netifd names once
/// netifd is there: it follows `ubus.object.add`, so no retry timer is
/// involved.
#[tokio::test(flavor = "current_thread")]
async fn the_daemon_waits_for_netifd() {
    let mut bed = Bed::with_devices("nwait", "eth0", WAN_DEV);
    bed.fw4_start();
    // ubusd is up, netifd is not
    let _broker = Broker::start(&socket_path("nwait"));
    let args = daemon_args(
        &bed,
        "nwait",
        "\toption internal_iface 'lan'\n\toption external_iface 'wan'",
    );
    let pid = bed.spawn(&argv(&args));
    assert!(
        bed.wait_log(
            "LAN interface lan: waiting for netifd to report its device",
            Duration::from_secs(5)
        ),
        "the daemon does not say it waits for netifd:\n{}",
        bed.log()
    );
    assert!(alive(pid), "the daemon exited:\n{}", bed.log());
    // on ubus, so it has asked netifd and got no answer
    let caller = Peer::connect(&socket_path("nwait")).await;
    caller.wait_for("rupnpd", Duration::from_secs(5)).await;
    let _netifd = Netifd::start(
        &socket_path("nwait"),
        &[
            ("lan", fixture("lan-port.status")),
            ("wan", fixture("wan-dhcp.status")),
        ],
    )
    .await;
    bed.wait_ready();
    let s = status_until("nwait", "the LAN from netifd", |s| {
        s.get("lan_devices") == Some(&Value::Array(vec!["eth0".into()]))
    })
    .await;
    assert_eq!(str_field(&s, "wan_device"), Some(WAN_DEV), "{s}");
    assert!(alive(pid));
    let log = bed.log();
    for line in [
        "LAN interface lan: waiting for netifd to report its device",
        "WAN interface wan: waiting for netifd to report its device",
    ] {
        assert_eq!(log.matches(line).count(), 1, "{line}\n{log}");
    }
}
