//! Hostile clients against the real daemon in a namespace bed: slow and
//! oversized HTTP requests, connection floods, hostile XML, M-SEARCH
//! floods, and probes from the WAN side. Each test shows the attack is
//! refused or bounded and that honest clients keep being served.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rupnpd::core::ssdp::{MAX_ROWS, SOURCE_BURST, SOURCE_RATE};
use rupnpd::proto::http::{MAX_BODY, MAX_HEAD, MAX_HEADERS};
use rupnpd::sys::http::Limits;

/// A bed with fw4 and the daemon. fw4's SYN rate limit (25/s, burst 50,
/// for every source together) is lifted, as `option synflood_protect '0'`
/// does: these tests flood the daemon itself, and with the limit a flood
/// mostly meets fw4 (its SYNs dropped, each connect waiting 1 s for the
/// retransmission), and so do the other hosts' connections.
fn started(name: &str) -> (Bed, u32) {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let o = bed.exec(
        &bed.r,
        &["nft", "flush", "chain", "inet", "fw4", "syn_flood"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pid = bed.start(&[]);
    (bed, pid)
}

fn lan_http() -> SocketAddr {
    SocketAddr::from((LAN_IP.parse::<Ipv4Addr>().unwrap(), 5000))
}

/// A complete SOAP request for `action` with `body` (a SOAP envelope, or
/// anything hostile).
fn soap_request(action: &str, body: &str, connection: &str) -> String {
    let (path, urn) = service_urls("WANIPConnection:2");
    format!(
        "POST {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
SOAPAction: \"{urn}#{action}\"\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n{body}",
        body.len()
    )
}

/// A whole GetExternalIPAddress request with `Connection: close`.
fn external_ip_request() -> String {
    soap_request(
        "GetExternalIPAddress",
        &soap_body(
            "GetExternalIPAddress",
            "urn:schemas-upnp-org:service:WANIPConnection:2",
            &[],
        ),
        "close",
    )
}

/// A GetExternalIPAddress call from the LAN host, answered within `max`.
fn soap_ok_within(bed: &Bed, max: Duration) {
    let t = Instant::now();
    let (code, text) = bed.soap(CLIENT2_IP, "WANIPConnection:2", "GetExternalIPAddress", &[]);
    let took = t.elapsed();
    assert_eq!(code, 200, "{text}");
    assert!(
        text.contains("<NewExternalIPAddress>192.0.3.1</NewExternalIPAddress>"),
        "{text}"
    );
    assert!(took <= max, "SOAP answered after {took:?}");
}

/// Sends raw bytes to the HTTP port and reads the answer until the server
/// closes (or `max` passes, which fails the test: nothing may hang).
/// Returns the answer and how long the server took to close.
fn http_exchange(bed: &Bed, bytes: Vec<u8>, max: Duration) -> (String, Duration) {
    let mut s = in_netns(&bed.c, || {
        TcpStream::connect_timeout(&lan_http(), Duration::from_secs(2)).unwrap()
    });
    s.set_read_timeout(Some(max)).unwrap();
    let t = Instant::now();
    s.write_all(&bytes).unwrap();
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "no answer within {max:?}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    (String::from_utf8_lossy(&out).into_owned(), t.elapsed())
}

/// A slowloris client (one byte of a never-ending request head per
/// second) holds a connection only until the 10 s request deadline of
/// `sys::http::Limits`, which then answers 408 and closes; other clients
/// are answered promptly all along.
#[test]
fn slowloris_is_cut_at_the_deadline_while_others_are_served() {
    let (bed, pid) = started("abslow");
    let deadline = Limits::default().request_deadline;
    let mut s = in_netns(&bed.c, || {
        TcpStream::connect_timeout(&lan_http(), Duration::from_secs(2)).unwrap()
    });
    let slow = thread::spawn(move || {
        let head = format!(
            "GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nX-Slow: {}",
            "a".repeat(200)
        );
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let t0 = Instant::now();
        let mut got = Vec::new();
        for b in head.bytes() {
            if let Err(e) = s.write_all(&[b]) {
                return (t0.elapsed(), format!("write: {e}"));
            }
            let mut buf = [0u8; 1024];
            match s.read(&mut buf) {
                Ok(0) => return (t0.elapsed(), "closed without an answer".to_string()),
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    let at = t0.elapsed();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let _ = s.read_to_end(&mut got);
                    return (at, String::from_utf8_lossy(&got).into_owned());
                }
                // (interrupted: a stop and continue of the test process)
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(e) => return (t0.elapsed(), format!("read: {e}")),
            }
        }
        (t0.elapsed(), String::from_utf8_lossy(&got).into_owned())
    });
    // meanwhile, other clients are served quickly
    let mut served = 0;
    while !slow.is_finished() {
        soap_ok_within(&bed, Duration::from_secs(3));
        served += 1;
        thread::sleep(Duration::from_millis(500));
    }
    let (closed_after, answer) = slow.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "slowloris got: {answer:?}"
    );
    assert!(
        closed_after >= deadline - Duration::from_secs(1)
            && closed_after <= deadline + Duration::from_secs(4),
        "slowloris closed after {closed_after:?}"
    );
    assert!(served >= 10, "only {served} SOAP calls during the attack");
    assert!(alive(pid));
    soap_ok_within(&bed, Duration::from_secs(2));
}

