//! The carrier-grade NAT bed: the namespaces of [`Bed`] with the WAN
//! host's namespace turned into the carrier's NAT, and one namespace more,
//! the public segment, with a real STUN server and a WAN host on it.
//!
//! ```text
//! c (LAN host) ── r (router) ── w (carrier NAT) ── p (public segment)
//!  192.168.77.2    100.64.0.2    100.64.0.1          203.0.113.2, .3  STUN server
//!                                203.0.113.1 public  203.0.113.10     WAN host
//! ```
//!
//! The carrier's NAT comes in the variants of [`Carrier`], the server in
//! those of [`Server`]. Everything lives in namespaces this bed creates;
//! the public segment is removed in `Drop` with the server, the rest by
//! the inner [`Bed`].

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Bed, in_netns, must, require, wait_child};
use rupnpd::proto::stun::{Class, Message};

/// The router's WAN address, in the shared address space of RFC 6598.
pub const CGN_WAN_IP: &str = "100.64.0.2";
/// The carrier NAT's inside address: the router's gateway.
pub const CARRIER_INSIDE_IP: &str = "100.64.0.1";
/// The carrier NAT's public address: what STUN should report.
pub const CARRIER_PUBLIC_IP: &str = "203.0.113.1";
/// A second public address for the carrier's pool.
pub const CARRIER_PUBLIC2_IP: &str = "203.0.113.5";
pub const STUN_IP: &str = "203.0.113.2";
/// The STUN server's alternate address (RFC 5780 §4.4's "other address").
pub const STUN_ALT_IP: &str = "203.0.113.3";
pub const STUN_PORT: u16 = 3478;
pub const STUN_ALT_PORT: u16 = 3479;
/// A host on the public segment.
pub const PUBLIC_HOST_IP: &str = "203.0.113.10";

/// What the carrier's NAT does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// Source NAT to the public address keeping ports (conntrack keeps a
    /// free source port), and every port of 1024–65535 forwarded back to
    /// the router: endpoint-independent mapping and filtering, as a
    /// carrier offering inbound ports (a "public IP" option) would have.
    EndpointIndependent,
    /// Like `EndpointIndependent`, but the forward only admits sources
    /// the router has sent to (a dynamic set filled on the way out):
    /// address-dependent filtering, a "restricted cone" NAT.
    AddressRestricted,
    /// No NAT: the carrier routes 100.64.0.0/24 as it is (the public
    /// segment has a route back), as a WAN with its own address is.
    Routed,
    /// Plain conntrack masquerading with random ports and no forward:
    /// only replies from where the router sent to get in
    /// (address-and-port-dependent filtering), ports not kept.
    Symmetric,
}

/// The STUN server on the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Debian's coturn (`turnserver`) on two addresses: RFC 5780.
    Coturn,
    /// Debian's stun-server (`stund -h IP1 -a IP2`): RFC 3489.
    Stund,
    /// No server, and the public segment drops (silently) what is sent
    /// to its ports, counting it.
    Silent,
}

pub struct CarrierBed {
    pub bed: Bed,
    /// The public segment's namespace.
    pub p: String,
    server: Option<Child>,
    /// The router's WAN address (the carrier's NAT translates it).
    router_wan: String,
}

