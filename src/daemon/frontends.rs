//! The front ends of each LAN: the HTTP listeners, the SSDP sockets and
//! the NAT-PMP/PCP sockets, over IPv4 and (unless `ipv6_disable`) over
//! IPv6 on the LAN's global and unique-local addresses (SSDP on the
//! device, PCP per address; NAT-PMP is IPv4 only), the tasks that serve
//! them, and carrying what arrives to the core and what the core says
//! back out.
//!
//! Owns: [`FrontEnds`], their life cycle and their tasks. A front end is
//! one socket ([`Spec`]: what it serves, on which device and address)
//! and the tasks serving it, held in its [`Tasks`]: they end when the
//! front end closes, and closing waits until they have ended, so its
//! socket is closed before a new one binds the same port. [`FrontEnds::sync`]
//! opens and closes them to match the configuration and the LANs, touching
//! only those whose `Spec` changed.
//!
//! A new kind of socket (IPv6 SSDP or PCP, say) joins by: a
//! [`Service`] variant or a `Spec` address family; its `Spec`s among those
//! [`FrontEnds::sync`] wants; its opening in [`FrontEnds::open`], where its
//! reader task is spawned with [`Tasks::spawn`] (never
//! `tokio::task::spawn_local` directly) and tags what it reads with the
//! front end's id; and a lookup like [`FrontEnds::udp`] for what the loop
//! sends from it. What a
//! request means and what to answer is decided in `core::web`,
//! `core::ssdp` and `core::natpmp_pcp`.

use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::rc::Rc;

use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::core::lan::{Lan, Lans};
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

/// What a front end serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Http,
    Udp(Kind),
}

/// What a front end's socket is opened for. A front end is reopened
/// exactly when its `Spec` changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    service: Service,
    dev: String,
    /// IPv6 SSDP listens on the device's `::` (its groups are joined by
    /// interface index); every other socket on one address.
    addr: IpAddr,
    /// HTTP: the port asked for (0: the kernel picks one). UDP: 0, their
    /// ports are fixed.
    port: u16,
}

/// The tasks of one front end. They end when it closes ([`Tasks::close`])
/// or is dropped: nothing a front end starts outlives it.
#[derive(Default)]
struct Tasks(Vec<JoinHandle<()>>);

impl Tasks {
    fn spawn(&mut self, task: impl Future<Output = ()> + 'static) {
        self.0.push(crate::sys::task::spawn_local(task));
    }

    /// Aborts every task and waits until each is dropped, with the
    /// sockets it held.
    async fn close(mut self) {
        let tasks = std::mem::take(&mut self.0);
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// One open front end.
struct FrontEnd {
    /// Tags what its reader hands to the loop; never reused.
    id: u32,
    spec: Spec,
    /// The port bound (HTTP on port 0: the one the kernel picked).
    port: u16,
    /// A UDP front end's socket, for what the loop sends from it.
    udp: Option<Rc<UdpSocket>>,
    /// An IPv6 UDP front end's interface index: where its multicast goes.
    ifindex: u32,
    tasks: Tasks,
}

impl FrontEnd {
    /// Closes the socket: the tasks have ended when this returns.
    async fn close(self) {
        let FrontEnd {
            spec, udp, tasks, ..
        } = self;
        drop(udp);
        tasks.close().await;
        log::debug!("closed {:?} on {} ({})", spec.service, spec.addr, spec.dev);
    }

    /// Whether it serves `service` on LAN `lan` over IPv4 (or, `v6`,
    /// over IPv6: on the LAN's device, at one of its addresses or at
    /// `::`).
    fn serves(&self, service: Service, lan: &Lan, v6: bool) -> bool {
        self.spec.service == service
            && self.spec.dev == lan.dev
            && match self.spec.addr {
                IpAddr::V4(a) => !v6 && a == lan.addr,
                IpAddr::V6(a) => {
                    v6 && (a.is_unspecified() || lan.nets6.iter().any(|(n, _)| *n == a))
                }
            }
    }
}

impl Spec {
    /// `service` on LAN `lan`'s device at `addr`.
    fn on(service: Service, lan: &Lan, addr: IpAddr, port: u16) -> Spec {
        Spec {
            service,
            dev: lan.dev.clone(),
            addr,
            port,
        }
    }
}

/// Every front end's sockets and tasks, and the channels into the loop.
pub(super) struct FrontEnds {
    open: Vec<FrontEnd>,
    next_id: u32,
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
            open: Vec::new(),
            next_id: 0,
            http_tx,
            udp_tx,
            http_gate: Rc::new(shttp::Gate::default()),
            server,
        }
    }

