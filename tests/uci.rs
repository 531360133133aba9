//! Configuration from UCI and leases that outlive restarts: OpenWrt's own
//! default config, restarts, SIGHUP after edits, invalid configurations,
//! --check-config, and kill -9 while clients change mappings.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rupnpd::proto::uci::SectionRef;

/// OpenWrt's shipped /etc/config/upnpd (openwrt/packages
/// net/miniupnpd/files/upnpd.config), verbatim.
const SHIPPED: &str = include_str!("fixtures/miniupnpd-upnpd.config");

/// The shipped file, switched on, with its devices as in the bed. The
/// lease file moves into the test's directory.
fn shipped(bed: &Bed) -> (String, String) {
    shipped_with_leases(bed, &bed.dir)
}

/// [`shipped`] with the lease files in `lease_dir`.
fn shipped_with_leases(bed: &Bed, lease_dir: &Path) -> (String, String) {
    let leases = lease_dir.join("upnp.leases");
    let text = SHIPPED
        .replace("option enabled\t\t0", "option enabled\t\t1")
        .replace(
            "option internal_iface\tlan",
            "option internal_iface\tbr-lan",
        )
        .replace(
            "#\toption external_iface\twan",
            "\toption external_iface\teth1",
        )
        .replace(
            "/var/run/miniupnpd.leases6",
            &lease_dir.join("upnp.leases6").display().to_string(),
        )
        .replace("/var/run/miniupnpd.leases", &leases.display().to_string());
    let dir = bed.config(&text);
    (dir.display().to_string(), leases.display().to_string())
}

fn daemon(dir: &str, extra: &[&str]) -> std::process::Output {
    let o = Command::new(daemon_bin())
        .args(["--config-dir", dir])
        .args(extra)
        .output()
        .unwrap();
    assert_no_panic(&format!("{extra:?}"), &String::from_utf8_lossy(&o.stderr));
    o
}

#[test]
fn openwrt_default_config_works_and_mappings_survive_a_restart() {
    let mut bed = Bed::new("dflt");
    bed.fw4_start();
    let (dir, leases) = shipped(&bed);
    // the devices come from the UCI file (the bed adds --lan/--wan with
    // the same names)
    bed.start(&["--config-dir", &dir]);
    // igdv1 1: IGD:1 descriptions, so upnpc uses :1 and 0 is permanent
    let d = bed.http_get("/rootDesc.xml").unwrap();
    assert!(d.contains("InternetGatewayDevice:1<"), "{d}");
    let out = bed.upnpc(&["-e", "kept", "-a", CLIENT_IP, "8080", "18080", "TCP"]);
    assert!(out.contains("(duration=0)"), "{out}");
    let out = bed.upnpc(&["-a", CLIENT_IP, "9000", "19000", "UDP", "600"]);
    assert!(out.contains("(duration=600)"), "{out}");
    // the perm rules of the shipped file: low ports refused (IGD:1 → 718)
    let out = bed.upnpc(&["-a", CLIENT_IP, "22", "2222", "TCP"]);
    assert!(out.contains("failed with code 718"), "{out}");
    let text = std::fs::read_to_string(&leases).unwrap();
    assert!(
        text.contains("TCP:18080:192.168.77.2:8080:0:kept\n"),
        "{text}"
    );
    assert!(text.contains("UDP:19000:192.168.77.2:9000:"), "{text}");

    bed.stop();
    assert!(bed.dnat_elements().is_empty());
    bed.start(&["--config-dir", &dir]);
    let out = bed.upnpc(&["-l"]);
    assert!(
        out.contains("TCP 18080->192.168.77.2:8080  'kept' '' 0"),
        "{out}"
    );
    assert!(out.contains("UDP 19000->192.168.77.2:9000"), "{out}");
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080", "udp . 19000"]);
    assert!(bed.tcp_through(18080, 8080));
    assert!(
        bed.log()
            .contains("restored 2 mappings from the lease file"),
        "{}",
        bed.log()
    );
}

