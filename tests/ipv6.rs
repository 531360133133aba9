//! Discovery, pinholes and eventing over IPv6 through real packets: the bed
//! has fd77::/64 on the LAN and 2001:db8:3::/64 on the WAN, and the
//! router's fw4 ruleset drops forwarded traffic unless a pinhole admits
//! it. `upnpc -6` discovers the daemon over SSDP and drives
//! WANIPv6FirewallControl; our own SSDP searches and listeners check the
//! messages; GENA subscribers at IPv6 addresses receive their events.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::*;

/// A bed with fw4, the daemon with lease files and the shipped rules
/// (`extra` adds options to the `config` section).
fn started(name: &str, extra: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let dir = bed.config(&config(&bed, extra));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    bed
}

fn config(bed: &Bed, extra: &str) -> String {
    bed.upnpd_with_leases(extra)
}

/// `upnpc -6` in the LAN namespace, discovering the gateway over SSDP
/// (no `-u`): M-SEARCH to [ff02::c] and [ff05::c] out of `c-eth0`.
fn upnpc6(bed: &Bed, args: &[&str]) -> String {
    require(&["upnpc"]);
    let mut full = vec!["timeout", "30", "upnpc", "-6", "-m", "c-eth0"];
    full.extend_from_slice(args);
    let o = bed.exec(&bed.c, &full);
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// The value after `key` on the line that has it.
fn after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.split_once(key).map(|(_, v)| v.trim()))
}

#[test]
fn upnpc_discovers_over_ssdp6_and_opens_a_pinhole_that_lets_ipv6_through() {
    let bed = started("v6upnpc", "");
    let out = upnpc6(&bed, &["-S"]);
    // UDA Annex A: the LAN's address in brackets (the ULA, the only one)
    assert!(
        out.contains(" desc: http://[fd77::1]:5000/rootDesc.xml"),
        "{out}\n{}",
        bed.log()
    );
    assert!(
        out.contains("Found valid IGD : http://[fd77::1]:5000/"),
        "{out}"
    );
    assert!(
        out.contains("FirewallEnabled: 1 & Inbound Pinhole Allowed: 1"),
        "{out}"
    );

    // the LAN host has two addresses; upnpc's `@` is the one it reached
    // the gateway from, which secure mode lets it open
    let me = after(&out, "Local LAN ip address :")
        .expect(&out)
        .to_string();
    assert!([CLIENT6, CLIENT6_2].contains(&me.as_str()), "{out}");
    assert!(!bed.tcp6_through(PEER6, &me, 8080), "closed before");
    let out = upnpc6(&bed, &["-A", "", "0", "@", "8080", "TCP", "600"]);
    let id = after(&out, "Pinhole ID =").expect(&out).to_string();
    assert!(bed.tcp6_through(PEER6, &me, 8080), "open while it lives");
    // checked and counted through the same discovery
    let out = upnpc6(&bed, &["-K", &id]);
    let packets: u32 = after(&out, "PinholePackets =")
        .and_then(|v| v.parse().ok())
        .expect(&out);
    assert!(packets > 0, "{out}");
    let out = upnpc6(&bed, &["-C", &id]);
    assert!(
        out.contains(&format!("Pinhole ID = {id} / IsWorking = Yes")),
        "{out}"
    );
    // the firewall's pinhole sets and the lease file hold it
    let six = std::fs::read_to_string(bed.dir.join("leases6")).unwrap();
    assert!(six.contains(&format!("TCP;{me};8080;;0;{id};")), "{six}");
    let out = upnpc6(&bed, &["-D", &id]);
    assert!(!out.contains("failed"), "{out}");
    assert!(!bed.tcp6_through(PEER6, &me, 8080), "closed after delete");
    let six = std::fs::read_to_string(bed.dir.join("leases6")).unwrap();
    assert!(!six.contains(";8080;"), "{six}");

    // WANIPConnection answers over the same discovery: the IPv4 mapping
    // of the LAN's IPv4 host is listed; a range delete finds none of the
    // IPv6 control point's own (it holds no IPv4 mapping): 730
    let out = bed.upnpc(&["-e", "v4", "-a", CLIENT_IP, "8081", "18081", "TCP", "600"]);
    assert!(out.contains("is redirected"), "{out}");
    let out = upnpc6(&bed, &["-L"]);
    assert!(out.contains("TCP 18081->192.168.77.2:8081"), "{out}");
    let out = upnpc6(&bed, &["-N", "18000", "18100", "TCP"]);
    assert!(out.contains("730"), "{out}");
    assert_eq!(bed.dnat_elements().len(), 1);
}