    /// Drops every front end, which aborts their tasks (at exit).
    pub fn close_all(&mut self) {
        self.open.clear();
    }

    /// Opens and closes front ends until they are those `cfg` and `lans`
    /// call for: those no longer wanted are closed first (and have
    /// released their ports when this returns), then the missing ones are
    /// opened; the others stay as they are, with their connections.
    /// Records each LAN's HTTP port.
    pub async fn sync(&mut self, cfg: &Config, lans: &mut Lans) {
        let mut first = Vec::new();
        if cfg.enabled {
            for lan in lans.iter() {
                let v4 = IpAddr::V4(lan.addr);
                // nets6 is empty with ipv6_disable
                let v6 = !cfg.ipv6_disable && !lan.nets6.is_empty();
                let addrs6 = lan.nets6.iter().map(|(a, _)| IpAddr::V6(*a));
                if cfg.enable_upnp {
                    first.push(Spec::on(Service::Http, lan, v4, cfg.port));
                    first.push(Spec::on(Service::Udp(Kind::Ssdp), lan, v4, 0));
                    if v6 {
                        let any = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                        first.push(Spec::on(Service::Udp(Kind::Ssdp), lan, any, 0));
                    }
                }
                if cfg.enable_natpmp || cfg.enable_pcp {
                    first.push(Spec::on(Service::Udp(Kind::NatPmpPcp), lan, v4, 0));
                }
                if v6 && cfg.enable_pcp {
                    let pcp6 = addrs6.map(|a| Spec::on(Service::Udp(Kind::NatPmpPcp), lan, a, 0));
                    first.extend(pcp6);
                }
            }
        }
        let is_http6 = |s: &Spec| s.service == Service::Http && s.addr.is_ipv6();
        self.reconcile(&first, |s| !is_http6(s)).await;
        // Then the IPv6 listeners, on the port the IPv4 one got.
        let mut then = Vec::new();
        if cfg.enabled && cfg.enable_upnp {
            for lan in lans.iter() {
                let port = self.http_port(lan).unwrap_or(cfg.port);
                then.extend(
                    lan.nets6
                        .iter()
                        .filter(|_| !cfg.ipv6_disable)
                        .map(|(a6, _)| Spec::on(Service::Http, lan, IpAddr::V6(*a6), port)),
                );
            }
        }
        self.reconcile(&then, is_http6).await;
        for i in 0.. {
            let Some(lan) = lans.get(i) else {
                break;
            };
            let port = self.http_port(lan).unwrap_or(cfg.port);
            if let Some(lan) = lans.get_mut(i) {
                lan.http_port = port;
            }
        }
    }