/// One LAN host opening as many idle connections as the whole server
/// takes (a slowloris from one address) gets `max_per_client` of them;
/// the rest are answered 503 at once, and another host is served while
/// they are held.
#[test]
fn one_client_cannot_hold_every_connection() {
    let (bed, pid) = started("abper");
    let l = Limits::default();
    assert!(l.max_per_client < l.max_connections);
    let total = l.max_connections;
    let conns: Vec<TcpStream> = in_netns(&bed.c, move || {
        (0..total)
            .map(|_| TcpStream::connect_timeout(&lan_http(), Duration::from_secs(5)).unwrap())
            .collect()
    });
    // The refusals are written at accept; the held connections would be
    // closed after `Limits::idle` (15 s), so read them all well before.
    thread::sleep(Duration::from_secs(1));
    let (mut held, mut busy) = (0, 0);
    for mut c in &conns {
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut out = Vec::new();
        match c.read_to_end(&mut out) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&out);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.contains("Retry-After: 1"), "{text}");
                busy += 1;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(out.is_empty(), "{:?}", String::from_utf8_lossy(&out));
                held += 1;
            }
            Err(e) => panic!("connection failed: {e}"),
        }
    }
    eprintln!(
        "{} connections from one host: {held} held, {busy} × 503",
        conns.len()
    );
    assert_eq!(held, l.max_per_client);
    assert_eq!(busy, l.max_connections - l.max_per_client);
    // the other LAN host, while the first still holds its connections
    soap_ok_within(&bed, Duration::from_secs(2));
    drop(conns);
    assert!(alive(pid));
}

/// More connections than `sys::http::Limits::max_connections` (32): the
/// surplus is answered 503 at once and closed, no connection hangs, and
/// the daemon serves normally afterwards.
#[test]
fn two_hundred_connections_get_503_and_none_hangs() {
    let (bed, pid) = started("abconn");
    let cap = Limits::default().max_connections;
    let conns: Vec<TcpStream> = in_netns(&bed.c, || {
        (0..200)
            .map(|_| TcpStream::connect_timeout(&lan_http(), Duration::from_secs(5)).unwrap())
            .collect()
    });
    let req = external_ip_request();
    let t = Instant::now();
    for mut c in &conns {
        // the server may have closed a refused connection already
        let _ = c.write_all(req.as_bytes());
    }
    let (mut ok, mut busy, mut reset) = (0, 0, 0);
    for mut c in conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = Vec::new();
        let err = c.read_to_end(&mut out).err();
        if let Some(e) = &err {
            assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "a connection hung: {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        let text = String::from_utf8_lossy(&out);
        if text.starts_with("HTTP/1.1 200") {
            assert!(text.contains("192.0.3.1"), "{text}");
            ok += 1;
        } else if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("Retry-After: 1"), "{text}");
            busy += 1;
        } else {
            assert!(
                text.is_empty() && err.is_some(),
                "unexpected answer: {text}"
            );
            reset += 1;
        }
    }
    let took = t.elapsed();
    eprintln!("200 connections: {ok} served, {busy} × 503, {reset} reset, in {took:?}");
    assert!((1..=cap).contains(&ok), "{ok} served");
    assert!(busy >= 100, "{busy} × 503");
    assert_eq!(ok + busy + reset, 200);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(alive(pid));
    soap_ok_within(&bed, Duration::from_secs(2));
}