impl CarrierBed {
    /// Builds the bed under prefix `name` (unique per test, ≤ 8 chars).
    pub fn new(name: &str, carrier: Carrier, server: Server) -> CarrierBed {
        require(&["ip", "nft"]);
        let bed = Bed::new(name);
        let p = format!("rupt-{}-{name}-p", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &p])
            .stderr(Stdio::null())
            .status();
        let mut cb = CarrierBed {
            bed,
            p,
            server: None,
            router_wan: CGN_WAN_IP.to_string(),
        };
        cb.wire(carrier);
        cb.start_server(server);
        cb
    }

    fn wire(&self, carrier: Carrier) {
        let (r, w, p) = (&self.bed.r, &self.bed.w, &self.p);
        let wan = self.bed.wan_dev.as_str();
        must(&["ip", "netns", "add", p]);
        must(&["ip", "-n", p, "link", "set", "lo", "up"]);
        // The router's WAN moves into 100.64.0.0/10; the old WAN host's
        // namespace becomes the carrier's NAT.
        must(&[
            "ip", "-n", r, "addr", "flush", "dev", wan, "scope", "global",
        ]);
        must(&[
            "ip", "-n", w, "addr", "flush", "dev", "w-eth0", "scope", "global",
        ]);
        let router_wan = format!("{CGN_WAN_IP}/24");
        let inside = format!("{CARRIER_INSIDE_IP}/24");
        must(&["ip", "-n", r, "addr", "add", &router_wan, "dev", wan]);
        must(&["ip", "-n", w, "addr", "add", &inside, "dev", "w-eth0"]);
        must(&[
            "ip",
            "-n",
            r,
            "route",
            "add",
            "default",
            "via",
            CARRIER_INSIDE_IP,
        ]);
        must(&[
            "ip", "link", "add", "w-pub", "netns", w, "type", "veth", "peer", "name", "p-eth0",
            "netns", p,
        ]);
        let public = [CARRIER_PUBLIC_IP, CARRIER_PUBLIC2_IP].map(|a| (w, "w-pub", a));
        let segment = [STUN_IP, STUN_ALT_IP, PUBLIC_HOST_IP].map(|a| (p, "p-eth0", a));
        for (ns, dev, a) in public.into_iter().chain(segment) {
            let cidr = format!("{a}/24");
            must(&["ip", "-n", ns, "addr", "add", &cidr, "dev", dev]);
        }
        must(&["ip", "-n", w, "link", "set", "w-pub", "up"]);
        must(&["ip", "-n", p, "link", "set", "p-eth0", "up"]);
        must(&[
            "ip",
            "netns",
            "exec",
            w,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        if carrier == Carrier::Routed {
            must(&[
                "ip",
                "-n",
                p,
                "route",
                "add",
                "100.64.0.0/24",
                "via",
                CARRIER_PUBLIC_IP,
            ]);
        }
        self.carrier_nat(carrier, CARRIER_PUBLIC_IP);
    }

    /// Loads (again) the carrier's NAT rules, translating to `public`.
    pub fn carrier_nat(&self, carrier: Carrier, public: &str) {
        let router = &self.router_wan;
        // The forward of the carrier's inbound ports to the router, `only`
        // matching before the ports; the source NAT to `public`.
        let forward = |only: &str| {
            format!(
                "chain prerouting {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname \"w-pub\" ip daddr {public} {only} meta l4proto {{ tcp, udp }} th dport 1024-65535 dnat to {router}
  }}"
            )
        };
        let snat = |how: &str| {
            format!(
                "chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname \"w-pub\" ip saddr {router} snat to {public}{how}
  }}"
            )
        };
        // Addresses the router sent to, for the restricted forward.
        let contacted = "set contacted {
    type ipv4_addr; flags dynamic, timeout; timeout 10m;
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname \"w-eth0\" oifname \"w-pub\" update @contacted { ip daddr }
  }";
        let chains = match carrier {
            Carrier::EndpointIndependent => [forward(""), snat("")].join("\n  "),
            Carrier::AddressRestricted => [
                contacted.to_string(),
                forward("ip saddr @contacted"),
                snat(""),
            ]
            .join("\n  "),
            Carrier::Routed => String::new(),
            Carrier::Symmetric => snat(" random"),
        };
        let rules = format!("table ip carrier {{\n  {chains}\n}}\n");
        let _ = self
            .bed
            .exec(&self.bed.w, &["nft", "delete", "table", "ip", "carrier"]);
        self.nft_in(&self.bed.w.clone(), &rules);
    }

    fn nft_in(&self, ns: &str, rules: &str) {
        let f = self.bed.dir.join(format!("{ns}.nft"));
        std::fs::write(&f, rules).unwrap();
        let o = self.bed.exec(ns, &["nft", "-f", f.to_str().unwrap()]);
        assert!(
            o.status.success(),
            "nft in {ns}: {}\n{rules}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    fn start_server(&mut self, server: Server) {
        let args: Vec<String> = match server {
            Server::Silent => {
                // Dropped without an ICMP error, as a server that is down
                // behind a firewall; the counter shows what arrived.
                let rules = format!(
                    "table ip silent {{
  chain input {{
    type filter hook input priority filter; policy accept;
    udp dport {{ {STUN_PORT}, {STUN_ALT_PORT} }} counter drop
  }}
}}"
                );
                self.nft_in(&self.p.clone(), &rules);
                return;
            }
            Server::Coturn => {
                require(&["turnserver"]);
                let pid = self.bed.dir.join("turnserver.pid");
                [
                    "turnserver",
                    "-n",
                    "--stun-only",
                    "--no-auth",
                    "--no-cli",
                    "--no-tls",
                    "--no-dtls",
                    "--listening-ip",
                    STUN_IP,
                    "--listening-ip",
                    STUN_ALT_IP,
                    "--listening-port",
                    "3478",
                    "--alt-listening-port",
                    "3479",
                    "--log-file",
                    "stdout",
                    "--pidfile",
                    pid.to_str().unwrap(),
                ]
                .map(String::from)
                .to_vec()
            }
            Server::Stund => {
                require(&["stund"]);
                ["stund", "-h", STUN_IP, "-a", STUN_ALT_IP]
                    .map(String::from)
                    .to_vec()
            }
        };
        let log = std::fs::File::create(self.bed.dir.join("stun-server.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.p])
            .args(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the STUN server");
        self.server = Some(child);
        self.wait_server();
    }

    /// Waits until the server answers a Binding request on the public
    /// segment itself.
    fn wait_server(&self) {
        let s = in_netns(&self.p, || {
            UdpSocket::bind((PUBLIC_HOST_IP.parse::<Ipv4Addr>().unwrap(), 0)).unwrap()
        });
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let req = Message::binding_request([7; 12], None).emit();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let _ = s.send_to(&req, self.stun_server());
            let mut buf = [0u8; 1500];
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                if Message::parse(&buf[..n]).is_ok_and(|m| m.class == Some(Class::Success)) {
                    return;
                }
            }
        }
        panic!(
            "the STUN server does not answer; its log:\n{}",
            std::fs::read_to_string(self.bed.dir.join("stun-server.log")).unwrap_or_default()
        );
    }

    /// The server's primary address.
    pub fn stun_server(&self) -> SocketAddrV4 {
        SocketAddrV4::new(STUN_IP.parse().unwrap(), STUN_PORT)
    }

    /// The carrier gives the router a new WAN address (a new session, as
    /// after a PPP reconnect), its NAT still translating to `public`. The
    /// carrier's NAT knows the new address first, as a carrier's does
    /// before it hands it out.
    pub fn renumber_router(&mut self, carrier: Carrier, public: &str, new: &str) {
        let old = std::mem::replace(&mut self.router_wan, new.to_string());
        self.carrier_nat(carrier, public);
        self.bed.renumber_wan(&old, new);
        let o = self.bed.exec(
            &self.bed.r,
            &[
                "ip",
                "route",
                "replace",
                "default",
                "via",
                CARRIER_INSIDE_IP,
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    /// A TCP connection from the WAN host on the public segment to the
    /// carrier's public address reaches a listener on the LAN host at
    /// `lan_port` through `ext_port` (both NATs, the carrier's forward and
    /// the router's mapping).
    pub fn tcp_from_public(&self, ext_port: u16, lan_port: u16) -> bool {
        self.tcp_from_public_to(CARRIER_PUBLIC_IP, ext_port, lan_port)
    }

    /// The same to `public`, one of the carrier's public addresses.
    pub fn tcp_from_public_to(&self, public: &str, ext_port: u16, lan_port: u16) -> bool {
        self.bed
            .tcp_from_source(&self.p, PUBLIC_HOST_IP, public, ext_port, lan_port)
    }

    /// Counts the datagrams the router sends to the STUN server's ports
    /// (both addresses), on the carrier's way out; see
    /// [`CarrierBed::stun_datagrams`].
    pub fn count_stun(&self) {
        let rules = format!(
            "table ip stuncount {{
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname \"w-eth0\" udp dport {{ {STUN_PORT}, {STUN_ALT_PORT} }} counter
  }}
}}"
        );
        self.nft_in(&self.bed.w.clone(), &rules);
    }

    /// Datagrams counted since [`CarrierBed::count_stun`].
    pub fn stun_datagrams(&self) -> u64 {
        let o = self
            .bed
            .exec(&self.bed.w, &["nft", "list", "table", "ip", "stuncount"]);
        counter_packets(&String::from_utf8_lossy(&o.stdout))
    }

    /// Shortens how long the carrier's NAT remembers a UDP flow, so that
    /// a flow started after a change of its rules gets them (a carrier
    /// moving its pool drops its sessions).
    pub fn short_udp_sessions(&self) {
        for key in [
            "net.netfilter.nf_conntrack_udp_timeout=1",
            "net.netfilter.nf_conntrack_udp_timeout_stream=1",
        ] {
            let o = self.bed.exec(&self.bed.w, &["sysctl", "-qw", key]);
            assert!(
                o.status.success(),
                "{key}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Datagrams the silent server's segment dropped.
    pub fn silent_drops(&self) -> u64 {
        let o = self
            .bed
            .exec(&self.p, &["nft", "list", "table", "ip", "silent"]);
        counter_packets(&String::from_utf8_lossy(&o.stdout))
    }
}

/// The packets of the first counter in an `nft list` output.
fn counter_packets(text: &str) -> u64 {
    text.split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in:\n{text}"))
}

impl Drop for CarrierBed {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            if wait_child(&mut c, Duration::from_secs(5)).is_none() {
                let _ = c.wait();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.p])
            .stderr(Stdio::null())
            .status();
    }
}
