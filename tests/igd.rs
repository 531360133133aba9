//! UPnP IGD end to end: the real daemon in a namespace bed, driven by the
//! real client `upnpc` (Debian's miniupnpc) and by raw SOAP.

mod common;

use common::*;

fn started(name: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    bed.start(&[]);
    bed
}

#[test]
fn ssdp_discovery_finds_the_igd() {
    let bed = started("disc");
    require(&["upnpc"]);
    let o = bed.exec(&bed.c, &["timeout", "30", "upnpc", "-m", "c-eth0", "-s"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("desc: http://192.168.77.1:5000/rootDesc.xml"),
        "{out}"
    );
    assert!(
        out.contains("Found valid IGD : http://192.168.77.1:5000/ctl/IPConn"),
        "{out}"
    );
    assert!(out.contains("ExternalIPAddress = 192.0.3.1"), "{out}");
}

#[test]
fn status_and_link_counters() {
    let bed = started("stat");
    let out = bed.upnpc(&["-s"]);
    assert!(out.contains("Connection Type : IP_Routed"), "{out}");
    assert!(out.contains("Status : Connected"), "{out}");
    assert!(out.contains("ExternalIPAddress = 192.0.3.1"), "{out}");
    assert!(out.contains("Bytes:   Sent:"), "{out}");
}

#[test]
fn add_list_delete_with_upnpc() {
    let bed = started("adl");
    let out = bed.upnpc(&[
        "-e", "game", "-a", CLIENT_IP, "8080", "18080", "TCP", "3600",
    ]);
    assert!(
        out.contains("external 192.0.3.1:18080 TCP is redirected to internal 192.168.77.2:8080 (duration=3600)"),
        "{out}"
    );
    let out = bed.upnpc(&["-a", CLIENT_IP, "9000", "19000", "UDP"]);
    // lease 0 from an IGD:2 client becomes the 7-day maximum
    assert!(
        out.contains("UDP is redirected to internal 192.168.77.2:9000 (duration=604800)"),
        "{out}"
    );

    let out = bed.upnpc(&["-l"]);
    assert!(
        out.contains(" 0 TCP 18080->192.168.77.2:8080  'game' '' 3600"),
        "{out}"
    );
    assert!(
        out.contains(" 1 UDP 19000->192.168.77.2:9000  'libminiupnpc' '' 604800"),
        "{out}"
    );
    assert!(
        out.contains("GetGenericPortMappingEntry() returned 713"),
        "{out}"
    );

    let out = bed.upnpc(&["-L"]);
    assert!(
        out.contains(" 0 TCP 18080->192.168.77.2:8080  'game' '' 3600"),
        "{out}"
    );
    assert!(
        out.contains(" 1 UDP 19000->192.168.77.2:9000  'libminiupnpc' '' 604800"),
        "{out}"
    );

    // the kernel holds exactly these two
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080", "udp . 19000"]);

    let out = bed.upnpc(&["-d", "18080", "TCP"]);
    assert!(
        out.contains("UPNP_DeletePortMapping() returned : 0"),
        "{out}"
    );
    assert_eq!(bed.dnat_elements(), vec!["udp . 19000"]);
}

#[test]
fn add_any_and_delete_range() {
    let bed = started("any");
    // another client holds 18080: AddAnyPortMapping picks another port
    let (code, _) = bed.soap(
        CLIENT2_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT2_IP, "0", "other"),
    );
    assert_eq!(code, 200);
    let out = bed.upnpc(&["-n", CLIENT_IP, "8080", "18080", "TCP", "600"]);
    assert!(out.contains("external 192.0.3.1:18081 TCP is redirected to internal 192.168.77.2:8080 (duration=600)"), "{out}");
    for p in ["20000", "20001", "20002"] {
        bed.upnpc(&["-a", CLIENT_IP, p, p, "UDP", "600"]);
    }
    let out = bed.upnpc(&["-N", "20000", "20001", "UDP"]);
    assert!(
        out.contains("UPNP_DeletePortMappingRange() returned : 0"),
        "{out}"
    );
    let keys = bed.dnat_elements();
    assert_eq!(keys, vec!["tcp . 18080", "tcp . 18081", "udp . 20002"]);
    // nothing left in range: 730; inverted range: 733
    let out = bed.upnpc(&["-N", "20000", "20001", "UDP"]);
    assert!(out.contains("730"), "{out}");
    let out = bed.upnpc(&["-N", "20001", "20000", "UDP"]);
    assert!(out.contains("733"), "{out}");
}