/// Requests too large or too hostile to process are refused with the
/// status that says why, and the connection is closed:
/// a head beyond `proto::http::MAX_HEAD` (8 KiB) or `MAX_HEADERS` (32
/// lines) → 431, a body beyond `MAX_BODY` (16 KiB) → 413, chunked bodies
/// → 501, and SOAP bodies nested too deep or carrying a DTD or entities →
/// 400.
#[test]
fn oversized_and_hostile_requests_are_refused_cleanly() {
    let (bed, pid) = started("abbig");
    let max = Duration::from_secs(5);
    let expect = |bytes: Vec<u8>, status: &str, what: &str| {
        let (r, took) = http_exchange(&bed, bytes, max);
        assert!(
            r.starts_with(&format!("HTTP/1.1 {status}")),
            "{what}: {r:?}"
        );
        assert!(r.contains("Connection: close"), "{what}: {r}");
        assert!(took < Duration::from_secs(4), "{what}: {took:?}");
    };

    // a head of exactly MAX_HEAD + 1 bytes without its end: the server
    // reads all of it, then refuses
    let mut head =
        format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nX-Pad: ").into_bytes();
    head.resize(MAX_HEAD + 1, b'a');
    expect(head, "431", "8 KiB head");
    // 40 short header lines
    let mut many = format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\n");
    for i in 0..MAX_HEADERS + 8 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    expect(many.into_bytes(), "431", "40 header lines");
    // a body announced larger than 16 KiB is refused before it is sent
    let (path, urn) = service_urls("WANIPConnection:2");
    let big = format!(
        "POST {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nSOAPAction: \"{urn}#GetExternalIPAddress\"\r\n\
Content-Length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    expect(big.into_bytes(), "413", "16 KiB body");
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    );
    expect(chunked.into_bytes(), "501", "chunked");

    // hostile XML inside a well-formed request
    let envelope = |inner: &str| {
        format!(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\">\
<s:Body><u:GetExternalIPAddress xmlns:u=\"{urn}\">{inner}</u:GetExternalIPAddress></s:Body></s:Envelope>"
        )
    };
    let nested = envelope(&format!("{}{}", "<a>".repeat(50), "</a>".repeat(50)));
    let dtd = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope [<!ENTITY a \"aaaaaaaaaa\">\
<!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\"><!ENTITY c \"&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;\">]>{}",
        envelope("<x>&c;</x>").trim_start_matches("<?xml version=\"1.0\"?>")
    );
    let xxe = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE s [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        envelope("<x>&x;</x>").trim_start_matches("<?xml version=\"1.0\"?>")
    );
    let unknown_entity = envelope("<x>&x;</x>");
    for (body, what) in [
        (nested, "50 levels deep"),
        (dtd, "entity expansion"),
        (xxe, "external entity"),
        (unknown_entity, "unknown entity"),
    ] {
        let req = soap_request("GetExternalIPAddress", &body, "keep-alive");
        expect(req.into_bytes(), "400", what);
    }
    // the same request with an honest body is served
    let honest = soap_request("GetExternalIPAddress", &envelope(""), "close");
    let (r, _) = http_exchange(&bed, honest.into_bytes(), max);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(alive(pid));
    soap_ok_within(&bed, Duration::from_secs(2));
}

/// The smallest M-SEARCH the parser accepts (bare LF line ends, no
/// spaces, no MX): 53 bytes. Every bound below divides by its size.
const MIN_SEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\nST:ssdp:all\nMAN:\"ssdp:discover\"\n\n";
/// Largest search reply we accept. A reply carries the fixed headers,
/// the LOCATION, SERVER, and an ST/USN pair from the device tables
/// (about 400 bytes on this bed); 512 leaves room for a long kernel
/// release in SERVER.
const MAX_REPLY: usize = 512;

/// Counts and sizes the datagrams arriving on `sock` until `stop` is set
/// and the socket has been quiet for 300 ms.
fn collect(sock: UdpSocket, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<usize>> {
    thread::spawn(move || {
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut sizes = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => {
                    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK\r\n"));
                    sizes.push(n);
                }
                Err(_) if stop.load(Ordering::SeqCst) => return sizes,
                Err(_) => {}
            }
        }
    })
}

