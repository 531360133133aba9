//! The namespace test bed for integration tests: a LAN host, a router
//! running the real daemon, and a WAN host, joined by veth pairs
//! (`docs/testbed.md`). The router's devices carry the names of the router
//! firewall4's output was recorded on (`br-lan`, `eth1`), so the recorded
//! ruleset loads as it was printed ([`fw4`]). Everything is created per
//! test under a unique prefix and removed in `Drop`, so a failing or
//! panicking test cleans up too; a bed left over by a killed run is
//! removed before the same test builds it again.
#![allow(dead_code)]

pub mod carrier;
pub mod fw4;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const LAN_IP: &str = "192.168.77.1";
pub const CLIENT_IP: &str = "192.168.77.2";
/// A second LAN client address, on the same LAN host namespace.
pub const CLIENT2_IP: &str = "192.168.77.3";
/// The address of the other LAN host of a bridged bed ([`Bed::c2`]),
/// behind its own bridge port.
pub const CLIENT3_IP: &str = "192.168.77.4";
pub const WAN_IP: &str = "192.0.3.1";
pub const PEER_IP: &str = "192.0.3.2";
pub const LAN6: &str = "fd77::1";
pub const CLIENT6: &str = "fd77::2";
pub const CLIENT6_2: &str = "fd77::3";
pub const PEER6: &str = "2001:db8:3::2";
/// The router's LAN and WAN devices, named as on the router firewall4's
/// ruleset was recorded on (there `br-lan` is a bridge, here a veth; `eth1`
/// the WAN port).
pub const LAN_DEV: &str = fw4::CAPTURED_LAN_DEV;
pub const WAN_DEV: &str = fw4::CAPTURED_WAN_DEV;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The daemon under test: `RUPNPD_BIN` when set (CI runs the suite
/// against the musl build of the packages feed, `scripts/musl-test.sh`),
/// else the binary cargo built with the tests.
pub fn daemon_bin() -> PathBuf {
    std::env::var_os("RUPNPD_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rupnpd")))
}

/// What Rust's panic hook prints, in every profile: with `panic = "abort"`
/// the daemon then dies, but with the packages feed's `panic = "unwind"` a
/// panic in a spawned task only ends that task and the daemon runs on, so
/// the tests look for the message itself.
const PANIC_MARK: &str = "panicked at";

/// Fails the test if the daemon's output (`what` names the run) shows a
/// panic anywhere, in any thread or task.
pub fn assert_no_panic(what: &str, output: &str) {
    assert!(
        !output.contains(PANIC_MARK),
        "the daemon panicked ({what}):\n{output}"
    );
}

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Skips nothing: these tests need root, nftables and the clients, which
/// `scripts/test.sh` installs. A missing tool is a test failure.
pub fn require(tools: &[&str]) {
    for t in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(t).exists()))
            .unwrap_or(false);
        assert!(
            found,
            "{t} is not installed: run scripts/test.sh, which installs it"
        );
    }
}

/// A UDP socket in namespace `ns` that listens on the multicast `group`
/// at `port`, joined on the LAN host's address, as a client on the LAN
/// listens for SSDP or NAT-PMP/PCP announcements.
pub fn multicast_listener(ns: &str, group: Ipv4Addr, port: u16) -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    in_netns(ns, move || {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        s.set_reuse_address(true).unwrap();
        s.bind(&SocketAddr::from((group, port)).into()).unwrap();
        s.join_multicast_v4(&group, &CLIENT_IP.parse().unwrap())
            .unwrap();
        s.into()
    })
}

/// The three namespaces of one test.
pub struct Bed {
    pub c: String,
    pub r: String,
    pub w: String,
    /// Another LAN host, [`CLIENT3_IP`], on the bridge's second port
    /// (bridged beds only).
    pub c2: String,
    pub dir: PathBuf,
    /// The router's LAN and WAN devices.
    pub lan_dev: String,
    pub wan_dev: String,
    /// The `fw4 print` the router's firewall4 loads.
    pub fw4_print: fw4::Print,
    /// Environment variables the daemons started from now on get.
    pub env: Vec<(String, String)>,
    daemons: Vec<Child>,
}

impl Bed {
    /// Builds the bed under prefix `name` (unique per test, ≤ 8 chars),
    /// its router's devices named [`LAN_DEV`] and [`WAN_DEV`].
    pub fn new(name: &str) -> Bed {
        Bed::with_devices(name, LAN_DEV, WAN_DEV)
    }

    /// Builds the bed with the router's devices named `lan_dev` and
    /// `wan_dev` (a LAN on a plain port, a PPPoE WAN, the bed a capture
    /// was made in).
    pub fn with_devices(name: &str, lan_dev: &str, wan_dev: &str) -> Bed {
        Bed::build(name, lan_dev, wan_dev, None)
    }