// ------------------------------------------------------------------ SSDP

/// The interface index of `dev` in namespace `ns`.
fn ifindex(bed: &Bed, ns: &str, dev: &str) -> u32 {
    let o = bed.exec(ns, &["cat", &format!("/sys/class/net/{dev}/ifindex")]);
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
}

/// A socket on the LAN host in both SSDP groups, as a control point
/// listening for NOTIFYs over IPv6.
fn ssdp6_listener(bed: &Bed) -> UdpSocket {
    let ix = ifindex(bed, &bed.c, "c-eth0");
    in_netns(&bed.c, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, 1900)).into())
            .unwrap();
        for g in ["ff02::c", "ff05::c"] {
            s.join_multicast_v6(&g.parse().unwrap(), ix).unwrap();
        }
        s.into()
    })
}

/// A socket on the LAN host for searching: bound to `from` (`::` lets the
/// kernel pick: a link-local source for FF02::C), sending out of c-eth0.
fn searcher(bed: &Bed, from: &str) -> (UdpSocket, u32) {
    let ix = ifindex(bed, &bed.c, "c-eth0");
    let from: Ipv6Addr = from.parse().unwrap();
    let s = in_netns(&bed.c, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_only_v6(true).unwrap();
        s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        s.set_multicast_if_v6(ix).unwrap();
        let u: UdpSocket = s.into();
        u
    });
    (s, ix)
}

fn msearch(group: &str, st: &str) -> Vec<u8> {
    format!(
        "M-SEARCH * HTTP/1.1\r\nHOST: [{group}]:1900\r\nMAN: \"ssdp:discover\"\r\nMX: 1\r\nST: {st}\r\n\r\n"
    )
    .into_bytes()
}