#[test]
fn error_codes_for_conflicts_bad_arguments_and_missing_entries() {
    let bed = started("err");
    // 718: another client holds the port
    let (code, _) = bed.soap(
        CLIENT2_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT2_IP, "0", "other"),
    );
    assert_eq!(code, 200);
    let out = bed.upnpc(&["-a", CLIENT_IP, "8080", "18080", "TCP"]);
    assert!(
        out.contains("failed with code 718 (ConflictInMappingEntry)"),
        "{out}"
    );
    // 716: external port 0
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("0", "TCP", "8080", CLIENT_IP, "0", "x"),
    );
    assert_eq!((code, fault_code(&text)), (500, Some(716)), "{text}");
    // 732: internal port 0 (IGD:2)
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("1234", "TCP", "0", CLIENT_IP, "0", "x"),
    );
    assert_eq!(fault_code(&text), Some(732), "{text}");
    // 606: permission rules (port below 1024) and secure mode (another host)
    let out = bed.upnpc(&["-a", CLIENT_IP, "22", "2222", "TCP"]);
    assert!(out.contains("failed with code 606"), "{out}");
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("3000", "TCP", "3000", CLIENT2_IP, "0", "x"),
    );
    assert_eq!(fault_code(&text), Some(606), "{text}");
    // IGD:1 semantics answer 718 for the same refusal
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:1",
        "AddPortMapping",
        &add_args("3000", "TCP", "3000", CLIENT2_IP, "0", "x"),
    );
    assert_eq!(fault_code(&text), Some(718), "{text}");
    // 402: malformed and missing arguments
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("99999", "TCP", "8080", CLIENT_IP, "0", "x"),
    );
    assert_eq!(fault_code(&text), Some(402), "{text}");
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &[("NewExternalPort", "5000")],
    );
    assert_eq!(fault_code(&text), Some(402), "{text}");
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("5000", "SCTP", "8080", CLIENT_IP, "0", "x"),
    );
    assert_eq!(fault_code(&text), Some(402), "{text}");
    // 401: no such action
    let (_, text) = bed.soap(CLIENT_IP, "WANIPConnection:2", "FlyToTheMoon", &[]);
    assert_eq!(fault_code(&text), Some(401), "{text}");
    // 714: delete and get of a missing mapping
    let out = bed.upnpc(&["-d", "40000", "TCP"]);
    assert!(out.contains("714"), "{out}");
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "GetSpecificPortMappingEntry",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "40000"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(fault_code(&text), Some(714), "{text}");
    // 713: index past the end
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "GetGenericPortMappingEntry",
        &[("NewPortMappingIndex", "5")],
    );
    assert_eq!(fault_code(&text), Some(713), "{text}");
    // 606 (v2) for deleting another client's mapping
    let (_, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "DeletePortMapping",
        &[
            ("NewRemoteHost", ""),
            ("NewExternalPort", "18080"),
            ("NewProtocol", "TCP"),
        ],
    );
    assert_eq!(fault_code(&text), Some(606), "{text}");
    // the refusals are logged with their reason
    let log = bed.log();
    assert!(
        log.contains("refuse TCP 18080 -> 192.168.77.2:8080"),
        "{log}"
    );
    assert!(
        log.contains("port held by another client's mapping"),
        "{log}"
    );
}

#[test]
fn descriptions_and_scpds() {
    let bed = started("desc");
    let d = bed.http_get("/rootDesc.xml").unwrap();
    assert!(
        d.contains("urn:schemas-upnp-org:device:InternetGatewayDevice:2"),
        "{d}"
    );
    let scpd = bed.http_get("/WANIPCn.xml").unwrap();
    assert!(
        scpd.contains("<name>NewReservedPort</name><direction>out</direction>"),
        "{scpd}"
    );
    // Windows' User-Agent gets IGD:1
    let req = format!(
        "GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nUser-Agent: Microsoft-Windows/10.0 UPnP/1.0\r\nConnection: close\r\n\r\n"
    );
    let d1 = bed.http_raw(req.into_bytes()).unwrap();
    assert!(d1.contains("InternetGatewayDevice:1<"), "{d1}");
    assert!(!d1.contains(":2<"), "{d1}");
    // DNS rebinding: a name in Host is refused
    let req = "GET /rootDesc.xml HTTP/1.1\r\nHost: evil.example:5000\r\nConnection: close\r\n\r\n";
    let r = bed.http_raw(req.as_bytes().to_vec()).unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    let r = bed.http_get("/nope.xml").unwrap();
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    // HEAD, whole and asking to close (answered without a task): the
    // head of the GET's answer, no body
    let req =
        format!("HEAD /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nConnection: close\r\n\r\n");
    let h = bed.http_raw(req.into_bytes()).unwrap();
    let len = d.split("\r\n\r\n").nth(1).map_or(0, str::len);
    assert!(h.starts_with("HTTP/1.1 200"), "{h}");
    assert!(h.contains(&format!("Content-Length: {len}\r\n")), "{h}");
    assert!(h.ends_with("\r\n\r\n"), "{h}");
}

