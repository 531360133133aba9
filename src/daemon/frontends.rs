//! The front ends of each LAN: the HTTP listeners, the SSDP sockets and
//! the NAT-PMP/PCP sockets, over IPv4 and (unless `ipv6_disable`) over
//! IPv6 on the LAN's global and unique-local addresses; the tasks that
//! read them, and carrying what arrives to the core and what the core
//! says back out.
//!
//! Owns: [`FrontEnds`], the sockets by LAN index (the index of
//! `core::lan::Lans`), and the tasks. What a request means and what to
//! answer is decided in `core::web`, `core::ssdp` and `core::natpmp_pcp`.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::rc::Rc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::lan::Lans;
use crate::core::natpmp_pcp::{self, Server};
use crate::core::ssdp;
use crate::core::table::Millis;
use crate::core::web::{Client, Inbound, Site};
use crate::proto::http;
use crate::proto::pcp;
use crate::proto::ssdp::Group;
use crate::sys::facts::Kernel;
use crate::sys::http::{self as shttp, Job};
use crate::sys::udp::{self, Datagram, Kind};
use crate::sys::{netif, notify};

use super::commit::Deferred;
use super::{Daemon, unix_now};

/// The UDP sockets of one LAN.
#[derive(Default)]
struct LanSockets {
    ssdp: Option<Rc<UdpSocket>>,
    natpmp_pcp: Option<Rc<UdpSocket>>,
    /// The LAN device's interface index (IPv6 multicast goes out there).
    ifindex: u32,
    ssdp6: Option<Rc<UdpSocket>>,
    /// One per global or unique-local address of the LAN.
    pcp6: Vec<Rc<UdpSocket>>,
}

/// One HTTP listener's task: the device and the address it is bound to.
struct HttpListener {
    dev: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

/// Every front end's sockets and tasks, and the channels into the loop.
pub(super) struct FrontEnds {
    /// By LAN index.
    sockets: Vec<LanSockets>,
    /// The tasks reading the UDP sockets.
    readers: Vec<JoinHandle<()>>,
    /// An aborted task is dropped, and its socket closed, only when the
    /// runtime next runs: a listener still wanted after a reopen is kept,
    /// or its port would still be taken by itself.
    http: Vec<HttpListener>,
    http_tx: mpsc::Sender<Job>,
    udp_tx: mpsc::Sender<Datagram>,
    /// The HTTP connection caps, across every listener.
    http_gate: Rc<shttp::Gate>,
    server: Rc<str>,
}

impl FrontEnds {
    pub fn new(
        http_tx: mpsc::Sender<Job>,
        udp_tx: mpsc::Sender<Datagram>,
        server: Rc<str>,
    ) -> FrontEnds {
        FrontEnds {
            sockets: Vec::new(),
            readers: Vec::new(),
            http: Vec::new(),
            http_tx,
            udp_tx,
            http_gate: Rc::new(shttp::Gate::default()),
            server,
        }
    }

    /// Stops the HTTP servers and the UDP readers, and forgets the
    /// sockets.
    pub fn close(&mut self) {
        self.close_udp();
        for l in self.http.drain(..) {
            l.task.abort();
        }
    }

    fn close_udp(&mut self) {
        for t in self.readers.drain(..) {
            t.abort();
        }
        self.sockets.clear();
    }

    fn read(&mut self, s: &Rc<UdpSocket>, kind: Kind, lan: usize) {
        let t = udp::spawn_reader(s.clone(), kind, lan, self.udp_tx.clone());
        self.readers.push(t);
    }

    /// An HTTP listener on `ip:port` bound to `dev` (port 0: any), the
    /// one of `old` that already is, or a new one. Returns its port.
    fn http_listener(
        &mut self,
        old: &mut Vec<HttpListener>,
        dev: &str,
        ip: IpAddr,
        port: u16,
    ) -> Option<u16> {
        let same = |l: &HttpListener| {
            l.dev == dev && l.addr.ip() == ip && (port == 0 || l.addr.port() == port)
        };
        if let Some(i) = old.iter().position(same) {
            let kept = old.swap_remove(i);
            let port = kept.addr.port();
            self.http.push(kept);
            return Some(port);
        }
        let shown = SocketAddr::new(ip, port);
        let l = match shttp::listener(dev, ip, port) {
            Ok(l) => l,
            Err(e) => {
                log::error!("HTTP on {shown}: {e}");
                return None;
            }
        };
        let addr = l.local_addr().unwrap_or(shown);
        log::info!("HTTP listening on {addr} ({dev})");
        let task = tokio::task::spawn_local(shttp::serve(
            l,
            self.http_tx.clone(),
            shttp::Limits::default(),
            self.http_gate.clone(),
            self.server.clone(),
        ));
        self.http.push(HttpListener {
            dev: dev.to_string(),
            addr,
            task,
        });
        Some(addr.port())
    }

