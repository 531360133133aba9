//! The front ends of each LAN: the HTTP listeners (IPv4 and IPv6), the
//! SSDP socket and the NAT-PMP/PCP socket, the tasks that read them, and
//! carrying what arrives to the core and what the core says back out.
//!
//! Owns: [`FrontEnds`], the sockets by LAN index (the index of
//! `core::lan::Lans`), and the tasks. What a request means and what to
//! answer is decided in `core::web`, `core::ssdp` and `core::natpmp_pcp`.

use std::net::{IpAddr, SocketAddr};
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
use crate::sys::facts::Kernel;
use crate::sys::http::{self as shttp, Job};
use crate::sys::notify;
use crate::sys::udp::{self, Datagram, Kind};

use super::commit::Deferred;
use super::{Daemon, unix_now};

/// The UDP sockets of one LAN.
#[derive(Default)]
struct LanSockets {
    ssdp: Option<Rc<UdpSocket>>,
    natpmp_pcp: Option<Rc<UdpSocket>>,
}

/// Every front end's sockets and tasks, and the channels into the loop.
pub(super) struct FrontEnds {
    /// By LAN index.
    sockets: Vec<LanSockets>,
    tasks: Vec<JoinHandle<()>>,
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
            tasks: Vec::new(),
            http_tx,
            udp_tx,
            http_gate: Rc::new(shttp::Gate::default()),
            server,
        }
    }

    /// Stops the HTTP servers and forgets the sockets.
    pub fn close(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.sockets.clear();
    }

    fn serve_http(&mut self, l: tokio::net::TcpListener) {
        self.tasks.push(tokio::task::spawn_local(shttp::serve(
            l,
            self.http_tx.clone(),
            shttp::Limits::default(),
            self.http_gate.clone(),
            self.server.clone(),
        )));
    }

    /// Opens the HTTP listeners and UDP sockets of every LAN, and records
    /// the HTTP port each got.
    pub fn open(&mut self, cfg: &Config, lans: &mut Lans) {
        self.close();
        if !cfg.enabled {
            return;
        }
        for i in 0.. {
            let Some(lan) = lans.get_mut(i) else {
                break;
            };
            let mut socks = LanSockets::default();
            if cfg.enable_upnp {
                for (a6, _) in lan.nets6.clone() {
                    // The IPv4 listener's port once known (port 0 picks
                    // one), else the configured one.
                    let port = if cfg.port == 0 {
                        lan.http_port
                    } else {
                        cfg.port
                    };
                    match shttp::listener(&lan.dev, IpAddr::V6(a6), port) {
                        Ok(l) => {
                            log::info!("HTTP listening on [{a6}]:{} ({})", cfg.port, lan.dev);
                            self.serve_http(l);
                        }
                        Err(e) => log::warn!("HTTP on [{a6}]:{}: {e}", cfg.port),
                    }
                }
                // Bound to the LAN device too: a WAN host routing to the
                // LAN address gets no answer at all.
                match shttp::listener(&lan.dev, IpAddr::V4(lan.addr), cfg.port) {
                    Ok(l) => {
                        lan.http_port = l.local_addr().map(|a| a.port()).unwrap_or(cfg.port);
                        log::info!(
                            "HTTP listening on {}:{} ({})",
                            lan.addr,
                            lan.http_port,
                            lan.dev
                        );
                        self.serve_http(l);
                    }
                    Err(e) => log::error!("HTTP on {}:{}: {e}", lan.addr, cfg.port),
                }
                match udp::ssdp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        udp::spawn_reader(s.clone(), Kind::Ssdp, i, self.udp_tx.clone());
                        socks.ssdp = Some(s);
                    }
                    Err(e) => log::error!("SSDP on {}: {e}", lan.dev),
                }
            }
            if cfg.enable_natpmp || cfg.enable_pcp {
                match udp::natpmp_pcp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        udp::spawn_reader(s.clone(), Kind::NatPmpPcp, i, self.udp_tx.clone());
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
            self.sockets.push(socks);
        }
    }

    fn ssdp(&self, lan: usize) -> Option<&Rc<UdpSocket>> {
        self.sockets.get(lan).and_then(|s| s.ssdp.as_ref())
    }

    fn natpmp_pcp(&self, lan: usize) -> Option<&Rc<UdpSocket>> {
        self.sockets.get(lan).and_then(|s| s.natpmp_pcp.as_ref())
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
        let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
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
                let Some(sock) = self.fronts.natpmp_pcp(dg.lan).cloned() else {
                    return;
                };
                let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
                let server = Server {
                    settings: &self.natpmp_pcp,
                    external: self.wan.external_ip(),
                    epoch: self.epoch.secs(now),
                    now,
                    facts: &facts,
                };
                let reply = natpmp_pcp::on_datagram(
                    &mut self.core,
                    &server,
                    &self.lans,
                    dg.lan,
                    dg.src,
                    &dg.data,
                );
                if let Some(reply) = reply {
                    self.deferred.push(Deferred::Udp {
                        sock,
                        to: dg.src,
                        reply,
                    });
                }
            }
        }
    }

    /// Multicasts the whole announcement set on every LAN.
    pub(super) fn announce(&mut self, alive: bool) {
        if !self.ssdp.enabled() {
            return;
        }
        let group = SocketAddr::from((udp::SSDP_GROUP, udp::SSDP_PORT));
        for i in 0..self.fronts.sockets.len() {
            let Some(sock) = self.fronts.ssdp(i) else {
                continue;
            };
            for m in ssdp::announcements(&self.device, &self.lans, i, alive) {
                let _ = sock.try_send_to(m.as_bytes(), group);
            }
        }
    }

    pub(super) fn send_search_replies(&mut self, now: Millis) {
        let date = http::date(unix_now());
        for (lan, to, msg) in self.ssdp.due_replies(&self.device, &self.lans, now, &date) {
            if let Some(sock) = self.fronts.ssdp(lan) {
                let _ = sock.try_send_to(msg.as_bytes(), SocketAddr::V4(to));
            }
        }
    }

    /// The NAT-PMP/PCP announcements due (RFC 6886 §3.2.1).
    pub(super) fn send_announcements(&mut self, now: Millis) {
        if !self.epoch.announcement_due(now) {
            return;
        }
        let msgs = natpmp_pcp::announcements(
            &self.natpmp_pcp,
            self.epoch.secs(now),
            self.wan.external_ip(),
        );
        for i in 0..self.fronts.sockets.len() {
            if let Some(sock) = self.fronts.natpmp_pcp(i) {
                for m in &msgs {
                    let _ = sock.try_send_to(m, SocketAddr::V4(udp::ALL_HOSTS));
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