/// Sends `n` copies of `search` to the SSDP group from `sock`, a few per
/// millisecond, and returns how long that took.
fn flood(sock: &UdpSocket, search: &[u8], n: usize) -> Duration {
    let group = SocketAddr::from((Ipv4Addr::new(239, 255, 255, 250), 1900));
    let t = Instant::now();
    for i in 0..n {
        sock.send_to(search, group).unwrap();
        if i % 20 == 19 {
            thread::sleep(Duration::from_millis(2));
        }
    }
    t.elapsed()
}

/// Upper bound on the replies one source can get in `t`: its burst, then
/// its rate (`core::ssdp`), plus one second of slack for rounding.
fn source_bound(t: Duration) -> usize {
    SOURCE_BURST as usize + (SOURCE_RATE as f64 * (t.as_secs_f64() + 1.0)) as usize
}

/// A burst of 10,000 M-SEARCH from one source gets at most
/// `SOURCE_BURST + SOURCE_RATE·t` replies, and the daemon's resident
/// memory does not grow (measured after a warm-up flood from another
/// address, so first-use allocations are not counted; margin 512 KiB).
#[test]
fn msearch_flood_is_rate_limited_and_memory_stays_flat() {
    let (bed, pid) = started("abflood");
    let search = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
MX: 1\r\nST: ssdp:all\r\n\r\n";

    // warm-up from the second address
    let warm = udp_in(&bed.c, CLIENT2_IP);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = collect(warm.try_clone().unwrap(), stop.clone());
    flood(&warm, search, 1000);
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let warm_replies = rx.join().unwrap();
    assert!(!warm_replies.is_empty(), "no reply to the warm-up");
    let before = vm_rss_kib(pid);

    let sock = udp_in(&bed.c, CLIENT_IP);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = collect(sock.try_clone().unwrap(), stop.clone());
    let t0 = Instant::now();
    let sent_in = flood(&sock, search, 10_000);
    // replies are spread over MX (1 s) after the last search
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let replies = rx.join().unwrap();
    let window = t0.elapsed();
    let after = vm_rss_kib(pid);
    eprintln!(
        "10,000 searches in {sent_in:?}: {} replies in {window:?}; VmRSS {before} → {after} KiB",
        replies.len()
    );
    assert!(
        replies.len() >= SOURCE_BURST as usize,
        "{} replies: not even the burst",
        replies.len()
    );
    assert!(
        replies.len() <= source_bound(window),
        "{} replies in {window:?}, bound {}",
        replies.len(),
        source_bound(window)
    );
    assert!(
        after <= before + 512,
        "VmRSS grew from {before} to {after} KiB"
    );
    assert!(alive(pid));
    // and discovery still works for others
    let out = bed.exec(&bed.c, &["timeout", "30", "upnpc", "-m", "c-eth0", "-s"]);
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("ExternalIPAddress = 192.0.3.1"), "{out}");
}

/// Search replies never amplify beyond a fixed ratio.
///
/// One search: at most `MAX_ROWS` (12) replies of at most `MAX_REPLY`
/// (512) bytes answer at least `MIN_SEARCH` (53 bytes), so
/// bytes out / bytes in ≤ 12 × 512 / 53 ≈ 116 (IGD:2 actually sends 10
/// replies of ≈ 400 bytes: ≈ 75).
///
/// A flood: a source gets at most `SOURCE_BURST + SOURCE_RATE·t`
/// (32 + 16·t) replies whatever it sends, so n searches over t seconds
/// give a ratio ≤ (32 + 16·t) × 512 / (53·n). For the 2,000 searches
/// here that is below 0.4 if they are sent within 3 s (the usual case,
/// about 0.2 s) and below 1 within 10 s; it falls as the flood grows.
#[test]
fn msearch_replies_never_amplify_beyond_the_documented_ratio() {
    let (bed, pid) = started("abamp");
    assert_eq!(MIN_SEARCH.len(), 53);
    let single_bound = (MAX_ROWS * MAX_REPLY) as f64 / MIN_SEARCH.len() as f64;
    assert!(single_bound < 116.0);

    // one ssdp:all search, the smallest there is, unicast (answered at once)
    let sock = udp_in(&bed.c, CLIENT2_IP);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = collect(sock.try_clone().unwrap(), stop.clone());
    sock.send_to(MIN_SEARCH, (LAN_IP, 1900)).unwrap();
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    let replies = rx.join().unwrap();
    let out: usize = replies.iter().sum();
    let ratio = out as f64 / MIN_SEARCH.len() as f64;
    eprintln!(
        "one search of {} bytes: {} replies, {out} bytes, ratio {ratio:.1}",
        MIN_SEARCH.len(),
        replies.len()
    );
    assert!(
        (1..=MAX_ROWS).contains(&replies.len()),
        "{} replies",
        replies.len()
    );
    assert!(
        replies.iter().all(|n| *n <= MAX_REPLY),
        "a reply above {MAX_REPLY} bytes: {replies:?}"
    );
    assert!(
        ratio <= single_bound,
        "ratio {ratio:.1} > {single_bound:.1}"
    );

    // a flood of the same search from the other address
    let sock = udp_in(&bed.c, CLIENT_IP);
    let stop = Arc::new(AtomicBool::new(false));
    let rx = collect(sock.try_clone().unwrap(), stop.clone());
    let n = 2000;
    let t0 = Instant::now();
    let sent_in = flood(&sock, MIN_SEARCH, n);
    thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::SeqCst);
    let replies = rx.join().unwrap();
    let window = t0.elapsed();
    let bytes_in = n * MIN_SEARCH.len();
    let bytes_out: usize = replies.iter().sum();
    let ratio = bytes_out as f64 / bytes_in as f64;
    let bound = (source_bound(window) * MAX_REPLY) as f64 / bytes_in as f64;
    eprintln!(
        "{n} searches in {sent_in:?}: {} replies, {bytes_out} bytes out for {bytes_in} in, \
ratio {ratio:.3} (bound {bound:.3})",
        replies.len()
    );
    assert!(
        sent_in < Duration::from_secs(8),
        "the flood took {sent_in:?}"
    );
    assert!(ratio <= bound, "flood ratio {ratio:.3} > {bound:.3}");
    assert!(ratio < 1.0, "a flood amplifies: ratio {ratio:.3}");
    assert!(alive(pid));
}

