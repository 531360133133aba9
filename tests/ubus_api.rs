//! The daemon's object on ubus, called the way `ubus call` calls it and the
//! way uhttpd's `/ubus` endpoint calls it (with `ubus_rpc_session`), through
//! a broker of our own with a codec of its own (tests/support); WAN tracking
//! through a netifd stand-in that sends netifd's own payloads
//! (tests/fixtures/netifd); a ubusd restart.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::*;
use support::netifd::{self, Netifd, fixture};
use support::pcp_client;
use support::ubusd::{Broker, Peer, socket_path};
use support::wire::{Value, json};

/// A bed whose daemon knows its interfaces only by their logical names,
/// as the shipped /etc/config/upnpd names them: `wan`, which the netifd
/// stand-in says is a DHCP WAN on `eth1`, and `lan`, OpenWrt's default
/// LAN on the bridge `br-lan`.
struct Setup {
    bed: Bed,
    broker: Broker,
    caller: Peer,
    netifd: Netifd,
    dir: std::path::PathBuf,
}

async fn setup(name: &str) -> Setup {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let sock = socket_path(name);
    let broker = Broker::start(&sock);
    let netifd = Netifd::start(
        &sock,
        &[
            ("lan", fixture("lan-bridge.status")),
            ("wan", fixture("wan-dhcp.status")),
        ],
    )
    .await;
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption internal_iface 'lan'\n\toption external_iface 'wan'\n\
\toption upnp_lease_file '{}'\n\toption ipv6_pinholes '1'\n\nconfig perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n",
        bed.dir.join("leases").display()
    ));
    let d = dir.to_str().unwrap().to_string();
    let s = sock.to_str().unwrap().to_string();
    bed.start_raw(&["--config-dir", &d, "--ubus-socket", &s]);
    let caller = Peer::connect(&sock).await;
    caller.wait_for("rupnpd", Duration::from_secs(5)).await;
    // settled: netifd's answer has reached the daemon
    eventually("the WAN from netifd", async || {
        let s = call(&caller, "status", "{}").await.unwrap();
        s.get("wan_device").and_then(Value::as_str) == Some(WAN_DEV)
            && s.get("lan_devices") == Some(&Value::Array(vec![LAN_DEV.into()]))
    })
    .await;
    Setup {
        bed,
        broker,
        caller,
        netifd,
        dir,
    }
}

/// The next event named `name` whose field `key` is `value` (others,
/// such as the status event of the WAN being learnt, are skipped).
async fn event(l: &mut Peer, name: &str, key: &str, value: Value) -> Value {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        if let Some((n, ev)) = l.next_event(Duration::from_secs(1)).await {
            if n == name && ev.get(key) == Some(&value) {
                return ev;
            }
        }
    }
    panic!("no {name} event with {key} = {value}");
}

async fn call(p: &Peer, method: &str, args: &str) -> Result<Value, u32> {
    p.call("rupnpd", method, json(args))
        .await
        .map(|mut v| v.pop().unwrap_or_else(Value::table))
}