#[test]
fn sighup_applies_edits_without_losing_leases() {
    let mut bed = Bed::new("hup");
    bed.fw4_start();
    let (dir, _) = shipped(&bed);
    bed.start(&["--config-dir", &dir]);
    let out = bed.upnpc(&["-a", CLIENT_IP, "8080", "18080", "TCP", "600"]);
    assert!(out.contains("is redirected"), "{out}");
    let out = bed.upnpc(&["-a", CLIENT_IP, "9000", "30000", "UDP", "600"]);
    assert!(out.contains("is redirected"), "{out}");
    let file = Path::new(&dir).join("upnpd");

    // tighten the rules (a deny for 30000-30999 before the allow) and move
    // the HTTP port, as `uci set …; uci commit` would
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replacen(
        "config perm_rule",
        "config perm_rule\n\toption action deny\n\toption ext_ports 30000-30999\n\toption int_addr 0.0.0.0/0\n\toption int_ports 0-65535\n\toption comment 'No 30000s'\n\nconfig perm_rule",
        1,
    );
    std::fs::write(&file, text).unwrap();
    rupnpd::sys::uci::set_option_atomic(&file, &SectionRef::Named("config".into()), "port", "5555")
        .unwrap();
    bed.signal("HUP");
    // the removal is logged when the loop turn commits, right after the
    // reload's own line
    let t = Instant::now();
    while !(bed.log().contains("configuration reloaded") && bed.log().contains("delete UDP 30000"))
    {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", bed.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = bed.log();
    assert!(
        log.contains("delete UDP 30000 -> 192.168.77.2:9000")
            && log.contains("no longer allowed after reload: denied by permission rules"),
        "{log}"
    );
    // the other lease is kept and still works; HTTP moved to 5555
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080"]);
    assert!(bed.tcp_through(18080, 8080));
    let req =
        format!("GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5555\r\nConnection: close\r\n\r\n");
    let c = bed.c.clone();
    let r = in_netns(&c, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((LAN_IP, 5555)).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    });
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(
        bed.http_get("/rootDesc.xml").is_err(),
        "old port still open"
    );

    // an invalid edit: the running configuration stays
    rupnpd::sys::uci::set_option_atomic(
        &file,
        &SectionRef::Named("config".into()),
        "port",
        "99999",
    )
    .unwrap();
    bed.signal("HUP");
    let t = Instant::now();
    while !bed.log().contains("reload refused") {
        assert!(t.elapsed() < Duration::from_secs(5), "{}", bed.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        bed.log()
            .contains("upnpd.config.port: invalid value \"99999\""),
        "{}",
        bed.log()
    );
    assert!(bed.tcp_through(18080, 8080));
}

/// A reload applies every setting it reads, or says in the log that the
/// setting needs a restart: the GENA caps, the UUID, `ipv6_disable` (the
/// IPv6 HTTP listener closes) and the nftables names (kept until a
/// restart, and logged so). The HTTP port moves too, so that the new
/// listeners never wait for the old ones to close.
#[test]
fn sighup_applies_every_setting_it_reads() {
    let mut bed = Bed::new("hupall");
    bed.fw4_start();
    let old = "00000000-0000-4000-8000-0000000000aa";
    let new = "00000000-0000-4000-8000-0000000000bb";
    let conf = |extra: &str| {
        format!(
            "config upnpd 'config'\n\toption uuid '{old}'\n{extra}\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\
\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n"
        )
    };
    let dir = bed.config(&conf(""));
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    let request = |bed: &Bed, port: u16, head: &str| {
        let req = format!("{head}\r\nHost: {LAN_IP}:{port}\r\nConnection: close\r\n\r\n");
        in_netns(&bed.c, move || {
            use std::io::{Read, Write};
            let mut s = std::net::TcpStream::connect((LAN_IP, port)).unwrap();
            s.write_all(req.as_bytes()).unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
    };
    let subscribe = |bed: &Bed, port: u16| {
        request(
            bed,
            port,
            &format!(
                "SUBSCRIBE /evt/IPConn HTTP/1.1\r\nCALLBACK: <http://{CLIENT_IP}:4000/>\r\n\
NT: upnp:event\r\nTIMEOUT: Second-1800"
            ),
        )
    };
    let v6_listening = |bed: &Bed, port: u16| {
        in_netns(&bed.c, move || {
            std::net::TcpStream::connect_timeout(
                &format!("[{LAN6}]:{port}").parse().unwrap(),
                Duration::from_secs(2),
            )
            .is_ok()
        })
    };
    assert!(request(&bed, 5000, "GET /rootDesc.xml HTTP/1.1").contains(old));
    assert!(v6_listening(&bed, 5000));
    // The subscriber takes its events (a failed delivery ends a
    // subscription, and the cap below counts a live one), and stays
    // until the end of the test.
    let events = in_netns(&bed.c, || {
        bind_retry(|| std::net::TcpListener::bind((CLIENT_IP, 4000)))
    });
    assert!(subscribe(&bed, 5000).starts_with("HTTP/1.1 200"));
    assert!(
        receive_event(&events, Duration::from_secs(5)).is_some(),
        "no initial event: {}",
        bed.log()
    );

    let text = conf(
        "\toption port '5555'\n\toption max_subscribers_per_client '1'\n\
\toption ipv6_disable '1'\n\toption nft_table 'other'\n",
    )
    .replace(old, new);
    std::fs::write(dir.join("upnpd"), text).unwrap();
    bed.signal("HUP");
    assert!(
        bed.wait_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        bed.log()
    );
    let desc = request(&bed, 5555, "GET /rootDesc.xml HTTP/1.1");
    assert!(desc.contains(new) && !desc.contains(old), "{desc}");
    // one subscription already held: the new cap of 1 refuses a second
    let r = subscribe(&bed, 5555);
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(!v6_listening(&bed, 5555), "IPv6 HTTP open");
    let log = bed.log();
    assert!(
        log.contains("nft_table") && log.contains("restart"),
        "{log}"
    );
    // the running firewall is untouched
    assert!(
        bed.nft("list chain inet fw4 upnp_prerouting")
            .contains("rupnpd")
    );
}

#[test]
fn check_config_and_invalid_configurations() {
    let bed = Bed::new("chk");
    let (dir, _) = shipped(&bed);
    let o = daemon(&dir, &["--check-config"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("\toption igdv1 '1'\n") && out.contains("\toption port '5000'\n"),
        "{out}"
    );
    assert!(
        out.contains("config perm_rule\n\toption action 'allow'\n\toption ext_ports '1024-65535'"),
        "{out}"
    );

    std::fs::write(
        Path::new(&dir).join("upnpd"),
        "config upnpd 'config'\n\toption port 'http'\n\toption secure_mode 'maybe'\n\toption bogus '1'\n\n\
config perm_rule\n\toption action 'allow'\n\toption ext_ports '70000'\n",
    )
    .unwrap();
    let o = daemon(&dir, &["--check-config"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("upnpd.config.port: invalid value \"http\""),
        "{err}"
    );
    assert!(
        err.contains("upnpd.config.secure_mode: invalid value \"maybe\""),
        "{err}"
    );
    assert!(
        err.contains("upnpd.@perm_rule[0].ext_ports: invalid value \"70000\""),
        "{err}"
    );
    // starting with it fails with the same error and a non-zero status
    let o = daemon(&dir, &["--stderr", "--lan", "lo"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("upnpd.config.port"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// With the lease file on disk (as on flash: written in place, synced
/// later) ...
#[test]
fn kill_9_at_any_moment_loses_no_acknowledged_mapping() {
    let mut bed = Bed::new("k9lp");
    kill_9_rounds(&mut bed, None);
}

/// ... and on tmpfs, where OpenWrt keeps it (never synced).
#[test]
fn kill_9_at_any_moment_loses_no_acknowledged_mapping_on_tmpfs() {
    let mut bed = Bed::new("k9tm");
    let shm = Path::new("/dev/shm").join(format!("rupnpd-test-k9-{}", std::process::id()));
    std::fs::create_dir_all(&shm).unwrap();
    struct Gone(std::path::PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _gone = Gone(shm.clone());
    kill_9_rounds(&mut bed, Some(&shm));
}

/// Clients add and delete mappings while the daemon is killed at random
/// moments: every mapping a client was told about is in the lease file,
/// every line of it reads, and the next start brings them all back.
fn kill_9_rounds(bed: &mut Bed, lease_dir: Option<&Path>) {
    bed.fw4_start();
    let lease_dir = lease_dir.map_or_else(|| bed.dir.clone(), Path::to_path_buf);
    let (dir, leases) = shipped_with_leases(bed, &lease_dir);
    // IGDv2 so leases are finite; no secure-mode surprises
    let file = Path::new(&dir).join("upnpd");
    rupnpd::sys::uci::set_option_atomic(&file, &SectionRef::Named("config".into()), "igdv1", "0")
        .unwrap();
    let acked: Arc<Mutex<BTreeSet<u16>>> = Arc::default();
    let mut seed = 0x2545_f491u32;
    for round in 0..12u16 {
        bed.start(&["--config-dir", &dir]);
        // everything acknowledged before the previous kill is back
        let live: BTreeSet<u16> = acked.lock().unwrap().clone();
        let mut c = KeepAlive::open(bed);
        for p in &live {
            let port = p.to_string();
            let (code, body) = c.call(
                "GetSpecificPortMappingEntry",
                &[
                    ("NewRemoteHost", ""),
                    ("NewExternalPort", &port),
                    ("NewProtocol", "TCP"),
                ],
            );
            assert_eq!(
                code, 200,
                "round {round}: acknowledged mapping {p} lost: {body}"
            );
        }
        drop(c);
        // churn: adds and deletes from a client, until the kill
        let stop = Arc::new(AtomicBool::new(false));
        let (stop2, acked2) = (stop.clone(), acked.clone());
        let mut c = KeepAlive::open(bed);
        let base = 20000 + round * 100;
        let churn = std::thread::spawn(move || {
            let mut i = 0u16;
            while !stop2.load(Ordering::Relaxed) && i < 90 {
                let p = base + i;
                let port = p.to_string();
                let Some((code, _)) = c.try_call(
                    "AddPortMapping",
                    &add_args(&port, "TCP", &port, CLIENT_IP, "3600", "churn"),
                ) else {
                    break;
                };
                if code == 200 {
                    acked2.lock().unwrap().insert(p);
                }
                if i % 3 == 2 {
                    // once a delete is sent the mapping may be gone, whether
                    // or not its answer arrives before the kill
                    acked2.lock().unwrap().remove(&(p - 1));
                    let q = (p - 1).to_string();
                    if c.try_call(
                        "DeletePortMapping",
                        &[
                            ("NewRemoteHost", ""),
                            ("NewExternalPort", &q),
                            ("NewProtocol", "TCP"),
                        ],
                    )
                    .is_none()
                    {
                        break;
                    }
                }
                i += 1;
            }
        });
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        std::thread::sleep(Duration::from_millis(20 + u64::from(seed % 200)));
        bed.kill9();
        stop.store(true, Ordering::Relaxed);
        churn.join().unwrap();
        // the file is never torn: every line parses
        let text = std::fs::read_to_string(&leases).unwrap_or_default();
        let (parsed, bad) = rupnpd::proto::lease::parse_file(&text);
        assert!(
            bad.is_empty(),
            "round {round}: torn lease file: {bad:?}\n{text}"
        );
        let in_file: BTreeSet<u16> = parsed.iter().map(|l| l.eport).collect();
        let missing: Vec<_> = acked
            .lock()
            .unwrap()
            .difference(&in_file)
            .copied()
            .collect();
        assert!(
            missing.is_empty(),
            "round {round}: acknowledged but not in the lease file: {missing:?}"
        );
    }
    bed.start(&["--config-dir", &dir]);
    let n = acked.lock().unwrap().len();
    assert!(
        n > 20,
        "the churn made too few mappings to mean anything ({n})"
    );
}

/// Under the packages feed's `panic = "unwind"` a panic in one of the
/// daemon's tasks ends only that task and the daemon serves on, so the
/// tests look for the message Rust's panic hook writes to the daemon's
/// stderr (its log here). The line such a panic writes, appended to a
/// running daemon's log, fails the test at the stop.
#[test]
#[should_panic(expected = "the daemon panicked")]
fn a_panic_in_the_daemon_fails_the_test() {
    use std::io::Write;
    let mut bed = Bed::new("panic");
    bed.fw4_start();
    let (dir, _) = shipped(&bed);
    bed.start(&["--config-dir", &dir]);
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(bed.dir.join("daemon0.log"))
        .unwrap();
    writeln!(
        log,
        "\nthread 'main' panicked at src/core/table.rs:1:1:\nattempt to add with overflow"
    )
    .unwrap();
    bed.stop();
}