    /// Among the front ends `scope` covers, closes those not in `wanted`,
    /// then opens those of `wanted` not open.
    async fn reconcile(&mut self, wanted: &[Spec], scope: impl Fn(&Spec) -> bool) {
        let (stale, kept) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|f| scope(&f.spec) && !wanted.contains(&f.spec));
        self.open = kept;
        for f in stale {
            f.close().await;
        }
        for spec in wanted {
            if !self.open.iter().any(|f| f.spec == *spec) {
                if let Some(f) = self.open(spec.clone()) {
                    self.open.push(f);
                }
            }
        }
    }

    /// Opens one front end and starts its tasks; a failure is logged.
    fn open(&mut self, spec: Spec) -> Option<FrontEnd> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        let mut tasks = Tasks::default();
        let (dev, addr) = (spec.dev.as_str(), spec.addr);
        let mut ifindex = 0;
        let (port, udp) = match (spec.service, addr) {
            (Service::Http, _) => {
                // Bound to the LAN device too: a WAN host routing to the
                // LAN address gets no answer at all.
                let l = match shttp::listener(dev, addr, spec.port) {
                    Ok(l) => l,
                    Err(e) if addr.is_ipv6() => {
                        log::warn!("HTTP on {}: {e}", SocketAddr::new(addr, spec.port));
                        return None;
                    }
                    Err(e) => {
                        log::error!("HTTP on {}: {e}", SocketAddr::new(addr, spec.port));
                        return None;
                    }
                };
                let port = l.local_addr().map(|a| a.port()).unwrap_or(spec.port);
                log::info!("HTTP listening on {} ({dev})", SocketAddr::new(addr, port));
                tasks.spawn(shttp::serve(
                    l,
                    self.http_tx.clone(),
                    shttp::Limits::default(),
                    self.http_gate.clone(),
                    self.server.clone(),
                ));
                (port, None)
            }
            (Service::Udp(kind), IpAddr::V4(a)) => {
                let opened = match kind {
                    Kind::Ssdp => udp::ssdp_socket(dev, a),
                    Kind::NatPmpPcp => udp::natpmp_pcp_socket(dev, a),
                };
                let s = match opened {
                    Ok(s) => Rc::new(s),
                    Err(e) => {
                        match kind {
                            Kind::Ssdp => log::error!("SSDP on {dev}: {e}"),
                            Kind::NatPmpPcp => log::error!("NAT-PMP/PCP on {a}: {e}"),
                        }
                        return None;
                    }
                };
                if kind == Kind::NatPmpPcp {
                    log::info!("NAT-PMP/PCP listening on {a}:{}", udp::NATPMP_PCP_PORT);
                }
                tasks.spawn(udp::reader(s.clone(), kind, id, self.udp_tx.clone()));
                (0, Some(s))
            }
            (Service::Udp(kind), IpAddr::V6(a)) => {
                let Some(ix) = netif::ifindex(dev) else {
                    log::warn!("LAN device {dev}: no interface index for IPv6");
                    return None;
                };
                ifindex = ix;
                let opened = match kind {
                    Kind::Ssdp => udp::ssdp_socket6(dev, ix),
                    // NAT-PMP is IPv4 only (RFC 6886): PCP alone
                    Kind::NatPmpPcp => udp::pcp_socket6(dev, a, ix),
                };
                let s = match opened {
                    Ok(s) => Rc::new(s),
                    Err(e) => {
                        match kind {
                            Kind::Ssdp => log::error!("SSDP over IPv6 on {dev}: {e}"),
                            Kind::NatPmpPcp => log::error!("PCP on [{a}]: {e}"),
                        }
                        return None;
                    }
                };
                match kind {
                    Kind::Ssdp => log::info!("SSDP listening on [ff02::c] and [ff05::c] ({dev})"),
                    Kind::NatPmpPcp => {
                        log::info!("PCP listening on [{a}]:{}", udp::NATPMP_PCP_PORT)
                    }
                }
                tasks.spawn(udp::reader(s.clone(), kind, id, self.udp_tx.clone()));
                (0, Some(s))
            }
        };
        Some(FrontEnd {
            id,
            spec,
            port,
            udp,
            ifindex,
            tasks,
        })
    }

    /// The port LAN `lan`'s IPv4 HTTP listener is bound to.
    fn http_port(&self, lan: &Lan) -> Option<u16> {
        self.open
            .iter()
            .find(|f| f.serves(Service::Http, lan, false))
            .map(|f| f.port)
    }

    /// LAN `lan`'s UDP sockets of `kind` over IPv4 (or, `v6`, over IPv6:
    /// SSDP's one, PCP's one per address), each with its interface index.
    fn udp(&self, kind: Kind, lan: &Lan, v6: bool) -> impl Iterator<Item = (&Rc<UdpSocket>, u32)> {
        self.open
            .iter()
            .filter(move |f| f.serves(Service::Udp(kind), lan, v6))
            .filter_map(|f| Some((f.udp.as_ref()?, f.ifindex)))
    }

    /// Where a datagram read by front end `id` came in: the LAN's index
    /// and the socket to answer from. None once that front end is closed
    /// or serves no LAN any more.
    fn origin(&self, id: u32, lans: &Lans) -> Option<(usize, Rc<UdpSocket>)> {
        let f = self.open.iter().find(|f| f.id == id)?;
        let Service::Udp(kind) = f.spec.service else {
            return None;
        };
        let v6 = f.spec.addr.is_ipv6();
        let lan = lans
            .iter()
            .position(|l| f.serves(Service::Udp(kind), l, v6))?;
        Some((lan, f.udp.clone()?))
    }
}