/// A failing call: its status and the `error` text sent before it.
async fn failure(p: &Peer, method: &str, args: &str) -> (u32, String) {
    let id = p.lookup_id("rupnpd").await.unwrap();
    let (data, st) = p.invoke(id, method, json(args)).await;
    let why = data
        .first()
        .and_then(|v| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    (st, why)
}

async fn eventually(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !f().await {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn status_list_delete_flush_with_events() {
    let Setup {
        bed,
        broker: _broker,
        caller,
        netifd: _netifd,
        ..
    } = setup("uapi").await;
    let mut listener = Peer::connect(&socket_path("uapi")).await;
    listener.listen("rupnpd.*").await;

    // netifd told the daemon which device "wan" is (setup waited for it)
    let s = call(&caller, "status", "{}").await.unwrap();
    assert_eq!(
        s.get("external_ip").and_then(Value::as_str),
        Some("192.0.3.1"),
        "{s}"
    );
    assert_eq!(
        s.get("external_ip_private").and_then(Value::as_bool),
        Some(false),
        "{s}"
    );
    assert_eq!(s.get("enabled").and_then(Value::as_bool), Some(true));
    assert_eq!(
        s.get("version").and_then(Value::as_str),
        Some(rupnpd::VERSION)
    );
    assert!(
        s.get("uptime").is_some() && s.get("lan_devices").is_some(),
        "{s}"
    );

    let (code, _) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT_IP, "600", "web"),
    );
    assert_eq!(code, 200);
    let ev = event(&mut listener, "rupnpd.mapping", "action", "add".into()).await;
    assert_eq!(ev.get("external_port").and_then(Value::as_u32), Some(18080));
    assert!(bed.tcp_through(18080, 8080));

    let l = call(&caller, "list", "{}").await.unwrap();
    let maps = l.get("mappings").and_then(Value::as_array).unwrap();
    assert_eq!(maps.len(), 1, "{l}");
    let m = &maps[0];
    assert_eq!(m.get("proto").and_then(Value::as_str), Some("TCP"));
    assert_eq!(
        m.get("internal_ip").and_then(Value::as_str),
        Some(CLIENT_IP)
    );
    assert_eq!(m.get("internal_port").and_then(Value::as_u32), Some(8080));
    assert_eq!(m.get("description").and_then(Value::as_str), Some("web"));
    assert_eq!(m.get("origin").and_then(Value::as_str), Some("upnp-igdv2"));
    assert!(
        m.get("expires")
            .and_then(Value::as_u32)
            .is_some_and(|e| e > 590),
        "{m}"
    );
    assert!(
        m.get("packets")
            .and_then(Value::as_i64)
            .is_some_and(|p| p > 0),
        "{m}"
    );

    assert_eq!(
        call(
            &caller,
            "delete",
            r#"{"proto": "TCP", "external_port": 18080}"#
        )
        .await
        .map(|_| ()),
        Ok(())
    );
    assert!(!bed.tcp_through(18080, 8080));
    assert_eq!(
        call(
            &caller,
            "delete",
            r#"{"proto": "TCP", "external_port": 18080}"#
        )
        .await
        .err(),
        Some(4)
    );
    assert_eq!(
        call(
            &caller,
            "delete",
            r#"{"proto": "SCTP", "external_port": 1}"#
        )
        .await
        .err(),
        Some(2)
    );
    assert_eq!(
        call(&caller, "delete", r#"{"proto": "TCP"}"#).await.err(),
        Some(2)
    );
    // each refusal says what was wrong
    let (st, why) = failure(&caller, "delete", r#"{"proto": "TCP"}"#).await;
    assert_eq!(st, 2);
    assert!(why.contains("external_port (1-65535)"), "{why}");
    let (st, why) = failure(
        &caller,
        "delete",
        r#"{"proto": "TCP", "external_port": 18080}"#,
    )
    .await;
    assert_eq!(st, 4);
    assert_eq!(why, "no TCP mapping on external port 18080");
    let ev = event(&mut listener, "rupnpd.mapping", "action", "delete".into()).await;
    assert_eq!(
        ev.get("reason").and_then(Value::as_str),
        Some("deleted through ubus"),
        "{ev}"
    );

    // renew, refuse and expire events
    for action in ["add", "renew"] {
        let (code, _) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args("18082", "TCP", "8082", CLIENT_IP, "2", "short"),
        );
        assert_eq!(code, 200);
        let ev = event(&mut listener, "rupnpd.mapping", "action", action.into()).await;
        assert_eq!(ev.get("external_port").and_then(Value::as_u32), Some(18082));
    }
    let (code, _) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("80", "TCP", "80", CLIENT_IP, "600", "low port"),
    );
    assert_eq!(code, 500);
    let ev = event(&mut listener, "rupnpd.mapping", "action", "refuse".into()).await;
    assert_eq!(ev.get("external_port").and_then(Value::as_u32), Some(80));
    assert!(
        ev.get("reason")
            .and_then(Value::as_str)
            .is_some_and(|r| !r.is_empty()),
        "{ev}"
    );
    let ev = event(&mut listener, "rupnpd.mapping", "action", "expire".into()).await;
    assert_eq!(ev.get("external_port").and_then(Value::as_u32), Some(18082));

    // an IPv6 pinhole is listed with its counters
    let (code, text) = bed.add_pinhole6(CLIENT6, "8086", "3600");
    assert_eq!(code, 200, "{text}");
    // … and announced like a mapping
    let ev = event(&mut listener, "rupnpd.pinhole", "action", "add".into()).await;
    assert_eq!(ev.get("internal_port").and_then(Value::as_u32), Some(8086));
    assert_eq!(
        ev.get("internal_ip").and_then(Value::as_str),
        Some(CLIENT6),
        "{ev}"
    );
    assert!(bed.tcp6_through(PEER6, CLIENT6, 8086));
    let l = call(&caller, "list", "{}").await.unwrap();
    let pins = l.get("pinholes").and_then(Value::as_array).unwrap();
    assert_eq!(pins.len(), 1, "{l}");
    let p = &pins[0];
    assert_eq!(p.get("internal_ip").and_then(Value::as_str), Some(CLIENT6));
    assert_eq!(p.get("internal_port").and_then(Value::as_u32), Some(8086));
    assert_eq!(p.get("proto").and_then(Value::as_u32), Some(6));
    assert!(
        p.get("expires")
            .and_then(Value::as_u32)
            .is_some_and(|e| e > 3590),
        "{p}"
    );
    assert!(
        p.get("packets")
            .and_then(Value::as_i64)
            .is_some_and(|n| n > 0),
        "{p}"
    );
    assert_eq!(p.get("origin").and_then(Value::as_str), Some("upnp-igdv2"));

    // a PCP MAP over IPv6 is a pinhole of the same table, listed and
    // announced with its origin
    let me: std::net::Ipv6Addr = CLIENT6.parse().unwrap();
    let req = pcp_client::Request::map(me, [4; 12], pcp_client::TCP, 8087, 600);
    let r = bed.in_ns(&bed.c.clone(), move || {
        let s = std::net::UdpSocket::bind((me, 0)).unwrap();
        let server =
            std::net::SocketAddr::from((LAN6.parse::<std::net::Ipv6Addr>().unwrap(), 5351));
        pcp_client::exchange(&s, server, &req, pcp_client::Retransmit::fast()).unwrap()
    });
    assert_eq!(r.result, pcp_client::result::SUCCESS, "{r:?}");
    let ev = event(&mut listener, "rupnpd.pinhole", "origin", "pcp".into()).await;
    assert_eq!(
        ev.get("action").and_then(Value::as_str),
        Some("add"),
        "{ev}"
    );
    assert_eq!(ev.get("internal_port").and_then(Value::as_u32), Some(8087));
    let l = call(&caller, "list", "{}").await.unwrap();
    let pins = l.get("pinholes").and_then(Value::as_array).unwrap();
    let origins: Vec<(u32, &str)> = pins
        .iter()
        .map(|p| {
            (
                p.get("internal_port").and_then(Value::as_u32).unwrap_or(0),
                p.get("origin").and_then(Value::as_str).unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(origins, [(8086, "upnp-igdv2"), (8087, "pcp")], "{l}");
    assert!(bed.tcp6_through(PEER6, CLIENT6, 8087));

    for p in ["20000", "20001"] {
        bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(p, "UDP", p, CLIENT_IP, "600", "x"),
        );
    }
    let f = call(&caller, "flush", "{}").await.unwrap();
    assert_eq!(f.get("deleted").and_then(Value::as_u32), Some(2), "{f}");
    assert_eq!(f.get("pinholes").and_then(Value::as_u32), Some(2), "{f}");
    let ev = event(&mut listener, "rupnpd.pinhole", "action", "delete".into()).await;
    assert_eq!(
        ev.get("reason").and_then(Value::as_str),
        Some("flushed through ubus"),
        "{ev}"
    );
    assert!(bed.dnat_elements().is_empty());
    assert_eq!(call(&caller, "reload", "{}").await.map(|_| ()), Ok(()));
    assert_eq!(call(&caller, "nope", "{}").await.err(), Some(3));
}

#[tokio::test(flavor = "current_thread")]
async fn set_toggles_apply_live_and_persist() {
    let Setup {
        bed,
        broker: _broker,
        caller,
        netifd: _netifd,
        dir,
        ..
    } = setup("uset").await;
    let mut listener = Peer::connect(&socket_path("uset")).await;
    listener.listen("rupnpd.status").await;
    assert_eq!(
        call(
            &caller,
            "set",
            r#"{"secure_mode": false, "log_packets": true}"#
        )
        .await
        .map(|_| ()),
        Ok(())
    );
    let ev = event(&mut listener, "rupnpd.status", "reason", "set".into()).await;
    assert_eq!(
        ev.get("secure_mode").and_then(Value::as_bool),
        Some(false),
        "{ev}"
    );
    let text = std::fs::read_to_string(dir.join("upnpd")).unwrap();
    assert!(
        text.contains("\toption secure_mode '0'\n") && text.contains("\toption log_packets '1'\n"),
        "{text}"
    );
    assert!(
        bed.nft("list chain inet fw4 upnp_forward")
            .contains("rupnpd pkt")
    );
    // secure mode off: a mapping for another LAN host is allowed now
    let (code, t) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18081", "TCP", "8081", CLIENT2_IP, "600", "x"),
    );
    assert_eq!(code, 200, "{t}");
    // switching the service off removes the mappings and stops serving
    assert_eq!(
        call(&caller, "set", r#"{"enabled": false}"#)
            .await
            .map(|_| ()),
        Ok(())
    );
    assert!(bed.dnat_elements().is_empty());
    assert!(bed.http_get("/rootDesc.xml").is_err());
    let s = call(&caller, "status", "{}").await.unwrap();
    assert_eq!(s.get("enabled").and_then(Value::as_bool), Some(false));
    assert_eq!(
        call(&caller, "set", r#"{"enabled": true}"#)
            .await
            .map(|_| ()),
        Ok(())
    );
    bed.wait_ready();
    // bad arguments
    assert_eq!(
        call(&caller, "set", r#"{"enabled": "yes"}"#).await.err(),
        Some(2)
    );
    assert_eq!(
        call(&caller, "set", r#"{"colour": true}"#).await.err(),
        Some(2)
    );
    assert_eq!(call(&caller, "set", "{}").await.err(), Some(2));
    let (st, why) = failure(&caller, "set", r#"{"colour": true}"#).await;
    assert_eq!(st, 2);
    assert!(
        why.starts_with("unknown toggle \"colour\"; allowed: enabled,"),
        "{why}"
    );
    let (_, why) = failure(&caller, "set", r#"{"enabled": "yes"}"#).await;
    assert_eq!(why, "enabled must be a boolean (true/false or 0/1)");

    // reload of an invalid file: refused with the error, the running
    // configuration (and its mappings) kept
    let good = std::fs::read_to_string(dir.join("upnpd")).unwrap();
    std::fs::write(
        dir.join("upnpd"),
        good.replacen(
            "config upnpd 'config'\n",
            "config upnpd 'config'\n\toption port 'abc'\n",
            1,
        ),
    )
    .unwrap();
    let (st, why) = failure(&caller, "reload", "{}").await;
    assert_eq!(st, 2);
    assert!(
        why.starts_with("configuration refused, the running one is kept: "),
        "{why}"
    );
    assert!(why.contains("abc"), "{why}");
    assert!(bed.http_get("/rootDesc.xml").is_ok());
    std::fs::write(dir.join("upnpd"), good).unwrap();
    assert_eq!(call(&caller, "reload", "{}").await.map(|_| ()), Ok(()));
}

/// Issue 13 item 9: a UCI lock held by another process (the `uci` CLI,
/// rpcd) never stalls the daemon. While it is held, `set` is answered at
/// once with the reason and SOAP is served; once it is released, `set`
/// stores the toggle.
#[tokio::test(flavor = "current_thread")]
async fn set_while_another_process_holds_the_uci_lock() {
    use std::os::fd::AsRawFd;
    let Setup {
        bed,
        broker: _broker,
        caller,
        netifd: _netifd,
        dir,
        ..
    } = setup("ulock").await;
    let file = std::fs::File::open(dir.join("upnpd")).unwrap();
    // the lock `uci commit` takes on the file it replaces
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    let set = failure(&caller, "set", r#"{"log_packets": true}"#);
    let (st, why) = tokio::time::timeout(Duration::from_secs(5), set)
        .await
        .expect("set is answered while another process holds the lock");
    assert_eq!(st, 13, "{why}");
    assert!(why.contains("locked by another process"), "{why}");
    let (code, t) = bed.soap(CLIENT_IP, "WANIPConnection:2", "GetExternalIPAddress", &[]);
    assert_eq!(code, 200, "{t}");
    let text = std::fs::read_to_string(dir.join("upnpd")).unwrap();
    assert!(!text.contains("log_packets"), "{text}");
    let s = call(&caller, "status", "{}").await.unwrap();
    assert_eq!(s.get("log_packets").and_then(Value::as_bool), Some(false));

    drop(file);
    assert_eq!(
        call(&caller, "set", r#"{"log_packets": true}"#)
            .await
            .map(|_| ()),
        Ok(())
    );
    let text = std::fs::read_to_string(dir.join("upnpd")).unwrap();
    assert!(text.contains("\toption log_packets '1'\n"), "{text}");
}

#[tokio::test(flavor = "current_thread")]
async fn wan_changes_from_netifd_and_a_ubusd_restart() {
    let Setup {
        bed,
        broker,
        caller,
        netifd,
        ..
    } = setup("uwan").await;
    let mut listener = Peer::connect(&socket_path("uwan")).await;
    listener.listen("rupnpd.status").await;
    // a DHCP renewal brings a new address: netifd's interface.update
    let renewed = fixture("wan-dhcp.renewed.update");
    eventually("the new address", async || {
        netifd.send("interface.update", renewed.clone()).await;
        let (_, t) = bed.soap(CLIENT_IP, "WANIPConnection:2", "GetExternalIPAddress", &[]);
        element(&t, "NewExternalIPAddress") == Some("192.0.3.7")
    })
    .await;
    let ev = event(
        &mut listener,
        "rupnpd.status",
        "external_ip",
        "192.0.3.7".into(),
    )
    .await;
    assert_eq!(
        ev.get("reason").and_then(Value::as_str),
        Some("wan"),
        "{ev}"
    );
    drop(listener);
    drop((caller, netifd));
    broker.stop();
    // ubusd restarts: the daemon reconnects and registers again
    let sock = socket_path("uwan");
    let _broker = Broker::start(&sock);
    let caller = Peer::connect(&sock).await;
    caller.wait_for("rupnpd", Duration::from_secs(10)).await;
    let s = call(&caller, "status", "{}").await.unwrap();
    assert_eq!(
        s.get("version").and_then(Value::as_str),
        Some(rupnpd::VERSION)
    );
    // netifd comes back; its interface.update moves the WAN again
    let lease = netifd::renumbered(&fixture("wan-dhcp.status"), "192.0.3.1", "192.0.3.9");
    let netifd = Netifd::start(
        &sock,
        &[
            ("lan", fixture("lan-bridge.status")),
            ("wan", lease.clone()),
        ],
    )
    .await;
    // the daemon subscribes when the object appears; notify until it hears
    eventually("the new address", async || {
        netifd.update("wan", lease.clone()).await;
        let (_, t) = bed.soap(CLIENT_IP, "WANIPConnection:2", "GetExternalIPAddress", &[]);
        element(&t, "NewExternalIPAddress") == Some("192.0.3.9")
    })
    .await;
    assert!(
        bed.nft("list set inet fw4 upnp_extaddr")
            .contains("192.0.3.9")
    );
    // ifdown wan: netifd's interface.down, the WAN is disconnected
    netifd
        .send("interface.down", fixture("wan-dhcp.down"))
        .await;
    eventually("the WAN down", async || {
        let s = call(&caller, "status", "{}").await.unwrap();
        s.get("wan_up").and_then(Value::as_bool) == Some(false)
    })
    .await;
    // and up again
    netifd.update("wan", lease).await;
    eventually("the WAN up", async || {
        let s = call(&caller, "status", "{}").await.unwrap();
        s.get("wan_up").and_then(Value::as_bool) == Some(true)
    })
    .await;
    let log = bed.log();
    assert!(log.contains("ubus: connection lost"), "{log}");
}

/// A call as uhttpd's `/ubus` endpoint forwards it: the arguments, then
/// `ubus_rpc_session` (a 32-hex-digit rpcd session id).
async fn call_via_uhttpd(p: &Peer, method: &str, args: &str) -> (Vec<Value>, u32) {
    let id = p.lookup_id("rupnpd").await.unwrap();
    let args = json(args).with("ubus_rpc_session", "0123456789abcdef0123456789abcdef");
    p.invoke(id, method, args).await
}

/// Every method answers a call through uhttpd/rpcd (with
/// `ubus_rpc_session`) exactly as it answers the `ubus` CLI (without).
#[tokio::test(flavor = "current_thread")]
async fn every_method_answers_uhttpd_as_it_answers_the_cli() {
    let Setup {
        bed,
        broker: _broker,
        caller,
        netifd: _netifd,
        dir,
        ..
    } = setup("usess").await;
    let cli = |method: &'static str, args: &'static str| {
        let caller = &caller;
        async move {
            let id = caller.lookup_id("rupnpd").await.unwrap();
            caller.invoke(id, method, json(args)).await
        }
    };
    let add = |port: &str| {
        let (code, _) = bed.soap(
            CLIENT_IP,
            "WANIPConnection:2",
            "AddPortMapping",
            &add_args(port, "TCP", port, CLIENT_IP, "600", "x"),
        );
        assert_eq!(code, 200);
    };

    // status: the same table (uptime may tick between the two calls)
    let (mut a, st_a) = call_via_uhttpd(&caller, "status", "{}").await;
    let (mut b, st_b) = cli("status", "{}").await;
    assert_eq!((st_a, st_b), (0, 0));
    for v in a.iter_mut().chain(b.iter_mut()) {
        if let Value::Table(t) = v {
            t.retain(|(n, _)| n != "uptime");
        }
    }
    assert_eq!(a, b);

    // list
    add("18090");
    let a = call_via_uhttpd(&caller, "list", "{}").await;
    let b = cli("list", "{}").await;
    assert_eq!(a.1, 0);
    assert_eq!(a, b);

    // set: the session is not a toggle; the toggle is applied and stored
    assert_eq!(
        call_via_uhttpd(&caller, "set", r#"{"log_connections": true}"#).await,
        (vec![Value::table()], 0)
    );
    let text = std::fs::read_to_string(dir.join("upnpd")).unwrap();
    assert!(text.contains("\toption log_connections '1'\n"), "{text}");
    // ... and the session alone is an empty set, refused as such
    let (data, st) = call_via_uhttpd(&caller, "set", "{}").await;
    assert_eq!((data, st), cli("set", "{}").await);
    assert_eq!(st, 2);

    // delete: found, then not found with the same words as the CLI gets
    let args = r#"{"proto": "TCP", "external_port": 18090}"#;
    assert_eq!(
        call_via_uhttpd(&caller, "delete", args).await,
        (vec![Value::table()], 0)
    );
    let a = call_via_uhttpd(&caller, "delete", args).await;
    assert_eq!(a.1, 4);
    assert_eq!(a, cli("delete", args).await);

    // flush
    add("18091");
    let (data, st) = call_via_uhttpd(&caller, "flush", "{}").await;
    assert_eq!(st, 0);
    assert_eq!(data, vec![json(r#"{"deleted": 1, "pinholes": 0}"#)]);

    // reload
    assert_eq!(
        call_via_uhttpd(&caller, "reload", "{}").await,
        (vec![Value::table()], 0)
    );

    // a method the object does not have
    assert_eq!(call_via_uhttpd(&caller, "nope", "{}").await.1, 3);
}

#[test]
fn without_ubusd_the_daemon_runs_and_warns_once() {
    let mut bed = Bed::new("noub");
    bed.fw4_start();
    let sock = std::env::temp_dir().join("rupnpd-no-such-ubusd.sock");
    bed.start(&["--ubus-socket", sock.to_str().unwrap()]);
    std::thread::sleep(Duration::from_secs(5));
    assert!(bed.upnpc(&["-s"]).contains("ExternalIPAddress = 192.0.3.1"));
    let log = bed.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("ubus") && l.starts_with("warn"))
            .count(),
        1,
        "{log}"
    );
}

/// Prints what `ubus call rupnpd …` answers, for the README
/// (`cargo test --test ubus_api readme_examples -- --ignored --nocapture`).
#[tokio::test(flavor = "current_thread")]
#[ignore]
async fn readme_examples() {
    let Setup {
        bed,
        broker: _b,
        caller,
        netifd: _n,
        ..
    } = setup("urdme").await;
    bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT_IP, "3600", "web server"),
    );
    assert!(bed.tcp_through(18080, 8080));
    for (m, a) in [
        ("status", "{}"),
        ("list", "{}"),
        ("delete", r#"{"proto": "TCP", "external_port": 18080}"#),
        ("delete", r#"{"proto": "TCP", "external_port": 18080}"#),
        ("set", r#"{"log_connections": true}"#),
        ("flush", "{}"),
    ] {
        match call(&caller, m, a).await {
            Ok(v) => println!("$ ubus call rupnpd {m} '{a}'\n{v}\n"),
            Err(s) => println!("$ ubus call rupnpd {m} '{a}'\nCommand failed: status {s}\n"),
        }
    }
}