    /// Builds the bed with the router's LAN a real bridge, as on OpenWrt:
    /// `br-lan` with the port `lan1` that leads to the LAN host and the
    /// port `lan2` that leads to another ([`Bed::c2`]). As on OpenWrt
    /// without kmod-br-netfilter, bridged frames skip the IP hooks
    /// (`bridge-nf-call-iptables` 0 where the host kernel has
    /// br_netfilter).
    pub fn with_bridge(name: &str) -> Bed {
        Bed::build(name, LAN_DEV, WAN_DEV, Some(false))
    }

    /// [`Bed::with_bridge`] as on OpenWrt with kmod-br-netfilter, whose
    /// `/etc/sysctl.d/11-br-netfilter.conf` sets
    /// `net.bridge.bridge-nf-call-iptables` (and `-ip6tables`) to 1:
    /// bridged frames meet the IP hooks. The sysctl is per network
    /// namespace, so only the router's is set; the host kernel needs
    /// br_netfilter (`scripts/test.sh` loads it).
    pub fn with_bridge_netfilter(name: &str) -> Bed {
        Bed::build(name, LAN_DEV, WAN_DEV, Some(true))
    }

    /// `bridge`: a bridged LAN, and whether br_netfilter hands its frames
    /// to the IP hooks.
    fn build(name: &str, lan_dev: &str, wan_dev: &str, bridge: Option<bool>) -> Bed {
        require(&["ip", "nft"]);
        // The test process's id keeps two runs of the suite (two checkouts)
        // apart; scripts/test.sh removes the beds of processes that are gone.
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("rupnpd-test-{pid}-{name}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bed = Bed {
            c: format!("rupt-{pid}-{name}-c"),
            r: format!("rupt-{pid}-{name}-r"),
            w: format!("rupt-{pid}-{name}-w"),
            c2: format!("rupt-{pid}-{name}-c2"),
            dir,
            lan_dev: lan_dev.to_string(),
            wan_dev: wan_dev.to_string(),
            fw4_print: fw4::Print::Default,
            env: Vec::new(),
            daemons: Vec::new(),
        };
        bed.teardown_netns();
        let mut hosts = vec![&bed.c, &bed.r, &bed.w];
        if bridge.is_some() {
            hosts.push(&bed.c2);
        }
        for ns in hosts {
            must(&["ip", "netns", "add", ns]);
            must(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        let lan_port = if bridge.is_some() { "lan1" } else { lan_dev };
        must(&[
            "ip", "link", "add", "c-eth0", "netns", &bed.c, "type", "veth", "peer", "name",
            lan_port, "netns", &bed.r,
        ]);
        if let Some(netfilter) = bridge {
            must(&["ip", "-n", &bed.r, "link", "add", lan_dev, "type", "bridge"]);
            must(&[
                "ip", "link", "add", "c-eth0", "netns", &bed.c2, "type", "veth", "peer", "name",
                "lan2", "netns", &bed.r,
            ]);
            for port in [lan_port, "lan2"] {
                must(&["ip", "-n", &bed.r, "link", "set", port, "master", lan_dev]);
                must(&["ip", "-n", &bed.r, "link", "set", port, "up"]);
            }
            let host = format!("{CLIENT3_IP}/24");
            must(&["ip", "-n", &bed.c2, "addr", "add", &host, "dev", "c-eth0"]);
            must(&["ip", "-n", &bed.c2, "link", "set", "c-eth0", "up"]);
            must(&[
                "ip", "-n", &bed.c2, "route", "add", "default", "via", LAN_IP,
            ]);
            let value = u8::from(netfilter);
            for family in ["iptables", "ip6tables"] {
                let set = format!("net.bridge.bridge-nf-call-{family}={value}");
                let args = ["ip", "netns", "exec", &bed.r, "sysctl", "-qw", &set];
                if netfilter {
                    let o = sh(&args);
                    assert!(
                        o.status.success(),
                        "{set}: the host kernel lacks br_netfilter (modprobe br_netfilter): {}",
                        String::from_utf8_lossy(&o.stderr)
                    );
                } else {
                    // absent without br_netfilter, which is what is wanted
                    let _ = sh(&args);
                }
            }
        }
        must(&[
            "ip", "link", "add", "w-eth0", "netns", &bed.w, "type", "veth", "peer", "name",
            wan_dev, "netns", &bed.r,
        ]);
        must(&[
            "ip",
            "-n",
            &bed.c,
            "addr",
            "add",
            "192.168.77.2/24",
            "dev",
            "c-eth0",
        ]);
        must(&[
            "ip",
            "-n",
            &bed.c,
            "addr",
            "add",
            "192.168.77.3/24",
            "dev",
            "c-eth0",
        ]);
        must(&[
            "ip",
            "-n",
            &bed.r,
            "addr",
            "add",
            "192.168.77.1/24",
            "dev",
            lan_dev,
        ]);
        must(&[
            "ip",
            "-n",
            &bed.r,
            "addr",
            "add",
            "192.0.3.1/24",
            "dev",
            wan_dev,
        ]);
        must(&[
            "ip",
            "-n",
            &bed.w,
            "addr",
            "add",
            "192.0.3.2/24",
            "dev",
            "w-eth0",
        ]);
        for (ns, dev) in [
            (&bed.c, "c-eth0"),
            (&bed.r, lan_dev),
            (&bed.r, wan_dev),
            (&bed.w, "w-eth0"),
        ] {
            must(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        must(&["ip", "-n", &bed.c, "route", "add", "default", "via", LAN_IP]);
        must(&[
            "ip",
            "netns",
            "exec",
            &bed.r,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        // IPv6: a ULA LAN prefix routed (not translated) to the WAN side,
        // for pinholes. `nodad` so the addresses are usable at once.
        for (ns, addr, dev) in [
            (&bed.c, "fd77::2/64", "c-eth0"),
            (&bed.c, "fd77::3/64", "c-eth0"),
            (&bed.r, "fd77::1/64", lan_dev),
            (&bed.r, "2001:db8:3::1/64", wan_dev),
            (&bed.w, "2001:db8:3::2/64", "w-eth0"),
        ] {
            must(&[
                "ip", "-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad",
            ]);
        }
        must(&[
            "ip", "-n", &bed.c, "-6", "route", "add", "default", "via", "fd77::1",
        ]);
        must(&[
            "ip",
            "-n",
            &bed.w,
            "-6",
            "route",
            "add",
            "fd77::/64",
            "via",
            "2001:db8:3::1",
        ]);
        must(&[
            "ip",
            "netns",
            "exec",
            &bed.r,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        // Let DAD and the veth carrier settle so the first packets are not lost.
        std::thread::sleep(Duration::from_millis(200));
        bed
    }

    fn teardown_netns(&self) {
        for ns in [&self.c, &self.r, &self.w, &self.c2] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The ruleset the router's firewall4 loads ([`fw4::ruleset`]).
    pub fn fw4_ruleset(&self) -> String {
        fw4::ruleset(self.fw4_print, &self.lan_dev, &self.wan_dev)
    }

    /// `fw4 start`: loads the printed ruleset, which creates the table.
    pub fn fw4_start(&self) {
        self.nft_load(&self.fw4_ruleset());
    }

    /// `fw4 reload`: the same printed ruleset loaded over the running one,
    /// in one transaction. It begins with `table inet fw4` and
    /// `flush table inet fw4`, so every chain is emptied and every object
    /// declared again; set and map elements survive.
    pub fn fw4_reload(&self) {
        self.nft_load(&self.fw4_ruleset());
    }

    /// `fw4 stop`: the table is deleted, with everything in it.
    pub fn fw4_stop(&self) {
        let o = self.exec(&self.r, &["nft", "delete", "table", "inet", "fw4"]);
        assert!(
            o.status.success(),
            "fw4 stop: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// `fw4 restart`: a stop, then a start (two transactions).
    pub fn fw4_restart(&self) {
        self.fw4_stop();
        self.fw4_start();
    }

    /// Loads `text` with `nft -f -` in the router.
    pub fn nft_load(&self, text: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.r, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "nft -f failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Runs a command in a namespace.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Output {
        let mut full = vec!["ip", "netns", "exec", ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Moves the router's WAN address from `old` to `new` (both /24), as
    /// a DHCP renewal with a new lease does.
    pub fn renumber_wan(&self, old: &str, new: &str) {
        for (verb, a) in [("del", old), ("add", new)] {
            let cidr = format!("{a}/24");
            let o = self.exec(&self.r, &["ip", "addr", verb, &cidr, "dev", &self.wan_dev]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
    }

    pub fn nft(&self, args: &str) -> String {
        let mut full = vec!["nft"];
        full.extend(args.split_whitespace());
        let o = self.exec(&self.r, &full);
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Writes a UCI config dir with `upnpd` content and returns its path.
    pub fn config(&self, upnpd: &str) -> PathBuf {
        let d = self.dir.join("config");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("upnpd"), upnpd).unwrap();
        d
    }

    /// Starts the daemon in the router namespace with `args` and waits
    /// until it serves its description.
    pub fn start(&mut self, args: &[&str]) -> u32 {
        let (lan, wan) = (self.lan_dev.clone(), self.wan_dev.clone());
        let mut all = vec!["--lan", &lan, "--wan", &wan];
        all.extend_from_slice(args);
        self.start_raw(&all)
    }

    /// Like `start`, with only `args` (plus logging flags): the devices
    /// come from the configuration.
    pub fn start_raw(&mut self, args: &[&str]) -> u32 {
        let pid = self.spawn(args);
        self.wait_ready();
        pid
    }

    /// Like `start`, logging to the syslog socket at `socket` instead of
    /// stderr (stderr still goes to the log file, for the lines the
    /// daemon cannot send there).
    pub fn start_syslog(&mut self, socket: &Path, args: &[&str]) -> u32 {
        let (lan, wan) = (self.lan_dev.clone(), self.wan_dev.clone());
        let mut all = vec!["--lan", &lan, "--wan", &wan];
        all.extend_from_slice(args);
        let pid = self.spawn_logging(&["--debug", "--syslog", socket.to_str().unwrap()], &all);
        self.wait_ready();
        pid
    }

    /// Starts the daemon like [`Bed::start_raw`] without waiting for it
    /// to serve.
    pub fn spawn(&mut self, args: &[&str]) -> u32 {
        self.spawn_logging(&["--stderr", "--debug"], args)
    }

    fn spawn_logging(&mut self, log_args: &[&str], args: &[&str]) -> u32 {
        let log = self.dir.join(format!("daemon{}.log", self.daemons.len()));
        // appended to, so that nothing written beside the daemon (a test
        // marking the log) is overwritten by its next line
        File::create(&log).unwrap();
        let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        let err = out.try_clone().unwrap();
        let bin = daemon_bin();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.r])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg(&bin)
            .args(log_args)
            .args(args)
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().expect("start rupnpd");
        let pid = child.id();
        self.daemons.push(child);
        pid
    }

    /// Waits until the description is served.
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self.http_get("/rootDesc.xml") {
                if r.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("daemon not ready; log:\n{}", self.log());
    }

    /// The daemon's log so far (all instances).
    pub fn log(&self) -> String {
        self.logs(self.daemons.len())
    }

    /// The logs of the first `n` daemon slots (at least one).
    fn logs(&self, n: usize) -> String {
        let mut s = String::new();
        for i in 0..n.max(1) {
            if let Ok(t) = std::fs::read_to_string(self.dir.join(format!("daemon{i}.log"))) {
                s.push_str(&t);
            }
        }
        s
    }

    /// Sends a signal to the newest daemon.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = self.daemons.last() {
            // `ip netns exec` execs the daemon, so the child pid is the daemon.
            must(&["kill", &format!("-{sig}"), &c.id().to_string()]);
        }
    }

    /// Stops the newest daemon with SIGTERM and waits for it. Fails the
    /// test if any daemon of this bed has panicked so far.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.daemons.pop()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let status = wait_child(&mut c, Duration::from_secs(10));
        // its log is overwritten by the next daemon's: check it now
        assert_no_panic(&self.r, &self.logs(self.daemons.len() + 1));
        status
    }

    /// Kills the newest daemon with SIGKILL.
    pub fn kill9(&mut self) {
        assert_no_panic(&self.r, &self.log());
        if let Some(mut c) = self.daemons.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs `upnpc -u <root desc> args…` in the LAN namespace.
    pub fn upnpc(&self, args: &[&str]) -> String {
        self.upnpc_within(30, args)
    }

    /// [`Bed::upnpc`], killed after `secs` seconds.
    pub fn upnpc_within(&self, secs: u32, args: &[&str]) -> String {
        require(&["upnpc"]);
        let url = format!("http://{LAN_IP}:5000/rootDesc.xml");
        let secs = secs.to_string();
        let mut full = vec!["timeout", &secs, "upnpc", "-u", &url];
        full.extend_from_slice(args);
        let o = self.exec(&self.c, &full);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Runs `natpmpc -g <router> args…` in the LAN namespace (killed after
    /// 20 s: natpmpc retransmits for about two minutes when nothing
    /// answers).
    pub fn natpmpc(&self, args: &[&str]) -> String {
        require(&["natpmpc"]);
        let mut full = vec!["timeout", "20", "natpmpc", "-g", LAN_IP];
        full.extend_from_slice(args);
        let o = self.exec(&self.c, &full);
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
    }

    /// Runs a closure with the calling thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(&self, ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(ns, f)
    }

    /// A raw HTTP GET from the LAN host.
    pub fn http_get(&self, path: &str) -> std::io::Result<String> {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nConnection: close\r\n\r\n");
        self.http_raw(req.into_bytes())
    }

    /// Sends raw bytes to the router's HTTP port from the LAN host and
    /// returns everything it answers.
    pub fn http_raw(&self, bytes: Vec<u8>) -> std::io::Result<String> {
        let ns = self.c.clone();
        in_netns(&ns, move || {
            let mut s = TcpStream::connect_timeout(
                &format!("{LAN_IP}:5000").parse().unwrap(),
                Duration::from_secs(2),
            )?;
            s.set_read_timeout(Some(Duration::from_secs(15)))?;
            s.write_all(&bytes)?;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            Ok(String::from_utf8_lossy(&out).into_owned())
        })
    }

    /// A SOAP call from the LAN host (source address `from`).
    pub fn soap(
        &self,
        from: &str,
        service: &str,
        action: &str,
        args: &[(&str, &str)],
    ) -> (u16, String) {
        let ns = self.c.clone();
        let from: Ipv4Addr = from.parse().unwrap();
        let (path, urn) = service_urls(service);
        let body = soap_body(action, &urn, args);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
SOAPAction: \"{urn}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        in_netns(&ns, move || {
            let s = socket2_bound(from);
            let mut s = s;
            s.write_all(req.as_bytes()).unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            let text = String::from_utf8_lossy(&out).into_owned();
            let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            (code, text)
        })
    }

    /// A TCP connection from the WAN host to the external address reaches
    /// a listener on the LAN host at `lan_port` through `ext_port`.
    pub fn tcp_through(&self, ext_port: u16, lan_port: u16) -> bool {
        self.tcp_from(&self.w.clone(), WAN_IP, ext_port, lan_port)
    }

    /// Same, from the namespace `src` to `dst:ext_port`.
    pub fn tcp_from(&self, src: &str, dst: &str, ext_port: u16, lan_port: u16) -> bool {
        self.tcp_from_source(src, "0.0.0.0", dst, ext_port, lan_port)
    }

    /// Same, from source address `src_ip` in namespace `src`.
    pub fn tcp_from_source(
        &self,
        src: &str,
        src_ip: &str,
        dst: &str,
        ext_port: u16,
        lan_port: u16,
    ) -> bool {
        let (tx, rx) = mpsc::channel();
        let c = self.c.clone();
        let listener = in_netns(&c, move || {
            bind_retry(|| TcpListener::bind(("0.0.0.0", lan_port)))
        });
        listener.set_nonblocking(true).unwrap();
        let dst: Ipv4Addr = dst.parse().unwrap();
        let from: Ipv4Addr = src_ip.parse().unwrap();
        let src = src.to_string();
        std::thread::spawn(move || {
            let ok = in_netns(&src, move || {
                use socket2::{Domain, Socket, Type};
                let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
                s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
                match s.connect_timeout(
                    &SocketAddr::from((dst, ext_port)).into(),
                    Duration::from_secs(2),
                ) {
                    Ok(()) => {
                        let mut t: TcpStream = s.into();
                        t.write_all(b"through-dnat").is_ok()
                    }
                    Err(_) => false,
                }
            });
            let _ = tx.send(ok);
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok((mut s, _)) = listener.accept() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 12];
                let got = s.read_exact(&mut buf).is_ok() && &buf == b"through-dnat";
                let _ = rx.recv_timeout(Duration::from_secs(3));
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = rx.recv_timeout(Duration::from_secs(3));
        false
    }

    /// AddPinhole over IPv6 from `from` for its own TCP port `port`, any
    /// remote host, `lease` seconds: the status code and the answer.
    pub fn add_pinhole6(&self, from: &str, port: &str, lease: &str) -> (u16, String) {
        self.soap6(
            from,
            "WANIPv6FirewallControl",
            "AddPinhole",
            &[
                ("RemoteHost", ""),
                ("RemotePort", "0"),
                ("InternalClient", from),
                ("InternalPort", port),
                ("Protocol", "6"),
                ("LeaseTime", lease),
            ],
        )
    }

    /// An `/etc/config/upnpd` with both lease files in the bed's directory,
    /// `extra` options in the `config` section, and the shipped rules
    /// (high ports allowed, everything else denied).
    pub fn upnpd_with_leases(&self, extra: &str) -> String {
        format!(
            "config upnpd 'config'\n\toption upnp_lease_file '{}'\n\toption upnp_lease_file6 '{}'\n{extra}\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n\n\
config perm_rule\n\toption action deny\n\toption ext_ports 0-65535\n\toption int_addr 0.0.0.0/0\n\toption int_ports 0-65535\n",
            self.dir.join("leases").display(),
            self.dir.join("leases6").display()
        )
    }

    /// A SOAP call over IPv6 from the LAN host (source address `from`) to
    /// the router's LAN IPv6 address.
    pub fn soap6(
        &self,
        from: &str,
        service: &str,
        action: &str,
        args: &[(&str, &str)],
    ) -> (u16, String) {
        let ns = self.c.clone();
        let from: std::net::Ipv6Addr = from.parse().unwrap();
        let (path, urn) = service_urls(service);
        let body = soap_body(action, &urn, args);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: [{LAN6}]:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
SOAPAction: \"{urn}#{action}\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        in_netns(&ns, move || {
            use socket2::{Domain, Socket, Type};
            let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
            s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
            let to: SocketAddr = format!("[{LAN6}]:5000").parse().unwrap();
            s.connect_timeout(&to.into(), Duration::from_secs(2))
                .unwrap();
            let mut t: TcpStream = s.into();
            t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            t.write_all(req.as_bytes()).unwrap();
            let mut out = Vec::new();
            t.read_to_end(&mut out).unwrap();
            let text = String::from_utf8_lossy(&out).into_owned();
            let code = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
            (code, text)
        })
    }

    /// A TCP connection from the WAN host (IPv6, source `src`) to
    /// `[dst]:port` on the LAN host: no translation, only a pinhole lets
    /// it through.
    pub fn tcp6_through(&self, src: &str, dst: &str, port: u16) -> bool {
        let c = self.c.clone();
        let dst: std::net::Ipv6Addr = dst.parse().unwrap();
        let src: std::net::Ipv6Addr = src.parse().unwrap();
        let listener = in_netns(&c, move || bind_retry(|| TcpListener::bind((dst, port))));
        listener.set_nonblocking(true).unwrap();
        let w = self.w.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let ok = in_netns(&w, move || {
                use socket2::{Domain, Socket, Type};
                let s = Socket::new(Domain::IPV6, Type::STREAM, None).unwrap();
                if s.bind(&SocketAddr::from((src, 0)).into()).is_err() {
                    return false;
                }
                match s.connect_timeout(
                    &SocketAddr::from((dst, port)).into(),
                    Duration::from_secs(2),
                ) {
                    Ok(()) => {
                        let mut t: TcpStream = s.into();
                        t.write_all(b"through-pinhole").is_ok()
                    }
                    Err(_) => false,
                }
            });
            let _ = tx.send(ok);
        });
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok((mut s, _)) = listener.accept() {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut buf = [0u8; 15];
                let got = s.read_exact(&mut buf).is_ok() && &buf == b"through-pinhole";
                let _ = rx.recv_timeout(Duration::from_secs(3));
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = rx.recv_timeout(Duration::from_secs(3));
        false
    }

    /// A UDP datagram from the WAN host reaches the LAN host.
    pub fn udp_through(&self, ext_port: u16, lan_port: u16) -> bool {
        let c = self.c.clone();
        let w = self.w.clone();
        let rx = in_netns(&c, move || {
            bind_retry(|| UdpSocket::bind(("0.0.0.0", lan_port)))
        });
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let tx = in_netns(&w, || UdpSocket::bind("0.0.0.0:0").unwrap());
        for _ in 0..5 {
            let _ = tx.send_to(b"udp-through-dnat", (WAN_IP, ext_port));
            let mut buf = [0u8; 64];
            if let Ok((n, _)) = rx.recv_from(&mut buf) {
                if &buf[..n] == b"udp-through-dnat" {
                    return true;
                }
            }
        }
        false
    }

    /// Counts the DNAT elements installed in the kernel.
    pub fn dnat_elements(&self) -> Vec<String> {
        let mut out = Vec::new();
        for map in ["upnp_dnat", "upnp_dnat_rh"] {
            let text = self.nft(&format!("list map inet fw4 {map}"));
            if let Some(start) = text.find("elements = {") {
                let body = &text[start + 12..];
                let body = body.split('}').next().unwrap_or("");
                for e in body.split(',') {
                    let key = e
                        .split(" counter")
                        .next()
                        .unwrap_or("")
                        .split(':')
                        .next()
                        .unwrap_or("");
                    let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !key.is_empty() {
                        out.push(key);
                    }
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Bed {
    /// Stops the daemons and removes the namespaces; then fails a test
    /// that passed so far if a daemon panicked during it.
    fn drop(&mut self) {
        let started = self.daemons.len();
        for mut c in self.daemons.drain(..) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.teardown_netns();
        let log = self.logs(started);
        if std::thread::panicking() {
            // a second panic would abort the test process; say it instead
            if log.contains(PANIC_MARK) {
                eprintln!("the daemon panicked too ({}):\n{log}", self.r);
            }
        } else {
            assert_no_panic(&self.r, &log);
        }
    }
}

fn wait_child(c: &mut Child, max: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Runs `f` on a fresh thread that has entered network namespace `ns`.
/// Sockets created there stay in that namespace wherever they are used.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = Path::new("/run/netns").join(ns);
    std::thread::spawn(move || {
        let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {}", path.display());
        f()
    })
    .join()
    .expect("namespace thread panicked")
}

fn socket2_bound(from: Ipv4Addr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    s.connect_timeout(
        &format!("{LAN_IP}:5000")
            .parse::<SocketAddr>()
            .unwrap()
            .into(),
        Duration::from_secs(2),
    )
    .unwrap();
    let t: TcpStream = s.into();
    t.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    t
}

/// (control path, service type) of a service by short name.
pub fn service_urls(service: &str) -> (&'static str, String) {
    match service {
        "WANIPConnection:1" => (
            "/ctl/IPConn",
            "urn:schemas-upnp-org:service:WANIPConnection:1".into(),
        ),
        "WANCommonInterfaceConfig" => (
            "/ctl/CmnIfCfg",
            "urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1".into(),
        ),
        "Layer3Forwarding" => (
            "/ctl/L3F",
            "urn:schemas-upnp-org:service:Layer3Forwarding:1".into(),
        ),
        "WANIPv6FirewallControl" => (
            "/ctl/IP6FCtl",
            "urn:schemas-upnp-org:service:WANIPv6FirewallControl:1".into(),
        ),
        _ => (
            "/ctl/IPConn",
            "urn:schemas-upnp-org:service:WANIPConnection:2".into(),
        ),
    }
}

pub fn soap_body(action: &str, urn: &str, args: &[(&str, &str)]) -> String {
    let mut b = format!(
        "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body><u:{action} xmlns:u=\"{urn}\">"
    );
    for (k, v) in args {
        b.push_str(&format!("<{k}>{v}</{k}>"));
    }
    b.push_str(&format!("</u:{action}></s:Body></s:Envelope>\r\n"));
    b
}

/// The UPnP error code in a SOAP fault, if any.
pub fn fault_code(text: &str) -> Option<u16> {
    let s = text.split("<errorCode>").nth(1)?;
    s.split('<').next()?.parse().ok()
}

/// The text of element `name` in a response.
pub fn element<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let s = text.split(&open).nth(1)?;
    s.split(&format!("</{name}>")).next()
}

/// AddPortMapping arguments.
pub fn add_args<'a>(
    eport: &'a str,
    proto: &'a str,
    iport: &'a str,
    client: &'a str,
    lease: &'a str,
    desc: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("NewRemoteHost", ""),
        ("NewExternalPort", eport),
        ("NewProtocol", proto),
        ("NewInternalPort", iport),
        ("NewInternalClient", client),
        ("NewEnabled", "1"),
        ("NewPortMappingDescription", desc),
        ("NewLeaseDuration", lease),
    ]
}

/// A persistent HTTP/1.1 connection for many SOAP calls (the 1000-mapping
/// tests), from the LAN host.
pub struct KeepAlive {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl KeepAlive {
    pub fn open(bed: &Bed) -> KeepAlive {
        let ns = bed.c.clone();
        let s = in_netns(&ns, || socket2_bound(CLIENT_IP.parse().unwrap()));
        KeepAlive {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    pub fn call(&mut self, action: &str, args: &[(&str, &str)]) -> (u16, String) {
        self.try_call(action, args)
            .expect("SOAP call over the keep-alive connection")
    }

    /// Like `call`, but `None` if the connection fails (the daemon died).
    pub fn try_call(&mut self, action: &str, args: &[(&str, &str)]) -> Option<(u16, String)> {
        let (path, urn) = service_urls("WANIPConnection:2");
        let body = soap_body(action, &urn, args);
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nContent-Type: text/xml; charset=\"utf-8\"\r\n\
SOAPAction: \"{urn}#{action}\"\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.w.write_all(req.as_bytes()).ok()?;
        let mut status = String::new();
        if self.r.read_line(&mut status).ok()? == 0 {
            return None;
        }
        let code = status.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
        let mut len = 0;
        loop {
            let mut line = String::new();
            if self.r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().ok()?;
            }
        }
        let mut body = vec![0u8; len];
        self.r.read_exact(&mut body).ok()?;
        Some((code, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// A GET of the description from namespace `ns`, its answer given
/// `max` to arrive: the whole answer, as far as it came ("" for none).
pub fn description_within(ns: &str, max: Duration) -> String {
    in_netns(ns, move || {
        let mut s = TcpStream::connect((LAN_IP, 5000)).unwrap();
        s.set_read_timeout(Some(max)).unwrap();
        let req = format!(
            "GET /rootDesc.xml HTTP/1.1\r\nHost: {LAN_IP}:5000\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// A UDP socket created in namespace `ns`, bound to `addr:0`.
pub fn udp_in(ns: &str, addr: &str) -> UdpSocket {
    let a: Ipv4Addr = addr.parse().unwrap();
    in_netns(ns, move || UdpSocket::bind((a, 0)).unwrap())
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines()
                .find(|l| l.starts_with("State:"))
                .is_some_and(|l| !l.contains("Z (zombie)") && !l.contains("X (dead)"))
        })
        .unwrap_or(false)
}

/// The resident set size of `pid` in KiB (`VmRSS` of /proc/<pid>/status).
pub fn vm_rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Binds with `bind`, retrying for up to 2 s while the port is in use. A
/// socket this process just closed can stay open for a moment in a child
/// that another test thread is forking (its fd table is copied until the
/// child execs and drops the close-on-exec descriptors), so an immediate
/// rebind of the same port may fail transiently.
pub fn bind_retry<T>(bind: impl Fn() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match bind() {
            Ok(s) => return s,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("bind: {e}"),
        }
    }
}

impl Bed {
    /// Adds `cidr` to device `dev` in namespace `ns` (e.g. a second WAN
    /// peer address).
    pub fn add_addr(&self, ns: &str, cidr: &str, dev: &str) {
        let o = self.exec(ns, &["ip", "addr", "add", cidr, "dev", dev]);
        assert!(
            o.status.success(),
            "adding {cidr}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // let DAD-free IPv4 settle and the neighbour answer
        std::thread::sleep(Duration::from_millis(50));
    }

    /// [`Bed::tcp_through`] with a bind that survives a concurrent fork
    /// ([`bind_retry`]): a connection from the WAN host to the external
    /// address reaches a listener on the LAN host at `lan_port`.
    pub fn tcp_passes(&self, ext_port: u16, lan_port: u16) -> bool {
        self.tcp_from_source(&self.w, PEER_IP, WAN_IP, ext_port, lan_port)
    }

    /// [`Bed::udp_through`] with a bind that survives a concurrent fork
    /// ([`bind_retry`]): a datagram from the WAN host reaches the LAN host.
    pub fn udp_passes(&self, ext_port: u16, lan_port: u16) -> bool {
        let rx = in_netns(&self.c, move || {
            bind_retry(|| UdpSocket::bind(("0.0.0.0", lan_port)))
        });
        rx.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let tx = in_netns(&self.w, || UdpSocket::bind((PEER_IP, 0)).unwrap());
        for _ in 0..5 {
            let _ = tx.send_to(b"udp-through-dnat", (WAN_IP, ext_port));
            let mut buf = [0u8; 64];
            if let Ok((n, _)) = rx.recv_from(&mut buf) {
                if &buf[..n] == b"udp-through-dnat" {
                    return true;
                }
            }
        }
        false
    }

    /// Waits up to `max` until the daemon log contains `needle`.
    pub fn wait_log(&self, needle: &str, max: Duration) -> bool {
        let deadline = Instant::now() + max;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// One socket a process holds, as its network namespace's
/// `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSocket {
    pub tcp: bool,
    pub local: SocketAddr,
    /// The kernel's state number: 0x0A is a TCP listener, 0x07 an
    /// unconnected UDP socket.
    pub state: u8,
    /// Tells a socket from another one opened on the same address.
    pub inode: u64,
}

impl ProcSocket {
    pub fn tcp_listener(&self) -> bool {
        self.tcp && self.state == 0x0A
    }
}

/// The sockets process `pid` holds open (its descriptors that are
/// sockets), with their local addresses. Netlink and unix sockets are not
/// in those tables and are left out.
pub fn sockets_of(pid: u32) -> Vec<ProcSocket> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            let Ok(link) = std::fs::read_link(e.path()) else {
                continue;
            };
            let inode = link
                .to_str()
                .and_then(|l| l.strip_prefix("socket:["))
                .and_then(|l| l.strip_suffix(']'))
                .and_then(|l| l.parse::<u64>().ok());
            inodes.extend(inode);
        }
    }
    // The kernel prints each address word as a host-order u32.
    let addr = |hex: &str| -> Option<std::net::IpAddr> {
        let words: Option<Vec<[u8; 4]>> = (0..hex.len() / 8)
            .map(|i| {
                u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16)
                    .ok()
                    .map(u32::to_ne_bytes)
            })
            .collect();
        let bytes: Vec<u8> = words?.concat();
        match bytes.len() {
            4 => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).into()),
            16 => Some(std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?).into()),
            _ => None,
        }
    };
    let mut out = Vec::new();
    for (tcp, table) in [
        (true, "tcp"),
        (true, "tcp6"),
        (false, "udp"),
        (false, "udp6"),
    ] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let Some(inode) = inode.parse::<u64>().ok().filter(|i| inodes.contains(i)) else {
                continue;
            };
            let Some((a, p)) = local.split_once(':') else {
                continue;
            };
            let (Some(ip), Ok(port), Ok(state)) = (
                addr(a),
                u16::from_str_radix(p, 16),
                u8::from_str_radix(state, 16),
            ) else {
                continue;
            };
            out.push(ProcSocket {
                tcp,
                local: SocketAddr::new(ip, port),
                state,
                inode,
            });
        }
    }
    out
}

/// Accepts one GENA event message on `l` (a subscriber's callback),
/// answers 200 and returns it; `None` if none came within `within`.
pub fn receive_event(l: &TcpListener, within: Duration) -> Option<String> {
    l.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Ok((mut s, _)) = l.accept() {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if text.contains("</e:propertyset>") {
                    break;
                }
            }
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            return Some(String::from_utf8_lossy(&buf).into_owned());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}