impl Daemon {
    /// Brings the front ends in line with the configuration and the LANs
    /// (at start, and in the turn that changed either).
    pub(super) async fn sync_frontends(&mut self) {
        self.fronts_stale = false;
        self.fronts.sync(&self.cfg, &mut self.lans).await;
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
        let Some((lan, sock)) = self.fronts.origin(dg.front, &self.lans) else {
            return;
        };
        match dg.kind {
            Kind::Ssdp => {
                self.ssdp
                    .on_datagram(&self.device, &self.lans, lan, dg.src, &dg.data, now);
            }
            Kind::NatPmpPcp => {
                let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
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
                let reply = natpmp_pcp::on_datagram(&mut self.core, &server, lan, dg.src, &dg.data);
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

    /// Multicasts the whole announcement set on every LAN, to each group
    /// it has a socket for.
    pub(super) fn announce(&mut self, alive: bool) {
        if !self.ssdp.enabled() {
            return;
        }
        for (i, lan) in self.lans.iter().enumerate() {
            let v4 = self
                .fronts
                .udp(Kind::Ssdp, lan, false)
                .map(|s| (s, Group::V4));
            let v6 = self
                .fronts
                .udp(Kind::Ssdp, lan, true)
                .flat_map(|s| Group::V6.map(|g| (s, g)));
            for ((sock, ifindex), group) in v4.chain(v6) {
                let to = udp::to_group(group, ifindex);
                for m in ssdp::announcements(&self.device, &self.lans, i, group, alive) {
                    let _ = sock.try_send_to(m.as_bytes(), to);
                }
            }
        }
    }

    pub(super) fn send_search_replies(&mut self, now: Millis) {
        // Most turns have none due: no Date to format then.
        if self.ssdp.next_deadline() > now {
            return;
        }
        let date = http::date(unix_now());
        for (lan, to, msg) in self.ssdp.due_replies(&self.device, &self.lans, now, &date) {
            let sock = self
                .lans
                .get(lan)
                .and_then(|l| self.fronts.udp(Kind::Ssdp, l, to.is_ipv6()).next());
            if let Some((sock, _)) = sock {
                let _ = sock.try_send_to(msg.as_bytes(), to);
            }
        }
    }

    /// The NAT-PMP/PCP announcements due (RFC 6886 §3.2.1), over IPv4 to
    /// 224.0.0.1:5350 and over IPv6, each on its own epoch's schedule,
    /// to [ff02::1]:5350 (RFC 6887 §14.1) from every IPv6 PCP socket.
    pub(super) fn send_announcements(&mut self, now: Millis) {
        let external = self.wan.external_ip();
        for v6 in [false, true] {
            let epoch = if v6 {
                &mut self.epoch6
            } else {
                &mut self.epoch
            };
            if !epoch.announcement_due(now) {
                continue;
            }
            let secs = epoch.secs(now);
            let msgs = natpmp_pcp::announcements(&self.natpmp_pcp, secs, external, v6);
            for lan in self.lans.iter() {
                for (sock, ifindex) in self.fronts.udp(Kind::NatPmpPcp, lan, v6) {
                    let to = if v6 {
                        let all = SocketAddrV6::new(udp::ALL_NODES, pcp::CLIENT_PORT, 0, ifindex);
                        SocketAddr::V6(all)
                    } else {
                        SocketAddr::V4(udp::ALL_HOSTS)
                    };
                    for m in &msgs {
                        let _ = sock.try_send_to(m, to);
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