    /// Opens the HTTP listeners and UDP sockets of every LAN, and records
    /// the HTTP port each got. IPv6 front ends are opened only on a LAN
    /// with a global or unique-local address, never with `ipv6_disable`.
    pub fn open(&mut self, cfg: &Config, lans: &mut Lans) {
        self.close_udp();
        let mut old = std::mem::take(&mut self.http);
        self.open_lans(cfg, lans, &mut old);
        for l in old {
            l.task.abort();
        }
    }

    fn open_lans(&mut self, cfg: &Config, lans: &mut Lans, old: &mut Vec<HttpListener>) {
        if !cfg.enabled {
            return;
        }
        for i in 0.. {
            let Some(lan) = lans.get_mut(i) else {
                break;
            };
            let mut socks = LanSockets::default();
            let v6 = !cfg.ipv6_disable && !lan.nets6.is_empty();
            if v6 {
                match netif::ifindex(&lan.dev) {
                    Some(ix) => socks.ifindex = ix,
                    None => log::warn!("LAN device {}: no interface index for IPv6", lan.dev),
                }
            }
            let v6 = v6 && socks.ifindex != 0;
            if cfg.enable_upnp {
                // Bound to the LAN device too: a WAN host routing to the
                // LAN address gets no answer at all.
                let dev = lan.dev.clone();
                if let Some(p) = self.http_listener(old, &dev, IpAddr::V4(lan.addr), cfg.port) {
                    lan.http_port = p;
                }
                // The IPv6 listeners take the IPv4 one's port (the one the
                // kernel picked for port 0): LOCATION names one port.
                for (a6, _) in lan.nets6.iter().filter(|_| v6) {
                    self.http_listener(old, &dev, IpAddr::V6(*a6), lan.http_port);
                }
                match udp::ssdp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        self.read(&s, Kind::Ssdp, i);
                        socks.ssdp = Some(s);
                    }
                    Err(e) => log::error!("SSDP on {}: {e}", lan.dev),
                }
                if v6 {
                    match udp::ssdp_socket6(&lan.dev, socks.ifindex) {
                        Ok(s) => {
                            let s = Rc::new(s);
                            self.read(&s, Kind::Ssdp, i);
                            log::info!("SSDP listening on [ff02::c] and [ff05::c] ({})", lan.dev);
                            socks.ssdp6 = Some(s);
                        }
                        Err(e) => log::error!("SSDP over IPv6 on {}: {e}", lan.dev),
                    }
                }
            }
            if cfg.enable_natpmp || cfg.enable_pcp {
                match udp::natpmp_pcp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        self.read(&s, Kind::NatPmpPcp, i);
                        log::info!(
                            "NAT-PMP/PCP listening on {}:{}",
                            lan.addr,
                            udp::NATPMP_PCP_PORT
                        );
                        socks.natpmp_pcp = Some(s);
                    }
                    Err(e) => log::error!("NAT-PMP/PCP on {}: {e}", lan.addr),
                }
            }
            // NAT-PMP is IPv4 only (RFC 6886): over IPv6 PCP alone
            for (a6, _) in lan.nets6.iter().filter(|_| v6 && cfg.enable_pcp) {
                match udp::pcp_socket6(&lan.dev, *a6, socks.ifindex) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        self.read(&s, Kind::NatPmpPcp, i);
                        log::info!("PCP listening on [{a6}]:{}", udp::NATPMP_PCP_PORT);
                        socks.pcp6.push(s);
                    }
                    Err(e) => log::error!("PCP on [{a6}]: {e}"),
                }
            }
            self.sockets.push(socks);
        }
    }

    /// LAN `lan`'s SSDP socket of `to`'s family.
    fn ssdp(&self, lan: usize, to: &SocketAddr) -> Option<&Rc<UdpSocket>> {
        let s = self.sockets.get(lan)?;
        if to.is_ipv6() {
            s.ssdp6.as_ref()
        } else {
            s.ssdp.as_ref()
        }
    }
}

impl Daemon {
    pub(super) fn open_frontends(&mut self) {
        self.fronts.open(&self.cfg, &mut self.lans);
    }