/// A bed without the fw4 ruleset, so no input policy shields the daemon,
/// whose WAN host routes the LAN subnet through the router (as a hostile
/// upstream neighbour can).
fn unshielded(name: &str) -> (Bed, u32) {
    let mut bed = Bed::new(name);
    let pid = bed.start(&[]);
    let o = bed.exec(
        &bed.w,
        &["ip", "route", "add", "192.168.77.0/24", "via", WAN_IP],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (bed, pid)
}

/// An HTTP GET from the WAN host to `dst:5000`: "connect: …" if refused,
/// otherwise what was answered.
fn http_from_wan(bed: &Bed, dst: &str) -> String {
    let dst = SocketAddr::from((dst.parse::<Ipv4Addr>().unwrap(), 5000));
    in_netns(&bed.w, move || {
        match TcpStream::connect_timeout(&dst, Duration::from_secs(2)) {
            Err(e) => format!("connect: {e}"),
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let req = format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {}\r\n\r\n", dst);
                let _ = s.write_all(req.as_bytes());
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out);
                format!("connected, answer {:?}", String::from_utf8_lossy(&out))
            }
        }
    })
}

/// Nothing answers on the WAN side, and not because a firewall hides the
/// daemon (see [`unshielded`]): its own sockets neither listen on nor
/// answer to the WAN. From the WAN host, SSDP (multicast, and unicast to
/// 192.0.3.1:1900 and to the LAN address), HTTP to 192.0.3.1:5000, and
/// NAT-PMP and PCP to 192.0.3.1:5351 and to the LAN address get no
/// reply; the same probes from the LAN host are answered.
#[test]
fn nothing_answers_on_the_wan_side() {
    let (bed, pid) = unshielded("abwan");
    let msearch: &[u8] =
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\
MX: 1\r\nST: ssdp:all\r\n\r\n";
    let natpmp: &[u8] = &[0, 0];
    let pcp_announce = |client: Ipv4Addr| {
        let mut b = vec![
            2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
        ];
        b.extend_from_slice(&client.octets());
        b
    };
    let group = SocketAddr::from((Ipv4Addr::new(239, 255, 255, 250), 1900));

    // probes from the WAN host
    let peer: Ipv4Addr = PEER_IP.parse().unwrap();
    let wan_udp = in_netns(&bed.w, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.bind(&SocketAddr::from((peer, 0)).into()).unwrap();
        s.set_multicast_if_v4(&peer).unwrap();
        let u: UdpSocket = s.into();
        u
    });
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let sock = wan_udp.try_clone().unwrap();
        let stop = stop.clone();
        thread::spawn(move || {
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::SeqCst) {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    got.push((from, buf[..n].to_vec()));
                }
            }
            got
        })
    };
    for _ in 0..3 {
        wan_udp.send_to(msearch, group).unwrap();
        for dst in [WAN_IP, LAN_IP] {
            wan_udp.send_to(msearch, (dst, 1900)).unwrap();
            wan_udp.send_to(natpmp, (dst, 5351)).unwrap();
            wan_udp.send_to(&pcp_announce(peer), (dst, 5351)).unwrap();
        }
        thread::sleep(Duration::from_millis(300));
    }
    let http = http_from_wan(&bed, WAN_IP);
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::SeqCst);
    let got = rx.join().unwrap();
    assert!(got.is_empty(), "the WAN host got answers: {got:?}");
    assert!(
        http.starts_with("connect: ") || http == "connected, answer \"\"",
        "HTTP from the WAN: {http}"
    );

    // the same probes from the LAN host are answered
    let lan = udp_in(&bed.c, CLIENT_IP);
    lan.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    lan.send_to(msearch, (LAN_IP, 1900)).unwrap();
    let (n, _) = lan
        .recv_from(&mut buf)
        .expect("an M-SEARCH reply on the LAN");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"));
    let lan = udp_in(&bed.c, CLIENT_IP);
    lan.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    lan.send_to(natpmp, (LAN_IP, 5351)).unwrap();
    let (n, _) = lan.recv_from(&mut buf).expect("a NAT-PMP reply on the LAN");
    assert_eq!(&buf[..n][8..12], &[192, 0, 3, 1]);
    lan.send_to(&pcp_announce(CLIENT_IP.parse().unwrap()), (LAN_IP, 5351))
        .unwrap();
    let (n, _) = lan.recv_from(&mut buf).expect("a PCP reply on the LAN");
    assert_eq!((n, buf[1], buf[3]), (24, 0x80, 0));
    assert!(
        bed.http_get("/rootDesc.xml")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(alive(pid));
}