#[test]
fn igdv1_mode_describes_every_type_at_version_1() {
    let mut bed = Bed::new("igd1");
    bed.fw4_start();
    let dir = bed.config(
        "config upnpd 'config'\n\toption igdv1 '1'\n\toption internal_iface 'br-lan'\n\toption external_iface 'eth1'\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n",
    );
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    let d = bed.http_get("/rootDesc.xml").unwrap();
    assert!(
        d.contains("InternetGatewayDevice:1<") && d.contains("WANIPConnection:1<"),
        "{d}"
    );
    assert!(!d.contains(":2<"), "{d}");
    let out = bed.upnpc(&["-a", CLIENT_IP, "8080", "18080", "TCP"]);
    // IGD:1: lease 0 is a permanent mapping
    assert!(out.contains("(duration=0)"), "{out}");
}

#[test]
fn a_thousand_mappings_added_listed_and_deleted() {
    let bed = started("k1000");
    let mut c = KeepAlive::open(&bed);
    for i in 0..1000u32 {
        let port = (30000 + i).to_string();
        let (code, body) = c.call(
            "AddPortMapping",
            &add_args(&port, "TCP", &port, CLIENT_IP, "3600", "bulk"),
        );
        assert_eq!(code, 200, "add {port}: {body}");
    }
    assert_eq!(bed.dnat_elements().len(), 1000);
    // every index through GetGenericPortMappingEntry (upnpc -l), then the
    // v2 listing. upnpc opens a connection per entry, and fw4's input
    // chain lets 25 new TCP connections a second (burst 50) reach the
    // router (`jump syn_flood`, on in fw4's default config): about 40 s.
    let t = std::time::Instant::now();
    let out = bed.upnpc_within(120, &["-l"]);
    eprintln!("upnpc -l of 1000 took {:?}", t.elapsed());
    let n = out
        .lines()
        .filter(|l| l.contains("->192.168.77.2:"))
        .count();
    assert_eq!(
        n,
        1000,
        "{}",
        out.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(out.contains("GetGenericPortMappingEntry() returned 713"));
    assert!(
        out.contains("999 TCP 30999->192.168.77.2:30999 'bulk'"),
        "{out}"
    );
    // the keep-alive connection may have idled out meanwhile
    let mut c = KeepAlive::open(&bed);
    let (code, body) = c.call(
        "GetListOfPortMappings",
        &[
            ("NewStartPort", "0"),
            ("NewEndPort", "65535"),
            ("NewProtocol", "TCP"),
            ("NewManage", "1"),
            ("NewNumberOfPorts", "1000"),
        ],
    );
    assert_eq!(code, 200);
    assert_eq!(body.matches("<p:PortMappingEntry>").count(), 1000);
    let out = bed.upnpc(&["-L"]);
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("->192.168.77.2:"))
            .count(),
        1000,
        "{out}"
    );
    for i in 0..1000u32 {
        let port = (30000 + i).to_string();
        let (code, body) = c.call(
            "DeletePortMapping",
            &[
                ("NewRemoteHost", ""),
                ("NewExternalPort", &port),
                ("NewProtocol", "TCP"),
            ],
        );
        assert_eq!(code, 200, "delete {port}: {body}");
    }
    assert!(bed.dnat_elements().is_empty());
}