/// The datagrams `sock` receives until it has been quiet for `quiet`.
fn drain(sock: &UdpSocket, quiet: Duration) -> Vec<(SocketAddr, String)> {
    sock.set_read_timeout(Some(quiet)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok((n, from)) = sock.recv_from(&mut buf) {
        out.push((from, String::from_utf8_lossy(&buf[..n]).into_owned()));
    }
    out
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Searches on FF02::C (from a link-local address) and FF05::C (from the
/// ULA) get the same answers as over IPv4, from the router's link-local
/// or ULA address, with LOCATION naming the ULA in brackets.
#[test]
fn ssdp6_answers_searches_on_both_groups_as_ipv4_does() {
    let bed = started("v6ssdp", "");
    let v4 = udp_in(&bed.c, CLIENT_IP);
    let search4 = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
MAN: \"ssdp:discover\"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n";
    v4.send_to(search4, ("239.255.255.250", 1900)).unwrap();
    let sts4: Vec<String> = drain(&v4, Duration::from_millis(1500))
        .iter()
        .filter_map(|(_, m)| header(m, "ST").map(String::from))
        .collect();
    assert!(sts4.len() >= 9, "{sts4:?}");

    for (group, from) in [("ff02::c", "::"), ("ff05::c", CLIENT6)] {
        let (s, ix) = searcher(&bed, from);
        let to = SocketAddrV6::new(group.parse().unwrap(), 1900, 0, ix);
        s.send_to(&msearch(group, "ssdp:all"), to).unwrap();
        let mut replies = drain(&s, Duration::from_millis(1500));
        if replies.is_empty() {
            // A multicast datagram may be lost, and a control point sends
            // its search again (UDA 1.1 §1.3.2); said, so that a pattern
            // of losses shows in the logs. All or nothing still holds.
            eprintln!("{group}: no answer in 1.5 s; searching again");
            s.send_to(&msearch(group, "ssdp:all"), to).unwrap();
            replies = drain(&s, Duration::from_millis(1500));
        }
        let mut sts: Vec<String> = replies
            .iter()
            .filter_map(|(_, m)| header(m, "ST").map(String::from))
            .collect();
        sts.sort();
        let mut want = sts4.clone();
        want.sort();
        assert_eq!(sts, want, "{group}");
        for (src, m) in &replies {
            assert_eq!(
                header(m, "LOCATION"),
                Some("http://[fd77::1]:5000/rootDesc.xml"),
                "{m}"
            );
            let SocketAddr::V6(src) = src else {
                panic!("{src}")
            };
            // a link-local searcher hears from the router's link-local
            // address, a ULA one from its ULA
            if from == "::" {
                assert!(src.ip().segments()[0] == 0xfe80, "{src}");
            } else {
                assert_eq!(src.ip().to_string(), LAN6);
            }
            assert_eq!(src.port(), 1900);
        }
    }
}

/// `ssdp:alive` at start and `ssdp:byebye` at stop go to FF02::C and
/// FF05::C too, each with its group as HOST and the bracketed LOCATION.
#[test]
fn ssdp6_alive_and_byebye_on_both_groups() {
    let mut bed = Bed::new("v6notify");
    bed.fw4_start();
    let listener = ssdp6_listener(&bed);
    let dir = bed.config(&config(&bed, ""));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    let alive = drain(&listener, Duration::from_millis(1500));
    let hosts = |msgs: &[(SocketAddr, String)], nts: &str| {
        let mut h: Vec<String> = msgs
            .iter()
            .filter(|(_, m)| header(m, "NTS") == Some(nts))
            .filter_map(|(_, m)| header(m, "HOST").map(String::from))
            .collect();
        h.sort();
        h.dedup();
        h
    };
    assert_eq!(
        hosts(&alive, "ssdp:alive"),
        ["[FF02::C]:1900", "[FF05::C]:1900"],
        "{alive:?}\n{}",
        bed.log()
    );
    let per_group = alive.len() / 2;
    assert!(per_group >= 9, "{alive:?}");
    for (_, m) in &alive {
        assert_eq!(
            header(m, "LOCATION"),
            Some("http://[fd77::1]:5000/rootDesc.xml")
        );
        assert!(header(m, "BOOTID.UPNP.ORG").is_some(), "{m}");
    }
    bed.stop();
    let bye = drain(&listener, Duration::from_millis(1000));
    assert_eq!(
        hosts(&bye, "ssdp:byebye"),
        ["[FF02::C]:1900", "[FF05::C]:1900"]
    );
    assert_eq!(bye.len(), alive.len(), "one byebye for every alive");
}

/// The same rate limits as IPv4, counted per /64: a flood of searches
/// from two addresses of one /64 gets at most one source's burst and rate
/// in all (two sources would get twice the burst at once), and a host on
/// a link-local address is its own source, still answered.
#[test]
fn ssdp6_floods_are_limited_like_ipv4_per_64() {
    let bed = started("v6flood", "");
    let (s1, ix) = searcher(&bed, CLIENT6);
    let (s2, _) = searcher(&bed, CLIENT6_2);
    let to = SocketAddrV6::new("ff05::c".parse().unwrap(), 1900, 0, ix);
    let search = msearch("ff05::c", "ssdp:all");
    // a short flood, sent in a few milliseconds: two sources would get
    // their burst each (64), one gets 32 and a trickle
    let t0 = Instant::now();
    for i in 0..200 {
        let s = if i % 2 == 0 { &s1 } else { &s2 };
        s.send_to(&search, to).unwrap();
    }
    let flood = t0.elapsed();
    let r2 = std::thread::spawn(move || drain(&s2, Duration::from_millis(1500)).len());
    let r1 = drain(&s1, Duration::from_millis(1500)).len();
    let replies = r1 + r2.join().unwrap();
    // 32 at once, then 16 a second of searching (core::ssdp), one second
    // of slack
    let bound = 32 + (16.0 * (flood.as_secs_f64() + 1.0)) as usize;
    assert!(
        replies >= 32 && replies <= bound && bound < 64,
        "{replies} replies ({r1} to one address), bound {bound}"
    );
    // a link-local searcher is its own source
    let (ll, ix) = searcher(&bed, "::");
    let to = SocketAddrV6::new("ff02::c".parse().unwrap(), 1900, 0, ix);
    ll.send_to(&msearch("ff02::c", "upnp:rootdevice"), to)
        .unwrap();
    assert_eq!(drain(&ll, Duration::from_millis(1500)).len(), 1);
}

/// Nothing answers IPv6 on the WAN side, and not because a firewall hides
/// the daemon (no fw4 here): SSDP and PCP sent from the WAN host to the
/// router's LAN and WAN addresses get no reply, HTTP to the WAN address
/// is refused.
#[test]
fn nothing_answers_ipv6_on_the_wan_side() {
    let mut bed = Bed::new("v6wan");
    let dir = bed.config(&config(&bed, ""));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    let peer: Ipv6Addr = PEER6.parse().unwrap();
    let w = in_netns(&bed.w, move || UdpSocket::bind((peer, 0)).unwrap());
    let announce = pcp_announce(PEER6);
    for dst in [LAN6, "2001:db8:3::1"] {
        let dst: Ipv6Addr = dst.parse().unwrap();
        w.send_to(&msearch("ff05::c", "ssdp:all"), (dst, 1900))
            .unwrap();
        w.send_to(&announce, (dst, 5351)).unwrap();
    }
    assert!(drain(&w, Duration::from_millis(1500)).is_empty());
    let refused = in_netns(&bed.w, || {
        std::net::TcpStream::connect_timeout(
            &"[2001:db8:3::1]:5000".parse().unwrap(),
            Duration::from_secs(2),
        )
        .is_err()
    });
    assert!(refused);
    // the same PCP probe from the LAN host is answered
    let c: Ipv6Addr = CLIENT6.parse().unwrap();
    let lan = in_netns(&bed.c, move || UdpSocket::bind((c, 0)).unwrap());
    lan.send_to(&pcp_announce(CLIENT6), (LAN6, 5351)).unwrap();
    let got = drain(&lan, Duration::from_millis(1500));
    assert_eq!(got.len(), 1, "{}", bed.log());
}

/// A PCP ANNOUNCE request from `client` (RFC 6887 §14.1).
fn pcp_announce(client: &str) -> Vec<u8> {
    let mut b = vec![2, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&client.parse::<Ipv6Addr>().unwrap().octets());
    b
}

// ---------------------------------------------------------- HTTP and GENA

/// Raw HTTP from the LAN host at `from` to the router's ULA.
fn http6(bed: &Bed, from: &str, raw: String) -> String {
    let from: Ipv6Addr = from.parse().unwrap();
    in_netns(&bed.c, move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
        let to: SocketAddr = format!("[{LAN6}]:5000").parse().unwrap();
        s.connect_timeout(&to.into(), Duration::from_secs(2))
            .unwrap();
        let mut t: std::net::TcpStream = s.into();
        t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        t.write_all(raw.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = t.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The DNS-rebinding defence over IPv6: the bracketed literal of the
/// address the client reached is the only Host taken.
#[test]
fn the_host_header_over_ipv6_is_the_bracketed_literal() {
    let bed = started("v6host", "");
    let get = |host: &str| {
        http6(
            &bed,
            CLIENT6,
            format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };
    for host in ["[fd77::1]:5000", "[fd77::1]"] {
        let r = get(host);
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{host}: {r}");
        assert!(
            r.contains("<presentationURL>http://[fd77::1]/</presentationURL>"),
            "{r}"
        );
    }
    for host in [
        "fd77::1",
        "fd77::1:5000",
        "[fd77::1]:80",
        "[fd77::2]:5000",
        "[fd77::1%25br-lan]:5000",
        "192.168.77.1:5000",
        "rebind.example:5000",
    ] {
        let r = get(host);
        assert!(r.starts_with("HTTP/1.1 400 "), "{host}: {r}");
    }
}

/// GENA from an IPv6 control point: its own address is the only callback
/// taken (CallStranger), the events arrive there with a bracketed HOST,
/// and a mapping added over IPv4 is evented to it.
#[test]
fn gena_over_ipv6_calls_back_only_the_subscriber() {
    let bed = started("v6gena", "");
    let me: Ipv6Addr = CLIENT6.parse().unwrap();
    let l = in_netns(&bed.c, move || {
        bind_retry(|| TcpListener::bind(SocketAddr::from((me, 4000))))
    });
    let subscribe = |cb: &str| {
        http6(
            &bed,
            CLIENT6,
            format!(
                "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nHost: [fd77::1]:5000\r\nCALLBACK: <{cb}>\r\n\
NT: upnp:event\r\nTIMEOUT: Second-300\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    // another host of the LAN, the router, a WAN host, an IPv4 address
    for cb in [
        "http://[fd77::3]:4000/cb",
        "http://[fd77::1]:4000/cb",
        "http://[2001:db8:3::2]:4000/cb",
        "http://192.168.77.2:4000/cb",
    ] {
        let r = subscribe(cb);
        assert!(r.starts_with("HTTP/1.1 412 "), "{cb}: {r}");
    }
    let r = subscribe("http://[fd77::2]:4000/cb");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let sid = header(&r, "SID").unwrap().to_string();
    let ev = receive_event(&l, Duration::from_secs(5)).expect("the initial event");
    assert!(
        ev.starts_with("NOTIFY /cb HTTP/1.1\r\nHOST: [fd77::2]:4000\r\n"),
        "{ev}"
    );
    assert!(
        ev.contains(&format!("SID: {sid}\r\n")) && ev.contains("SEQ: 0\r\n"),
        "{ev}"
    );
    // a pinhole is no IPv4 mapping: PortMappingNumberOfEntries stays 0,
    // but a mapping added over IPv4 is told to the IPv6 subscriber
    let out = bed.upnpc(&["-e", "ev", "-a", CLIENT_IP, "8080", "18080", "TCP", "600"]);
    assert!(out.contains("is redirected"), "{out}");
    let ev = receive_event(&l, Duration::from_secs(5)).expect("the change");
    assert!(ev.contains("SEQ: 1\r\n"), "{ev}");
    assert!(
        ev.contains("<PortMappingNumberOfEntries>1</PortMappingNumberOfEntries>"),
        "{ev}"
    );
}

// ------------------------------------------------------------ ipv6_disable

/// The IPv6 sockets in the router namespace (the daemon is the only
/// process there), as `ss` lists them: `proto local-address`.
fn ipv6_sockets(bed: &Bed) -> Vec<String> {
    require(&["ss"]);
    let o = bed.exec(&bed.r, &["ss", "-H", "-n", "-a", "-6", "-t", "-u"]);
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", f[0], f.get(4).unwrap_or(&""))
        })
        .collect()
}

/// With `ipv6_disable 1` the daemon opens no IPv6 socket at all (no SSDP,
/// PCP or HTTP over IPv6) and sends nothing to the IPv6 groups; without
/// it, those are exactly the IPv6 sockets it has.
#[test]
fn ipv6_disable_opens_nothing() {
    let mut bed = Bed::new("v6off");
    bed.fw4_start();
    let listener = ssdp6_listener(&bed);
    let dir = bed.config(&config(&bed, "\toption ipv6_disable '1'"));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    assert_eq!(ipv6_sockets(&bed), Vec::<String>::new(), "{}", bed.log());
    let (s, ix) = searcher(&bed, "::");
    let to = SocketAddrV6::new("ff02::c".parse().unwrap(), 1900, 0, ix);
    s.send_to(&msearch("ff02::c", "ssdp:all"), to).unwrap();
    assert!(drain(&s, Duration::from_millis(1500)).is_empty());
    // (the listener hears our own search, looped back: no NOTIFY)
    let heard = drain(&listener, Duration::from_millis(100));
    assert!(
        heard.iter().all(|(_, m)| m.starts_with("M-SEARCH")),
        "{heard:?}"
    );
    let out = upnpc6(&bed, &["-s"]);
    assert!(out.contains("No IGD UPnP Device found"), "{out}");
    bed.stop();

    // the same daemon with IPv6: these are its IPv6 sockets
    let dir = bed.config(&config(&bed, ""));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    let mut got = ipv6_sockets(&bed);
    got.sort();
    assert_eq!(
        got,
        [
            format!("tcp [fd77::1]%{}:5000", bed.lan_dev),
            format!("udp [::]%{}:1900", bed.lan_dev),
            format!("udp [fd77::1]%{}:5351", bed.lan_dev),
        ],
        "{}",
        bed.log()
    );
}

/// LOCATION names our address in the searcher's prefix, else the ULA; a
/// global prefix the LAN gains while the daemon runs is served at once
/// (the front ends follow the LAN's addresses, keeping the listeners they
/// still need), and one it loses is served no longer.
#[test]
fn location_follows_the_searchers_prefix_and_the_lans_addresses() {
    let bed = started("v6loc", "");
    let dev = bed.lan_dev.clone();
    let ok = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr))
    };
    ok(bed.exec(
        &bed.r,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:1::1/64",
            "dev",
            &dev,
            "nodad",
        ],
    ));
    ok(bed.exec(
        &bed.c,
        &[
            "ip",
            "-6",
            "addr",
            "add",
            "2001:db8:1::2/64",
            "dev",
            "c-eth0",
            "nodad",
        ],
    ));
    assert!(
        bed.wait_log(
            "HTTP listening on [2001:db8:1::1]:5000",
            Duration::from_secs(5)
        ),
        "{}",
        bed.log()
    );
    let location = |from: &str, group: &str| {
        let (s, ix) = searcher(&bed, from);
        let to = SocketAddrV6::new(group.parse().unwrap(), 1900, 0, ix);
        s.send_to(&msearch(group, "upnp:rootdevice"), to).unwrap();
        let r = drain(&s, Duration::from_millis(1500));
        r.first()
            .and_then(|(_, m)| header(m, "LOCATION").map(String::from))
            .unwrap_or_default()
    };
    assert_eq!(
        location("2001:db8:1::2", "ff05::c"),
        "http://[2001:db8:1::1]:5000/rootDesc.xml"
    );
    assert_eq!(
        location("::", "ff02::c"),
        "http://[fd77::1]:5000/rootDesc.xml"
    );
    assert_eq!(
        location(CLIENT6, "ff05::c"),
        "http://[fd77::1]:5000/rootDesc.xml"
    );
    // the new address serves the description with its own bracketed Host
    let desc = in_netns(&bed.c, || {
        let mut t = std::net::TcpStream::connect("[2001:db8:1::1]:5000").unwrap();
        t.write_all(b"GET /rootDesc.xml HTTP/1.1\r\nHost: [2001:db8:1::1]:5000\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        let _ = t.read_to_string(&mut out);
        out
    });
    assert!(desc.starts_with("HTTP/1.1 200 OK\r\n"), "{desc}");
    // the prefix goes away: a host on it is no LAN host any more, the
    // others still hear the ULA
    ok(bed.exec(
        &bed.r,
        &["ip", "-6", "addr", "del", "2001:db8:1::1/64", "dev", &dev],
    ));
    let t = Instant::now();
    while !location("2001:db8:1::2", "ff05::c").is_empty() {
        assert!(t.elapsed() < Duration::from_secs(10), "{}", bed.log());
    }
    assert_eq!(
        location("::", "ff02::c"),
        "http://[fd77::1]:5000/rootDesc.xml"
    );
    assert!(
        bed.http_get("/rootDesc.xml")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
}