/// The HTTP server does not answer the WAN either when a WAN host routes
/// to the LAN address. Today it accepts the connection, reads the request
/// and answers "403 not a LAN client" (with its Server banner), because
/// the listener is bound to the LAN address but, unlike the UDP sockets,
/// not to the LAN device.
#[test]
fn http_does_not_answer_the_wan_on_the_lan_address() {
    let (bed, pid) = unshielded("abwan2");
    let http = http_from_wan(&bed, LAN_IP);
    assert!(http.starts_with("connect: "), "HTTP from the WAN: {http}");
    assert!(
        bed.http_get("/rootDesc.xml")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(alive(pid));
}

/// A flood of SOAP requests from one LAN host (four threads, each a new
/// connection per request, for 3 s): every request is answered or turned
/// away with 503, memory stays flat, and another host is served within
/// 2 s while the flood lasts.
#[test]
fn soap_flood_keeps_memory_flat_and_others_served() {
    let (bed, pid) = started("absoap");
    let before = vm_rss_kib(pid);
    let req = external_ip_request();
    let stop = Arc::new(AtomicBool::new(false));
    let floods: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ns, req) = (stop.clone(), bed.c.clone(), req.clone());
            thread::spawn(move || {
                in_netns(&ns, move || {
                    let (mut ok, mut busy, mut unconnected) = (0u32, 0u32, 0u32);
                    while !stop.load(Ordering::Relaxed) {
                        // Tens of thousands of connections a second wrap the
                        // host's ephemeral ports onto tuples the router still
                        // holds in TIME_WAIT, whose SYN then waits for its
                        // retransmission: a connect may time out, which says
                        // nothing of the daemon (the other host's requests do).
                        let Ok(mut s) =
                            TcpStream::connect_timeout(&lan_http(), Duration::from_secs(2))
                        else {
                            unconnected += 1;
                            continue;
                        };
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let _ = s.write_all(req.as_bytes());
                        let mut out = Vec::new();
                        let _ = s.read_to_end(&mut out);
                        let text = String::from_utf8_lossy(&out);
                        if text.starts_with("HTTP/1.1 200") {
                            ok += 1;
                        } else if text.starts_with("HTTP/1.1 503") {
                            busy += 1;
                        } else {
                            panic!("unexpected answer during the flood: {text:?}");
                        }
                    }
                    (ok, busy, unconnected)
                })
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        soap_ok_within(&bed, Duration::from_secs(2));
        thread::sleep(Duration::from_millis(500));
    }
    thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut busy, mut unconnected) = (0, 0, 0);
    for f in floods {
        let (o, b, u) = f.join().unwrap();
        ok += o;
        busy += b;
        unconnected += u;
    }
    let after = vm_rss_kib(pid);
    eprintln!(
        "SOAP flood: {ok} answered, {busy} × 503, {unconnected} connects timed out; VmRSS {before} → {after} KiB"
    );
    assert!(ok >= 100, "only {ok} requests answered");
    assert!(
        after <= before + 1024,
        "VmRSS grew from {before} to {after} KiB"
    );
    assert!(alive(pid));
}