/// SSDP announcements on the LAN: `ssdp:alive` for the root device, the
/// UUIDs and every type at start, with BOOTID and CONFIGID; `ssdp:byebye`
/// for them when the daemon stops.
#[test]
fn ssdp_alive_at_start_and_byebye_at_stop() {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::time::{Duration, Instant};

    let mut bed = Bed::new("ssdpnt");
    bed.fw4_start();
    let ns = bed.c.clone();
    let sock = multicast_listener(&ns, Ipv4Addr::new(239, 255, 255, 250), 1900);
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let collect = |sock: &UdpSocket, nts: &str, want: usize| {
        let mut got = Vec::new();
        let t = Instant::now();
        let mut buf = [0u8; 2048];
        while t.elapsed() < Duration::from_secs(5) && got.len() < want {
            if let Ok((n, _)) = sock.recv_from(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.starts_with("NOTIFY * HTTP/1.1\r\n")
                    && m.contains(&format!("\r\nNTS: {nts}\r\n"))
                {
                    got.push(m);
                }
            }
        }
        got
    };
    bed.start(&[]);
    // root device, 3 device UUIDs, 3 device types, 4 service types
    let alive = collect(&sock, "ssdp:alive", 11);
    assert!(alive.len() >= 11, "{} ssdp:alive: {alive:?}", alive.len());
    let root = alive
        .iter()
        .find(|m| m.contains("\r\nNT: upnp:rootdevice\r\n"))
        .expect("an ssdp:alive for upnp:rootdevice");
    for h in [
        "\r\nHOST: 239.255.255.250:1900\r\n",
        "\r\nLOCATION: http://192.168.77.1:5000/rootDesc.xml\r\n",
        "\r\nBOOTID.UPNP.ORG: ",
        "\r\nCONFIGID.UPNP.ORG: ",
        "\r\nCACHE-CONTROL: max-age=",
    ] {
        assert!(root.contains(h), "{h:?} missing: {root}");
    }
    for t in [
        "urn:schemas-upnp-org:device:InternetGatewayDevice:2",
        "urn:schemas-upnp-org:service:WANIPConnection:2",
    ] {
        assert!(
            alive
                .iter()
                .any(|m| m.contains(&format!("\r\nNT: {t}\r\n"))),
            "no ssdp:alive for {t}"
        );
    }
    bed.stop();
    let bye = collect(&sock, "ssdp:byebye", 11);
    assert!(bye.len() >= 11, "{} ssdp:byebye: {bye:?}", bye.len());
    assert!(
        bye.iter()
            .any(|m| m.contains("\r\nNT: upnp:rootdevice\r\n") && !m.contains("LOCATION")),
        "{bye:?}"
    );
}

/// python3's expat, a parser that is not ours, reads a SOAP response body
/// and the port listing it may carry, and prints every description in
/// it as a JSON string, one per line; a body that is not XML is an error.
fn expat_descriptions(body: &str) -> Result<Vec<String>, String> {
    const SCRIPT: &str = r#"
import json, sys, xml.parsers.expat
def elements(doc):
    out, texts = [], []
    p = xml.parsers.expat.ParserCreate()
    def start(name, attrs): texts.append([])
    def end(name): out.append((name, "".join(texts.pop())))
    def data(d):
        if texts: texts[-1].append(d)
    p.StartElementHandler, p.EndElementHandler, p.CharacterDataHandler = start, end, data
    p.Parse(doc, True)
    return out
for name, text in elements(sys.stdin.buffer.read()):
    if name == "NewPortMappingDescription":
        print(json.dumps(text))
    elif name == "NewPortListing":
        for inner, t in elements(text.encode()):
            if inner == "p:NewDescription":
                print(json.dumps(t))
"#;
    require(&["python3"]);
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}

/// A description with characters XML 1.0 does not allow (U+FFFF, U+FFFE,
/// C0 controls) is stored without them, and every listing that shows it
/// — GetGenericPortMappingEntry, GetSpecificPortMappingEntry and the
/// document inside GetListOfPortMappings — parses for a strict parser.
#[test]
fn descriptions_outside_xml_stay_parseable() {
    let bed = started("xmlchr");
    let (code, t) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args(
            "18080",
            "TCP",
            "8080",
            CLIENT_IP,
            "600",
            "a\u{FFFF}b\u{FFFE}c &amp; d\u{1}",
        ),
    );
    assert_eq!(code, 200, "{t}");
    let want = vec![r#""abc & d""#.to_string()];
    let body = |t: &str| {
        t.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap()
    };
    for (action, args) in [
        (
            "GetGenericPortMappingEntry",
            vec![("NewPortMappingIndex", "0")],
        ),
        (
            "GetSpecificPortMappingEntry",
            vec![
                ("NewRemoteHost", ""),
                ("NewExternalPort", "18080"),
                ("NewProtocol", "TCP"),
            ],
        ),
        (
            "GetListOfPortMappings",
            vec![
                ("NewStartPort", "0"),
                ("NewEndPort", "65535"),
                ("NewProtocol", "TCP"),
                ("NewManage", "1"),
                ("NewNumberOfPorts", "10"),
            ],
        ),
    ] {
        let (code, t) = bed.soap(CLIENT_IP, "WANIPConnection:2", action, &args);
        assert_eq!(code, 200, "{action}: {t}");
        assert_eq!(
            expat_descriptions(&body(&t)).unwrap_or_else(|e| panic!("{action}: {e}\n{t}")),
            want,
            "{action}"
        );
    }
}