    /// One HTTP request: answered by the core, the answer held until the
    /// turn's firewall transaction.
    pub(super) fn on_http(&mut self, job: Job) {
        let now = self.now();
        let facts = Kernel::new(&self.wan, &mut self.nft);
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        let q = Inbound {
            client: Client {
                peer: job.peer,
                local: job.local,
            },
            head: &job.req,
            body: &job.body,
            now,
            facts: &facts,
        };
        let reply = self.web.handle(&mut self.core, site, &q);
        if let Some(note) = &reply.note {
            log::debug!("{note}");
        }
        self.deferred.push(Deferred::Http {
            tx: job.reply,
            reply,
        });
    }

    /// One datagram from a LAN socket.
    pub(super) fn on_datagram(&mut self, dg: Datagram) {
        let now = self.now();
        match dg.kind {
            Kind::Ssdp => {
                self.ssdp
                    .on_datagram(&self.device, &self.lans, dg.lan, dg.src, &dg.data, now);
            }
            Kind::NatPmpPcp => {
                let facts = Kernel::new(&self.wan, &mut self.nft);
                // one epoch per address family: an IPv6 prefix and the
                // external IPv4 address change apart
                let epoch = if dg.src.is_ipv6() {
                    &self.epoch6
                } else {
                    &self.epoch
                };
                let server = Server {
                    settings: &self.natpmp_pcp,
                    external: self.wan.external_ip(),
                    epoch: epoch.secs(now),
                    lans: &self.lans,
                    now,
                    facts: &facts,
                };
                let reply =
                    natpmp_pcp::on_datagram(&mut self.core, &server, dg.lan, dg.src, &dg.data);
                if let Some(reply) = reply {
                    self.deferred.push(Deferred::Udp {
                        sock: dg.sock,
                        to: dg.src,
                        reply,
                    });
                }
            }
        }
    }

    /// Multicasts the whole announcement set on every LAN, to each group
    /// it has a socket for.
    pub(super) fn announce(&mut self, alive: bool) {
        if !self.ssdp.enabled() {
            return;
        }
        for (i, socks) in self.fronts.sockets.iter().enumerate() {
            let v4 = socks.ssdp.as_ref().map(|s| (s, Group::V4));
            let v6 = socks
                .ssdp6
                .as_ref()
                .into_iter()
                .flat_map(|s| Group::V6.map(|g| (s, g)));
            for (sock, group) in v4.into_iter().chain(v6) {
                let to = udp::to_group(group, socks.ifindex);
                for m in ssdp::announcements(&self.device, &self.lans, i, group, alive) {
                    let _ = sock.try_send_to(m.as_bytes(), to);
                }
            }
        }
    }

    pub(super) fn send_search_replies(&mut self, now: Millis) {
        let date = http::date(unix_now());
        for (lan, to, msg) in self.ssdp.due_replies(&self.device, &self.lans, now, &date) {
            if let Some(sock) = self.fronts.ssdp(lan, &to) {
                let _ = sock.try_send_to(msg.as_bytes(), to);
            }
        }
    }

    /// The NAT-PMP/PCP announcements due (RFC 6886 §3.2.1), over IPv4 to
    /// 224.0.0.1:5350 and over IPv6, each on its own epoch's schedule,
    /// to [ff02::1]:5350 (RFC 6887 §14.1) from every IPv6 PCP socket.
    pub(super) fn send_announcements(&mut self, now: Millis) {
        let external = self.wan.external_ip();
        if self.epoch.announcement_due(now) {
            let msgs =
                natpmp_pcp::announcements(&self.natpmp_pcp, self.epoch.secs(now), external, false);
            for sock in self
                .fronts
                .sockets
                .iter()
                .filter_map(|s| s.natpmp_pcp.as_ref())
            {
                for m in &msgs {
                    let _ = sock.try_send_to(m, SocketAddr::V4(udp::ALL_HOSTS));
                }
            }
        }
        if self.epoch6.announcement_due(now) {
            let msgs =
                natpmp_pcp::announcements(&self.natpmp_pcp, self.epoch6.secs(now), external, true);
            for socks in &self.fronts.sockets {
                let to = SocketAddrV6::new(udp::ALL_NODES, pcp::CLIENT_PORT, 0, socks.ifindex);
                for sock in &socks.pcp6 {
                    for m in &msgs {
                        let _ = sock.try_send_to(m, SocketAddr::V6(to));
                    }
                }
            }
        }
    }

    /// The GENA event messages due, each on its own task.
    pub(super) fn send_notifications(&mut self, now: Millis) {
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        for n in self.web.notifications(&self.core, site, now) {
            notify::spawn(n.to, n.sid, n.request, self.notify_tx.clone());
        }
    }
}