/// Opens `n` connections from `from` (an address of the LAN host) to
/// `to`, each sending `first` (nothing: an idle connection; a partial
/// head: one in the middle of a request).
fn hold(bed: &Bed, from: &str, to: SocketAddr, n: usize, first: &'static [u8]) -> Vec<TcpStream> {
    let from: std::net::IpAddr = from.parse().unwrap();
    in_netns(&bed.c, move || {
        (0..n)
            .map(|_| {
                use socket2::{Domain, Socket, Type};
                let s = Socket::new(Domain::for_address(to), Type::STREAM, None).unwrap();
                s.bind(&SocketAddr::new(from, 0).into()).unwrap();
                s.connect_timeout(&to.into(), Duration::from_secs(5))
                    .unwrap();
                let mut t: TcpStream = s.into();
                t.write_all(first).unwrap();
                t
            })
            .collect()
    })
}

/// A GET of the description from `from`: its status line.
fn get_from(bed: &Bed, from: &str, to: SocketAddr) -> String {
    let host = match to {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    };
    let mut c = hold(bed, from, to, 1, b"").pop().unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// Four hosts holding 8 idle connections each fill the server's 32; a
/// fifth host is still served at once: the oldest idle connection is
/// closed to make room. Connections in the middle of a request are never
/// closed for it.
#[test]
fn idle_connections_make_way_for_a_new_host() {
    let (bed, pid) = started("abidle");
    let hosts = [
        "192.168.77.50",
        "192.168.77.51",
        "192.168.77.52",
        "192.168.77.53",
    ];
    let newcomer = "192.168.77.54";
    for a in hosts.iter().chain([&newcomer]) {
        bed.add_addr(&bed.c, &format!("{a}/24"), "c-eth0");
    }
    let l = Limits::default();
    let per = l.max_per_client;
    let mut idle = Vec::new();
    for a in hosts {
        idle.extend(hold(&bed, a, lan_http(), per, b""));
    }
    assert_eq!(idle.len(), l.max_connections);
    assert_eq!(get_from(&bed, newcomer, lan_http()), "HTTP/1.1 200 OK");
    // the oldest idle connection, the first one opened, was closed
    let mut first = &idle[0];
    first
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut out = Vec::new();
    assert!(matches!(first.read_to_end(&mut out), Ok(0)), "{out:?}");
    drop(idle);

    // the same with every connection in the middle of a request: no room
    let mut busy = Vec::new();
    for a in hosts {
        busy.extend(hold(&bed, a, lan_http(), per, b"GET / HTTP/1.1\r\n"));
    }
    // every connection has been accepted and has its first bytes read
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get_from(&bed, newcomer, lan_http()),
        "HTTP/1.1 503 Service Unavailable"
    );
    drop(busy);
    assert!(alive(pid));
}

/// An IPv6 host may use any address of its /64, so the per-client cap
/// counts the /64: eight connections from eight addresses of fd77::/64
/// leave no room for a ninth from another address of it.
#[test]
fn ipv6_clients_are_counted_per_64() {
    let (bed, _) = started("ab64");
    let to: SocketAddr = format!("[{LAN6}]:5000").parse().unwrap();
    let per = Limits::default().max_per_client;
    let mut busy = Vec::new();
    for i in 0..per {
        let a = format!("fd77::{:x}", 0x10 + i);
        let o = bed.exec(
            &bed.c,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                &format!("{a}/64"),
                "dev",
                "c-eth0",
                "nodad",
            ],
        );
        assert!(o.status.success());
        busy.extend(hold(&bed, &a, to, 1, b"GET / HTTP/1.1\r\n"));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(
        get_from(&bed, CLIENT6, to),
        "HTTP/1.1 503 Service Unavailable"
    );
    drop(busy);
}
