//! The one event loop: sockets, signals, timers and firewall notifications
//! in; core decisions out to nftables, the network and the logs.
//!
//! Owns: [`Daemon`] and the loop turn. Each turn handles whatever events
//! are ready (a bounded number), then commits the table's changes to the
//! firewall as one transaction, and only then sends the replies that
//! depended on them, rewrites the lease file and logs. A failed
//! transaction rolls the turn back and every reply becomes an error.

mod api;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, prefix_contains};
use crate::core::gena::{self, Gena};
use crate::core::igd::{self, WanInfo};
use crate::core::pinhole::{PinChange, Pinhole};
use crate::core::policy::{Environment, Policy, PortClaim};
use crate::core::ssdp::Responder;
use crate::core::table::{Change, Mapping, Millis};
use crate::core::{Core, Event, EventKind, persist, pmp};
use crate::proto::desc::{self, DescParams};
use crate::proto::http::{Method, Response};
use crate::proto::igd::UpnpError;
use crate::proto::schema::{Service, ServiceKind};
use crate::proto::{soap, ssdp};
use crate::sys::http::{self as shttp, Job};
use crate::sys::netif::{self, AddrWatch, Listeners};
use crate::sys::nft::{self, Nft, Setup};
use crate::sys::udp::{self, Datagram, Kind};
use crate::sys::{leasefile, notify, uci};

/// Most events handled in one loop turn before committing.
const TURN_BATCH: usize = 128;
/// UDA 1.1 §1.2.2: CACHE-CONTROL max-age of at least 1800 s.
const MIN_MAX_AGE: u32 = 1800;

/// Command-line options (flags override UCI values).
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    pub lan: Vec<String>,
    pub wan: Option<String>,
    pub port: Option<u16>,
    pub lease_file: Option<PathBuf>,
    pub ubus_socket: Option<PathBuf>,
    pub debug: bool,
    pub stderr: bool,
}

/// The monotonic clock the core's `Millis` are measured on.
#[derive(Debug, Clone, Copy)]
struct Clock {
    start: Instant,
}

impl Clock {
    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }
    fn instant(&self, ms: Millis) -> Instant {
        self.start + Duration::from_millis(ms)
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One LAN interface served.
struct Lan {
    dev: String,
    addr: Ipv4Addr,
    nets: Vec<(Ipv4Addr, u8)>,
    /// Global and unique-local IPv6 addresses (HTTP for pinhole control
    /// points; link-local ones need a scope and are left out).
    nets6: Vec<(std::net::Ipv6Addr, u8)>,
    http_port: u16,
    ssdp: Option<Rc<UdpSocket>>,
    pmp: Option<Rc<UdpSocket>>,
}

impl Lan {
    /// The IPv4 listener's port once known (port 0 picks one), else the
    /// configured one.
    fn http_port_or(&self, configured: u16) -> u16 {
        if configured == 0 {
            self.http_port
        } else {
            configured
        }
    }
}

/// The WAN as last read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Wan {
    dev: Option<String>,
    addr: Option<Ipv4Addr>,
    up: bool,
}

/// Formatted lease-file lines, one per mapping, valid for one wall-clock
/// base (UNIX seconds at monotonic time 0). Kept densely so a rewrite is
/// one concatenation: a change costs one line's formatting and a memcpy of
/// the file, not a walk of the table (the file's order is free; readers
/// key on the fields).
#[derive(Default)]
struct LeaseCache {
    base: Option<u64>,
    lines: Vec<String>,
    keys: Vec<crate::core::table::Key>,
    index: std::collections::HashMap<crate::core::table::Key, usize>,
}

impl LeaseCache {
    fn clear(&mut self) {
        self.lines.clear();
        self.keys.clear();
        self.index.clear();
    }

    fn set(&mut self, key: crate::core::table::Key, line: String) {
        match self.index.get(&key) {
            Some(&i) => self.lines[i] = line,
            None => {
                self.index.insert(key, self.lines.len());
                self.lines.push(line);
                self.keys.push(key);
            }
        }
    }

    fn remove(&mut self, key: &crate::core::table::Key) {
        let Some(i) = self.index.remove(key) else {
            return;
        };
        self.lines.swap_remove(i);
        self.keys.swap_remove(i);
        if let Some(moved) = self.keys.get(i) {
            self.index.insert(*moved, i);
        }
    }
}

/// A reply waiting for the turn's firewall transaction.
enum Deferred {
    Http {
        tx: oneshot::Sender<Response>,
        ok: Response,
        fail: Response,
    },
    Udp {
        sock: Rc<UdpSocket>,
        to: SocketAddrV4,
        ok: Vec<u8>,
        fail: Option<Vec<u8>>,
    },
    Ubus {
        reply: crate::sys::ubus::Responder,
        ok: crate::proto::blob::Value,
    },
}

/// Where the UCI packages are read: `--config-dir`, or `/etc/config`
/// with the runtime override directory `/var/run/uci`.
pub fn uci_dirs(opts: &Options) -> uci::Dirs {
    match &opts.config_dir {
        Some(d) => uci::Dirs {
            confdir: d.clone(),
            override_dir: d.clone(),
        },
        None => uci::Dirs::default(),
    }
}

/// Loads and validates the configuration: UCI `upnpd`, then the
/// command-line flags. Errors name the option, the value and what is
/// allowed.
pub fn load_config(opts: &Options) -> Result<(Config, Vec<String>), Vec<String>> {
    let dirs = uci_dirs(opts);
    let (mut cfg, mut warnings) = match uci::load(&dirs, "upnpd") {
        Ok((pkg, _)) => match crate::config::uci::from_uci(&pkg) {
            Ok(l) => (l.config, l.warnings),
            Err(errors) => return Err(errors.iter().map(|e| e.to_string()).collect()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            Config::default(),
            vec![format!("{e}; using the built-in defaults")],
        ),
        Err(e) => return Err(vec![e.to_string()]),
    };
    if !opts.lan.is_empty() {
        cfg.internal_iface = opts.lan.clone();
    }
    if let Some(w) = &opts.wan {
        cfg.external_iface = Some(w.clone());
    }
    if let Some(p) = opts.port {
        cfg.port = p;
    }
    if let Some(l) = &opts.lease_file {
        cfg.upnp_lease_file = Some(l.clone());
    }
    // external_zone: the first network of that firewall zone is the WAN
    // (miniupnpd's init script asks `fw4 zone`; the zone's networks are in
    // /etc/config/firewall).
    if let (None, Some(zone)) = (&cfg.external_iface, &cfg.external_zone) {
        if let Ok((fw, _)) = uci::load(&dirs, "firewall") {
            let net = fw
                .of_type("zone")
                .filter(|z| z.option("name") == Some(zone.as_str()))
                .find_map(|z| {
                    z.get("network")
                        .and_then(|v| v.words().next().map(String::from))
                });
            match net {
                Some(n) => cfg.external_iface = Some(n),
                None => warnings.push(format!(
                    "upnpd.config.external_zone: zone \"{zone}\" has no network in the firewall configuration"
                )),
            }
        }
    }
    if cfg.use_stun {
        warnings.push(
            "upnpd.config.use_stun: STUN is not implemented; the WAN address is reported as it is"
                .into(),
        );
    }
    if opts.debug {
        cfg.log_output = true;
    }
    if cfg.perm_rules.is_empty() && warnings.iter().all(|w| !w.contains("perm_rule")) {
        warnings.push("no permission rules: every mapping will be refused".into());
    }
    Ok((cfg, warnings))
}

/// The pinhole policy from the configuration: the same rules, secure mode
/// and limits as IPv4 mappings.
fn pin_policy(cfg: &Config) -> crate::core::pinhole::PinPolicy {
    crate::core::pinhole::PinPolicy {
        allowed: cfg.enabled && cfg.ipv6_pinholes && !cfg.ipv6_disable,
        secure_mode: cfg.secure_mode,
        rules: cfg.perm_rules.clone(),
        max_total: cfg.max_mappings,
        max_per_client: cfg.max_mappings_per_client,
    }
}

/// Ports that `/etc/config/firewall` already opens from the WAN zone.
fn firewall_claims(opts: &Options, cfg: &Config, wan_dev: Option<&str>) -> Vec<PortClaim> {
    let dirs = uci_dirs(opts);
    match uci::load(&dirs, "firewall") {
        Ok((fw, _)) => {
            let nets: Vec<&str> = cfg.external_iface.iter().map(String::as_str).collect();
            let zones = crate::config::firewall::wan_zones(&fw, &nets, wan_dev);
            let claims = crate::config::firewall::claims(&fw, &zones);
            log::info!(
                "firewall config: WAN zones {zones:?}, {} port claims from redirects and rules",
                claims.len()
            );
            claims
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            log::warn!("reading the firewall configuration: {e}");
            Vec::new()
        }
    }
}

/// A stable root UUID when none is configured: derived from the first LAN
/// device's MAC address, so control points' caches stay valid across
/// restarts.
fn default_uuid(dev: &str) -> String {
    let mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))
        .unwrap_or_default()
        .trim()
        .replace(':', "");
    let mac = if mac.len() == 12 && mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        mac
    } else {
        "000000000000".to_string()
    };
    format!("5a0b8d3c-7f1e-4c2a-9d6b-{mac}")
}

/// Configuration ID (UDA 1.1): changes whenever the description would.
fn config_id(p: &DescParams, igdv1: bool) -> u32 {
    let mut h: u32 = 2166136261;
    for b in format!("{p:?}{igdv1}").bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    h & 0x00ff_ffff
}

/// 16 bytes from the kernel's CSPRNG (SIDs must not be guessable: a
/// guessed SID could cancel someone else's subscription).
fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Never expected on Linux ≥ 3.17; fall back to time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&(t ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    b
}

/// A random (version 4) UUID.
fn random_uuid() -> String {
    let mut b = random_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Does a User-Agent belong to a client that fails on IGD:2 descriptions
/// (Windows' NAT traversal, Xbox; miniupnpd's list)?
fn wants_igd1(ua: Option<&str>) -> bool {
    ua.is_some_and(|ua| ua.to_ascii_lowercase().contains("microsoft") || ua.contains("FDSSDP"))
}

pub struct Daemon {
    opts: Options,
    cfg: Config,
    core: Core,
    nft: Nft,
    clock: Clock,
    lans: Vec<Lan>,
    wan: Wan,
    started: Millis,
    uuid: String,
    boot_id: u32,
    server: Rc<str>,
    responder: Responder,
    next_notify: Millis,
    rng: u32,
    deferred: Vec<Deferred>,
    http_tx: mpsc::Sender<Job>,
    udp_tx: mpsc::Sender<Datagram>,
    tasks: Vec<JoinHandle<()>>,
    http_active: Rc<shttp::Gate>,
    claims: Vec<PortClaim>,
    /// NAT-PMP/PCP epoch start (RFC 6886 §3.6, RFC 6887 §8.5): reset at
    /// start and whenever the external address changes.
    epoch_start: Millis,
    /// When the pending NAT-PMP/PCP announcements are due.
    announce_at: Vec<Millis>,
    pmp_cfg: pmp::PmpConfig,
    gena: Gena,
    notify_tx: mpsc::Sender<notify::Done>,
    leases: LeaseCache,
    ubus: Option<crate::sys::ubus::Handle>,
    netifd_tx: mpsc::Sender<(String, bool, crate::proto::blob::Value)>,
    /// Devices of logical interfaces, as netifd reported them.
    netifd_devs: HashMap<String, String>,
    /// netifd's view of the WAN: its logical name and whether it is up.
    netifd_wan: Option<String>,
    wan_netifd_up: Option<bool>,
    /// The WAN's IPv4 address as netifd reported it (it knows first).
    netifd_wan_addr: Option<Ipv4Addr>,
    /// The evented values last announced, per service.
    evented: Vec<(ServiceKind, Vec<(&'static str, String)>)>,
}

/// The environment the core sees: local listeners, read on first use
/// only (most requests never ask).
struct Env {
    wan: Option<Ipv4Addr>,
    listeners: std::cell::OnceCell<Listeners>,
    neighbours: std::cell::OnceCell<Vec<(IpAddr, [u8; 6])>>,
}

impl Env {
    fn new(wan: Option<Ipv4Addr>) -> Env {
        Env {
            wan,
            listeners: std::cell::OnceCell::new(),
            neighbours: std::cell::OnceCell::new(),
        }
    }

    fn mac(&self, a: IpAddr) -> Option<[u8; 6]> {
        self.neighbours
            .get_or_init(|| netif::neighbours().unwrap_or_default())
            .iter()
            .find(|(ip, _)| *ip == a)
            .map(|(_, m)| *m)
    }
}

impl Environment for Env {
    fn wan_listener(&self, p: crate::proto::Proto, port: u16) -> bool {
        self.listeners
            .get_or_init(|| Listeners::read(self.wan))
            .wan_listener(p, port)
    }

    /// The same address, or (for a request over IPv4 about an IPv6
    /// address) the same link-layer address in the neighbour tables.
    fn same_host(&self, requester: IpAddr, addr: std::net::Ipv6Addr) -> bool {
        if requester == IpAddr::V6(addr) {
            return true;
        }
        match (self.mac(requester), self.mac(IpAddr::V6(addr))) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }
}

impl Daemon {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn rand(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        self.rng
    }

    fn nft_setup(&self) -> Setup {
        Setup {
            wan_dev: self.wan.dev.clone(),
            lan_devs: self.lans.iter().map(|l| l.dev.clone()).collect(),
            ext_addr: self.external_ip(),
            hairpin: self.cfg.hairpin,
            log_packets: self.cfg.log_packets,
            log_connections: self.cfg.log_connections,
        }
    }

    fn external_ip(&self) -> Option<Ipv4Addr> {
        self.cfg.external_ip.or(self.wan.addr)
    }

    fn read_wan(cfg: &Config, devs: &HashMap<String, String>) -> Wan {
        let dev = match &cfg.external_iface {
            Some(name) => devs
                .get(name)
                .cloned()
                .or_else(|| netif::guess_device(name))
                .or_else(|| Some(name.clone())),
            None => netif::default_route_dev(),
        };
        let addr = dev
            .as_deref()
            .and_then(|d| netif::ipv4_addrs(d).into_iter().next().map(|(a, _)| a));
        let up = dev.as_deref().is_some_and(netif::is_up) && addr.is_some();
        Wan { dev, addr, up }
    }

    fn read_lans(cfg: &Config, devs: &HashMap<String, String>) -> Vec<Lan> {
        let mut out: Vec<Lan> = Vec::new();
        for name in &cfg.internal_iface {
            let Some(dev) = devs
                .get(name)
                .cloned()
                .or_else(|| netif::guess_device(name))
            else {
                log::warn!("LAN interface {name}: no such device; not serving it");
                continue;
            };
            if out.iter().any(|l| l.dev == dev) {
                continue;
            }
            let addrs = netif::ipv4_addrs(&dev);
            let Some(&(addr, _)) = addrs.first() else {
                log::warn!("LAN device {dev} has no IPv4 address; not serving it");
                continue;
            };
            let nets6 = if cfg.ipv6_disable {
                Vec::new()
            } else {
                netif::ipv6_addrs(&dev)
                    .into_iter()
                    .filter(|(a, _)| (a.segments()[0] & 0xffc0) != 0xfe80 && !a.is_loopback())
                    .collect()
            };
            out.push(Lan {
                dev,
                addr,
                nets: addrs,
                nets6,
                http_port: cfg.port,
                ssdp: None,
                pmp: None,
            });
        }
        out
    }

    fn lan_nets(&self) -> Vec<(Ipv4Addr, u8)> {
        self.lans
            .iter()
            .flat_map(|l| l.nets.iter().copied())
            .collect()
    }

    fn lan_of(&self, a: Ipv4Addr) -> Option<usize> {
        self.lans
            .iter()
            .position(|l| l.nets.iter().any(|(n, p)| prefix_contains(*n, *p, a)))
    }

    fn desc_params(&self, lan: usize) -> DescParams {
        let addr = self.lans.get(lan).map(|l| l.addr);
        DescParams {
            uuid: self.uuid.clone(),
            friendly_name: self
                .cfg
                .friendly_name
                .clone()
                .unwrap_or_else(|| "OpenWrt router".into()),
            model_number: self
                .cfg
                .model_number
                .clone()
                .unwrap_or_else(|| crate::VERSION.into()),
            serial_number: self
                .cfg
                .serial_number
                .clone()
                .unwrap_or_else(|| "00000000".into()),
            presentation_url: match &self.cfg.presentation_url {
                Some(u) if u.is_empty() => None,
                Some(u) => Some(u.clone()),
                None => addr.map(|a| format!("http://{a}/")),
            },
            config_id: 0,
            pinholes: self.pinholes_enabled(),
        }
    }

    fn igd_version(&self) -> u8 {
        if self.cfg.igdv1 { 1 } else { 2 }
    }

    fn identity(&self) -> ssdp::Identity {
        ssdp::Identity {
            uuid: self.uuid.clone(),
            version: self.igd_version(),
            pinholes: self.pinholes_enabled(),
        }
    }

    fn config_id(&self) -> u32 {
        config_id(&self.desc_params(0), self.cfg.igdv1)
    }

    /// The WAN facts an action needs; the files behind uptime, link speed
    /// and counters are only read by the actions that report them.
    fn wan_info(&self, action: &str) -> WanInfo {
        let mut w = WanInfo {
            external_ip: self.external_ip(),
            connected: self.wan.up,
            ..WanInfo::default()
        };
        let dev = self.wan.dev.as_deref().unwrap_or("");
        match action {
            "GetStatusInfo" => {
                w.uptime = if self.cfg.system_uptime {
                    netif::system_uptime().unwrap_or(0)
                } else {
                    ((self.now() - self.started) / 1000) as u32
                };
            }
            "GetCommonLinkProperties" => {
                let speed = netif::link_speed_bps(dev);
                let bps = |kib: Option<u32>| {
                    kib.map_or(speed, |k| {
                        u32::try_from(u64::from(k) * 1024 * 8).unwrap_or(u32::MAX)
                    })
                };
                w.up_bps = bps(self.cfg.upload);
                w.down_bps = bps(self.cfg.download);
            }
            a if a.starts_with("GetTotal") => w.counters = netif::link_counters(dev),
            _ => {}
        }
        w
    }

    /// Opens the HTTP listeners and UDP sockets of every LAN interface.
    async fn open_frontends(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if !self.cfg.enabled {
            return;
        }
        let limits = shttp::Limits::default();
        for (i, lan) in self.lans.iter_mut().enumerate() {
            if self.cfg.enable_upnp {
                for (a6, _) in &lan.nets6 {
                    let port = lan.http_port_or(self.cfg.port);
                    match shttp::listener(&lan.dev, IpAddr::V6(*a6), port) {
                        Ok(l) => {
                            log::info!("HTTP listening on [{a6}]:{} ({})", self.cfg.port, lan.dev);
                            self.tasks.push(tokio::task::spawn_local(shttp::serve(
                                l,
                                self.http_tx.clone(),
                                limits,
                                self.http_active.clone(),
                                self.server.clone(),
                            )));
                        }
                        Err(e) => log::warn!("HTTP on [{a6}]:{}: {e}", self.cfg.port),
                    }
                }
                // Bound to the LAN device too: a WAN host routing to the
                // LAN address gets no answer at all.
                match shttp::listener(&lan.dev, IpAddr::V4(lan.addr), self.cfg.port) {
                    Ok(l) => {
                        lan.http_port = l.local_addr().map(|a| a.port()).unwrap_or(self.cfg.port);
                        log::info!(
                            "HTTP listening on {}:{} ({})",
                            lan.addr,
                            lan.http_port,
                            lan.dev
                        );
                        self.tasks.push(tokio::task::spawn_local(shttp::serve(
                            l,
                            self.http_tx.clone(),
                            limits,
                            self.http_active.clone(),
                            self.server.clone(),
                        )));
                    }
                    Err(e) => log::error!("HTTP on {}:{}: {e}", lan.addr, self.cfg.port),
                }
                match udp::ssdp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        udp::spawn_reader(s.clone(), Kind::Ssdp, i, self.udp_tx.clone());
                        lan.ssdp = Some(s);
                    }
                    Err(e) => log::error!("SSDP on {}: {e}", lan.dev),
                }
            }
            if self.cfg.enable_natpmp || self.cfg.enable_pcp {
                match udp::pmp_socket(&lan.dev, lan.addr) {
                    Ok(s) => {
                        let s = Rc::new(s);
                        udp::spawn_reader(s.clone(), Kind::Pmp, i, self.udp_tx.clone());
                        log::info!("NAT-PMP/PCP listening on {}:{}", lan.addr, udp::PMP_PORT);
                        lan.pmp = Some(s);
                    }
                    Err(e) => log::error!("NAT-PMP/PCP on {}: {e}", lan.addr),
                }
            }
        }
    }

    /// Builds an SSDP message for LAN interface `lan` with the fields
    /// every message shares (LOCATION, SERVER, BOOTID, CONFIGID, max-age).
    fn ssdp_message(&self, lan: usize, f: impl FnOnce(&ssdp::Common) -> String) -> Option<String> {
        let l = self.lans.get(lan)?;
        let location = format!("http://{}:{}/rootDesc.xml", l.addr, l.http_port);
        Some(f(&ssdp::Common {
            location: &location,
            server: &self.server,
            boot_id: self.boot_id,
            config_id: self.config_id(),
            max_age: self.max_age(),
        }))
    }

    fn max_age(&self) -> u32 {
        self.cfg.notify_interval.saturating_mul(2).max(MIN_MAX_AGE)
    }

    /// Multicasts the whole announcement set on every LAN interface.
    fn announce(&mut self, alive: bool) {
        if !self.cfg.enabled || !self.cfg.enable_upnp {
            return;
        }
        let rows = ssdp::rows(&self.identity());
        let group = SocketAddr::from((udp::SSDP_GROUP, udp::SSDP_PORT));
        for (i, lan) in self.lans.iter().enumerate() {
            let Some(sock) = &lan.ssdp else {
                continue;
            };
            for row in &rows {
                let msg = self.ssdp_message(i, |c| {
                    if alive {
                        ssdp::notify_alive(c, row)
                    } else {
                        ssdp::notify_byebye(c, row)
                    }
                });
                if let Some(m) = msg {
                    let _ = sock.try_send_to(m.as_bytes(), group);
                }
            }
        }
    }

    fn on_datagram(&mut self, dg: Datagram) {
        // Only sources on a LAN subnet are answered (SSDP amplification,
        // RFC 6886 §3.1 for NAT-PMP).
        if self.lan_of(*dg.src.ip()) != Some(dg.lan) {
            log::debug!("ignoring {:?} datagram from non-LAN {}", dg.kind, dg.src);
            return;
        }
        match dg.kind {
            Kind::Ssdp => {
                if !self.cfg.enable_upnp {
                    return;
                }
                let Some(search) = ssdp::parse(&dg.data) else {
                    return;
                };
                let rows = ssdp::answer(&self.identity(), &search.st);
                if rows.is_empty() {
                    return;
                }
                let now = self.now();
                let seed = self.rand();
                self.responder.on_search(dg.src, rows, search.mx, now, seed);
            }
            Kind::Pmp => {
                let Some(sock) = self.lans.get(dg.lan).and_then(|l| l.pmp.clone()) else {
                    return;
                };
                let now = self.now();
                let env = Env::new(self.wan.addr);
                let ctx = pmp::Ctx {
                    cfg: &self.pmp_cfg,
                    external: self.external_ip(),
                    epoch: ((now - self.epoch_start) / 1000) as u32,
                    now,
                    env: &env,
                };
                if let Some(reply) = pmp::handle(&mut self.core, &ctx, dg.src, &dg.data) {
                    self.deferred.push(Deferred::Udp {
                        sock,
                        to: dg.src,
                        ok: reply.ok,
                        fail: reply.on_failure,
                    });
                }
            }
        }
    }

    /// Starts a new NAT-PMP/PCP epoch and schedules the unsolicited
    /// announcements (RFC 6886 §3.2.1: 10 sends, 250 ms apart, doubling).
    fn new_epoch(&mut self, now: Millis) {
        self.epoch_start = now;
        self.announce_at = pmp::ANNOUNCE_SCHEDULE.iter().map(|d| now + d).collect();
    }

    fn send_announcements(&mut self, now: Millis) {
        if self.announce_at.first().is_none_or(|t| *t > now) {
            return;
        }
        self.announce_at.retain(|t| *t > now);
        if !self.cfg.enabled {
            return;
        }
        let epoch = ((now - self.epoch_start) / 1000) as u32;
        let mut msgs = Vec::new();
        if self.pmp_cfg.natpmp {
            if let Some(ext) = self.external_ip() {
                msgs.push(pmp::natpmp_announcement(epoch, ext));
            }
        }
        if self.pmp_cfg.pcp {
            msgs.push(pmp::pcp_announcement(epoch));
        }
        for lan in &self.lans {
            if let Some(sock) = &lan.pmp {
                for m in &msgs {
                    let _ = sock.try_send_to(m, SocketAddr::V4(udp::ALL_HOSTS));
                }
            }
        }
    }

    fn send_due_search_replies(&mut self, now: Millis) {
        let date = crate::proto::http::date(unix_now());
        for (to, row) in self.responder.due(now) {
            let Some(lan) = self.lan_of(*to.ip()) else {
                continue;
            };
            let msg = self.ssdp_message(lan, |c| ssdp::search_response(c, &row, &date));
            if let (Some(msg), Some(sock)) = (msg, &self.lans[lan].ssdp) {
                let _ = sock.try_send_to(msg.as_bytes(), SocketAddr::V4(to));
            }
        }
    }

    fn on_http(&mut self, job: Job) {
        let Job {
            req,
            body,
            peer,
            local,
            reply,
        } = job;
        let fail = Response::xml(500, soap::fault(UpnpError::ActionFailed));
        let resp = self.http_response(&req, &body, peer, local);
        self.deferred.push(Deferred::Http {
            tx: reply,
            ok: resp,
            fail,
        });
    }

    fn http_response(
        &mut self,
        req: &crate::proto::http::Request,
        body: &[u8],
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Response {
        let requester = peer.ip();
        let (client, lan) = match requester {
            IpAddr::V4(c) => (c, self.lan_of(c)),
            IpAddr::V6(c) => (Ipv4Addr::UNSPECIFIED, self.lan_of6(c)),
        };
        let Some(lan) = lan else {
            return Response::error(403, "not a LAN client");
        };
        // DNS-rebinding defence: the Host header must be our literal address.
        match req.host.as_deref() {
            Some(h) if crate::proto::http::host_matches(h, local.ip(), local.port()) => {}
            _ => return Response::error(400, "Host must be the router's address"),
        }
        let path = req.path.split('?').next().unwrap_or("");
        let v = if self.cfg.igdv1 || wants_igd1(req.user_agent.as_deref()) {
            1
        } else {
            2
        };
        match req.method() {
            Method::Get | Method::Head => {
                if path == "/rootDesc.xml" {
                    let mut p = self.desc_params(lan);
                    p.config_id = self.config_id();
                    return Response::xml(200, desc::root(&p, v));
                }
                match Service::by_scpd_path(path) {
                    Some(s) if self.serves(s, v) => Response::xml(200, desc::scpd(s, v)),
                    _ => Response::error(404, "no such document"),
                }
            }
            Method::Post => match Service::by_control_path(path) {
                Some(s) if self.serves(s, 2) => self.soap(s, req, body, client, requester),
                _ => Response::error(404, "no such control URL"),
            },
            Method::Subscribe | Method::Unsubscribe => match Service::by_event_path(path) {
                // GENA callbacks must be IPv4 (the subscriber's own address).
                Some(s) if self.serves(s, 2) && requester.is_ipv4() => {
                    self.gena_request(s.kind, req, client)
                }
                _ => Response::error(404, "no such event URL"),
            },
            Method::Other => Response::error(405, "method not allowed"),
        }
    }

    /// Whether a service is part of the device described at version `v`:
    /// WANIPv6FirewallControl only in IGD:2, and only with pinholes on.
    fn serves(&self, s: &Service, v: u8) -> bool {
        if s.v2_only && v < 2 {
            return false;
        }
        s.kind != ServiceKind::WanIpv6FirewallControl || self.pinholes_enabled()
    }

    fn pinholes_enabled(&self) -> bool {
        self.cfg.ipv6_pinholes && !self.cfg.ipv6_disable
    }

    fn lan_of6(&self, a: std::net::Ipv6Addr) -> Option<usize> {
        self.lans.iter().position(|l| {
            l.nets6
                .iter()
                .any(|(n, p)| igd::prefix6_contains(*n, *p, a))
        })
    }

    fn gena_request(
        &mut self,
        service: ServiceKind,
        req: &crate::proto::http::Request,
        client: Ipv4Addr,
    ) -> Response {
        let h = gena::Headers {
            sid: req.sid.as_deref(),
            callback: req.callback.as_deref(),
            nt: req.nt.as_deref(),
            timeout: req.timeout.as_deref(),
        };
        let now = self.now();
        let result = if req.method() == Method::Subscribe {
            let sid = format!("uuid:{}", random_uuid());
            self.gena
                .subscribe(service, client, h, now, sid)
                .map(|(sid, secs)| {
                    Response::new(200)
                        .header("SID", sid)
                        .header("TIMEOUT", format!("Second-{secs}"))
                })
        } else {
            self.gena
                .unsubscribe(service, h, now)
                .map(|_| Response::new(200))
        };
        match result {
            Ok(r) => r,
            Err(e) => {
                log::debug!("{:?} from {client} refused: {e:?}", req.method());
                Response::error(e.status(), "subscription refused")
            }
        }
    }

    /// Marks the services whose evented values changed, so their
    /// subscribers get a message.
    fn track_evented(&mut self) {
        if self.gena.is_empty() {
            return;
        }
        let wan = self.wan_info("");
        let udn = desc::udn(&self.uuid, 2);
        let v = self.igd_version();
        for kind in [
            ServiceKind::WanIpConnection,
            ServiceKind::WanCommonInterfaceConfig,
            ServiceKind::Layer3Forwarding,
            ServiceKind::WanIpv6FirewallControl,
        ] {
            if !self.gena.has_subscribers(kind) {
                continue;
            }
            let now = gena::evented(
                kind,
                &self.core,
                &wan,
                v,
                &udn,
                self.core.pin_policy.allowed,
            );
            match self.evented.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, last)) if *last == now => {}
                Some((_, last)) => {
                    *last = now;
                    self.gena.changed(kind);
                }
                None => self.evented.push((kind, now)),
            }
        }
    }

    fn send_events(&mut self, now: Millis) {
        self.gena.expire(now);
        let due = self.gena.due(now);
        if due.is_empty() {
            return;
        }
        let wan = self.wan_info("");
        let udn = desc::udn(&self.uuid, 2);
        let v = self.igd_version();
        for d in due {
            let vars = gena::evented(
                d.service,
                &self.core,
                &wan,
                v,
                &udn,
                self.core.pin_policy.allowed,
            );
            let body = crate::proto::gena::propertyset(&vars);
            let req = crate::proto::gena::notify_request(&d.callback, &d.sid, d.seq, &body);
            notify::spawn(d.callback.addr, d.sid, req, self.notify_tx.clone());
        }
    }

    fn soap(
        &mut self,
        service: &'static Service,
        req: &crate::proto::http::Request,
        body: &[u8],
        client: Ipv4Addr,
        requester: IpAddr,
    ) -> Response {
        let Some(action) = req.soapaction.as_deref().and_then(soap::parse_soapaction) else {
            return Response::xml(500, soap::fault(UpnpError::InvalidAction));
        };
        let parsed = match soap::parse_body(body) {
            Ok(b) => b,
            Err(e) => {
                log::debug!("SOAP body from {client} refused: {e:?}");
                return Response::error(400, "malformed SOAP body");
            }
        };
        if parsed.action != action.action {
            return Response::xml(500, soap::fault(UpnpError::InvalidAction));
        }
        let conn_udn = desc::udn(&self.uuid, 2);
        let wan = self.wan_info(&action.action);
        let nets = self.lan_nets();
        let version = if service.kind == ServiceKind::WanIpConnection {
            action.version.clamp(1, 2)
        } else {
            self.igd_version()
        };
        let env = Env::new(self.wan.addr);
        let nets6: Vec<(std::net::Ipv6Addr, u8)> = self
            .lans
            .iter()
            .flat_map(|l| l.nets6.iter().copied())
            .collect();
        // The few actions that report kernel state get it read here.
        let pin_packets = match action.action.as_str() {
            "GetPinholePackets" | "CheckPinholeWorking" => parsed
                .args
                .get("UniqueID")
                .and_then(|v| crate::proto::parse_u16(v.trim()))
                .and_then(|id| self.core.pinholes.get(id).cloned())
                .and_then(|p| {
                    use crate::core::firewall::Firewall;
                    self.nft.pinhole_counters(&p)
                })
                .map(|c| c.packets),
            _ => None,
        };
        let outbound_timeout = if action.action == "GetOutboundPinholeTimeout" {
            (
                netif::conntrack_timeout("nf_conntrack_tcp_timeout_established").unwrap_or(7440),
                netif::conntrack_timeout("nf_conntrack_udp_timeout_stream").unwrap_or(180),
            )
        } else {
            (0, 0)
        };
        let ctx = igd::Ctx {
            client,
            version,
            now: self.now(),
            wan: &wan,
            env: &env,
            lan_nets: &nets,
            upnp_max_lease: self.cfg.upnp_max_lease,
            conn_udn: &conn_udn,
            requester,
            lan_nets6: &nets6,
            pin_packets,
            outbound_timeout,
        };
        if action.action == "QueryStateVariable" {
            if service.kind != ServiceKind::WanIpConnection {
                return Response::xml(500, soap::fault(UpnpError::InvalidAction));
            }
            let Some(var) = parsed.args.get("varName") else {
                return Response::xml(500, soap::fault(UpnpError::InvalidArgs));
            };
            return match igd::query_state_variable(&self.core, &ctx, var) {
                Ok(v) => Response::xml(
                    200,
                    soap::response("QueryStateVariable", soap::CONTROL_NS, &[("return", v)]),
                ),
                Err(e) => Response::xml(500, soap::fault(e)),
            };
        }
        // Required in-arguments from the service table (402 if missing).
        if let Some(a) = service.action(&action.action) {
            if a.since > 2 || a.inputs().any(|i| parsed.args.get(i.name).is_none()) {
                return Response::xml(500, soap::fault(UpnpError::InvalidArgs));
            }
        }
        match igd::handle(
            &mut self.core,
            &ctx,
            service.kind,
            &action.action,
            &parsed.args,
        ) {
            Ok(out) => Response::xml(200, soap::response(&action.action, &action.namespace, &out)),
            Err(e) => {
                log::debug!(
                    "{} from {client}: {} {}",
                    action.action,
                    e.code(),
                    e.description()
                );
                Response::xml(500, soap::fault(e))
            }
        }
    }

    /// Ends a loop turn: one firewall transaction for everything the turn
    /// changed, then the lease files, then the replies, then the logs.
    fn commit(&mut self) {
        let now = self.now();
        let changes = self.core.table.pending_changes();
        let pins = self.core.pinholes.pending_changes();
        let mut failed = None;
        if !changes.is_empty() || !pins.is_empty() {
            if let Err(e) = self.nft_apply(&changes, &pins, now) {
                failed = Some(e);
            }
        }
        if let Some(e) = &failed {
            log::error!("firewall transaction failed ({e}); refusing this turn's changes");
            self.core.rollback_all();
            if let Err(e) = self.reinstall(None) {
                log::error!("firewall resynchronisation failed: {e}");
            }
        }
        self.core.commit();
        if failed.is_none() && (!changes.is_empty() || !pins.is_empty()) {
            // Before any reply: a mapping a client was told about must
            // survive a kill -9 right after.
            self.write_leases(Some((&changes, !pins.is_empty())));
        }
        for d in self.deferred.drain(..) {
            match d {
                Deferred::Http { tx, ok, fail } => {
                    let _ = tx.send(if failed.is_some() { fail } else { ok });
                }
                Deferred::Udp { sock, to, ok, fail } => {
                    let bytes = match (&failed, fail) {
                        (Some(_), Some(f)) => f,
                        _ => ok,
                    };
                    let _ = sock.try_send_to(&bytes, SocketAddr::V4(to));
                }
                Deferred::Ubus { reply, ok } => reply.reply(match failed {
                    Some(_) => Err(crate::proto::ubus::Status::SystemError),
                    None => Ok(ok),
                }),
            }
        }
        let events = self.core.take_events();
        for ev in &events {
            log_event(ev, now);
        }
        self.send_mapping_events(&events, now);
        if failed.is_none() {
            for c in &pins {
                log_pinhole(c, now);
            }
        }
        self.track_evented();
    }

    /// Applies changes; on failure resynchronises the kernel with the new
    /// table (a flushed or damaged ruleset is the usual cause) and only
    /// reports failure if that fails too.
    fn nft_apply(
        &mut self,
        changes: &[crate::core::table::Change],
        pins: &[PinChange],
        now: Millis,
    ) -> Result<(), String> {
        use crate::core::firewall::Firewall;
        match self.nft.apply(changes, pins, now) {
            Ok(()) => Ok(()),
            Err(e) => {
                log::warn!("firewall transaction failed ({e}); reinstalling every mapping");
                self.reinstall(None)
            }
        }
    }

    /// Reinstalls the structure, the rules and every mapping and pinhole,
    /// with a new setup if given.
    fn reinstall(&mut self, setup: Option<Setup>) -> Result<(), String> {
        let now = self.now();
        let all: Vec<Mapping> = self.core.table.iter().cloned().collect();
        let pins: Vec<Pinhole> = self.core.pinholes.iter().cloned().collect();
        let refs: Vec<&Mapping> = all.iter().collect();
        let prefs: Vec<&Pinhole> = pins.iter().collect();
        match setup {
            Some(s) => self.nft.set_setup(s, &refs, &prefs, now),
            None => self.nft.restore(&refs, &prefs, now),
        }
    }

    /// Rewrites the lease files atomically (temp file, fsync, rename).
    /// Lines are cached per mapping against a fixed wall-clock base, so a
    /// change reformats only its own line; `None` rewrites everything.
    fn write_leases(&mut self, changes: Option<(&[Change], bool)>) {
        let now = self.now();
        let wall = unix_now();
        let base = wall.saturating_sub(now / 1000);
        // A wall-clock step (NTP after boot) makes every cached line wrong.
        let stepped = self.leases.base.is_none_or(|b| b.abs_diff(base) > 2);
        let (changes, pins_changed) = match changes {
            Some(c) if !stepped => c,
            _ => {
                self.leases.base = Some(base);
                self.leases.clear();
                (&[][..], true)
            }
        };
        let base = self.leases.base.unwrap_or(base);
        if let Some(path) = self.cfg.upnp_lease_file.clone() {
            if self.leases.lines.is_empty() {
                for m in self.core.table.iter() {
                    self.leases
                        .set(m.key, persist::to_lease(m, 0, base).emit() + "\n");
                }
            }
            for c in changes {
                match &c.new {
                    Some(m) => self
                        .leases
                        .set(c.key, persist::to_lease(m, 0, base).emit() + "\n"),
                    None => self.leases.remove(&c.key),
                }
            }
            let text = self.leases.lines.concat();
            if let Err(e) = leasefile::write_atomic(&path, &text) {
                log::error!("writing lease file: {e}");
            }
        }
        if let Some(path6) = self.cfg.upnp_lease_file6.clone().filter(|_| pins_changed) {
            let mut text = String::new();
            for p in self.core.pinholes.iter() {
                text.push_str(&persist::to_lease6(p, now, wall).emit());
                text.push('\n');
            }
            if let Err(e) = leasefile::write_atomic(&path6, &text) {
                log::error!("writing IPv6 lease file: {e}");
            }
        }
    }

    /// Restores the mappings of the lease file, re-validated against the
    /// current policy. Returns how many were restored.
    fn restore_leases(&mut self) -> usize {
        let Some(path) = self
            .cfg
            .upnp_lease_file
            .clone()
            .filter(|_| self.cfg.enabled)
        else {
            return 0;
        };
        let text = match leasefile::read(&path) {
            Ok(t) => t,
            Err(e) => {
                log::error!("reading lease file: {e}");
                return 0;
            }
        };
        let (leases, bad) = crate::proto::lease::parse_file(&text);
        for b in bad.iter().take(10) {
            log::warn!("lease file {}: {b:?}", path.display());
        }
        let now = self.now();
        let wall = unix_now();
        let env = Env::new(self.wan.addr);
        let nets = self.lan_nets();
        let mut n = 0;
        for l in &leases {
            let Some(m) = persist::from_lease(l, now, wall) else {
                continue;
            };
            if !nets
                .iter()
                .any(|(net, p)| prefix_contains(*net, *p, m.iaddr))
            {
                log::warn!(
                    "lease for {}:{} is not on a LAN subnet; dropped",
                    m.iaddr,
                    m.iport
                );
                continue;
            }
            if self.core.restore(m, now, &env).is_ok() {
                n += 1;
            }
        }
        if let Some(path6) = self.cfg.upnp_lease_file6.clone() {
            let text = leasefile::read(&path6).unwrap_or_default();
            let (leases, _) = crate::proto::lease::parse_file6(&text);
            let nets6: Vec<_> = self
                .lans
                .iter()
                .flat_map(|l| l.nets6.iter().copied())
                .collect();
            for l in &leases {
                if let Some(p) = persist::from_lease6(l, now, wall) {
                    if nets6
                        .iter()
                        .any(|(n, pl)| igd::prefix6_contains(*n, *pl, p.iaddr))
                    {
                        self.core.pinholes.restore(p);
                    }
                }
            }
        }
        self.core.commit();
        n
    }

    fn restore_firewall(&mut self, why: &str) {
        let t = std::time::Instant::now();
        match self.reinstall(None) {
            Ok(()) => log::info!(
                "{why}: reinstalled {} mappings and {} pinholes in {} ms",
                self.core.table.len(),
                self.core.pinholes.len(),
                t.elapsed().as_millis()
            ),
            Err(e) => log::error!("{why}: reinstalling mappings failed: {e}"),
        }
    }

    /// After a firewall reload (fw4's include, or a foreign nftables
    /// commit): its configuration may have changed, so the ports it opens
    /// itself are read again, then the elements are restored if the
    /// reload removed them.
    fn check_firewall(&mut self) {
        self.refresh_claims();
        if !self.nft.intact() {
            self.restore_firewall("firewall was reloaded");
        }
    }

    /// Re-reads the port claims of `/etc/config/firewall`; mappings on a
    /// port the firewall now opens itself are removed, each logged.
    fn refresh_claims(&mut self) {
        let claims = firewall_claims(&self.opts, &self.cfg, self.wan.dev.as_deref());
        if claims == self.claims {
            return;
        }
        self.claims = claims;
        self.core.policy = Policy::from_config(&self.cfg, self.claims.clone());
        let env = Env::new(self.wan.addr);
        let removed = self.core.enforce(&env);
        if removed > 0 {
            log::info!(
                "firewall configuration changed: removed {removed} mappings it now conflicts with"
            );
        }
    }

    fn refresh_wan(&mut self) {
        let mut wan = match (&self.cfg.external_iface, &self.netifd_wan) {
            (None, Some(name)) => {
                let mut c = self.cfg.clone();
                c.external_iface = Some(name.clone());
                Self::read_wan(&c, &self.netifd_devs)
            }
            _ => Self::read_wan(&self.cfg, &self.netifd_devs),
        };
        match self.wan_netifd_up {
            Some(false) => {
                wan.up = false;
                wan.addr = None;
            }
            Some(true) if self.netifd_wan_addr.is_some() => {
                wan.addr = self.netifd_wan_addr;
                wan.up = true;
            }
            _ => {}
        }
        if wan != self.wan {
            log::info!(
                "WAN now {} address {}",
                wan.dev.as_deref().unwrap_or("-"),
                wan.addr
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "none".into())
            );
            let address_changed = wan.addr != self.wan.addr;
            self.wan = wan;
            if address_changed {
                // RFC 6887 §8.5: a new external address starts a new epoch.
                let now = self.now();
                self.new_epoch(now);
            }
            let setup = self.nft_setup();
            if let Err(e) = self.reinstall(Some(setup)) {
                log::error!("updating firewall for the new WAN: {e}");
            }
            self.send_status_event("wan");
        }
    }

    /// SIGHUP / ubus reload: applies a new configuration without
    /// dropping leases; those the new rules or limits forbid are removed,
    /// each with a log line. An invalid configuration changes nothing.
    /// Reads the configuration again and applies it; an invalid one is
    /// logged and refused (its errors returned), and the running one stays.
    async fn reload(&mut self) -> Result<(), Vec<String>> {
        let (cfg, warnings) = match load_config(&self.opts) {
            Ok(c) => c,
            Err(errors) => {
                for e in &errors {
                    log::error!("reload refused, keeping the running configuration: {e}");
                }
                return Err(errors);
            }
        };
        for w in warnings {
            log::warn!("{w}");
        }
        self.apply_config(cfg).await;
        Ok(())
    }

    async fn apply_config(&mut self, cfg: Config) {
        let old = std::mem::replace(&mut self.cfg, cfg);
        let now = self.now();
        self.wan = Self::read_wan(&self.cfg, &self.netifd_devs);
        self.claims = firewall_claims(&self.opts, &self.cfg, self.wan.dev.as_deref());
        self.core.policy = Policy::from_config(&self.cfg, self.claims.clone());
        self.core.pin_policy = pin_policy(&self.cfg);
        let env = Env::new(self.wan.addr);
        let pin_policy = self.core.pin_policy.clone();
        for p in self.core.pinholes.enforce(&pin_policy, &env) {
            log::info!(
                "reload removed pinhole {} to [{}]:{}: no longer allowed",
                p.id,
                p.iaddr,
                p.iport
            );
        }
        self.pmp_cfg = pmp::PmpConfig::from_config(&self.cfg);
        if !self.cfg.enabled {
            if old.enabled {
                self.announce(false);
            }
            self.core.flush("service disabled");
            self.gena.clear();
        } else {
            let env = Env::new(self.wan.addr);
            let removed = self.core.enforce(&env);
            if removed > 0 {
                log::info!("reload removed {removed} mappings the new configuration forbids");
            }
        }
        let frontends_changed = old.enabled != self.cfg.enabled
            || old.enable_upnp != self.cfg.enable_upnp
            || old.enable_natpmp != self.cfg.enable_natpmp
            || old.enable_pcp != self.cfg.enable_pcp
            || old.port != self.cfg.port
            || old.internal_iface != self.cfg.internal_iface;
        if frontends_changed {
            if old.enabled && self.cfg.enabled && old.enable_upnp {
                self.announce(false);
            }
            self.lans = Self::read_lans(&self.cfg, &self.netifd_devs);
            self.open_frontends().await;
            self.next_notify = now;
        }
        let setup = self.nft_setup();
        if let Err(e) = self.reinstall(Some(setup)) {
            log::error!("reload: reinstalling the firewall rules failed: {e}");
        }
        log::info!("configuration reloaded");
    }

    fn next_deadline(&self) -> Millis {
        let mut d = self.next_notify;
        if let Some(t) = self.core.table.next_deadline() {
            d = d.min(t);
        }
        if let Some(t) = self.responder.next_deadline() {
            d = d.min(t);
        }
        if let Some(t) = self.announce_at.first() {
            d = d.min(*t);
        }
        if let Some(t) = self.gena.next_deadline() {
            d = d.min(t);
        }
        if let Some(t) = self.core.pinholes.next_deadline() {
            d = d.min(t);
        }
        d
    }

    fn on_timers(&mut self) {
        let now = self.now();
        self.core.expire(now);
        self.core.expire_pinholes(now);
        self.send_due_search_replies(now);
        self.send_announcements(now);
        self.send_events(now);
        if now >= self.next_notify {
            self.announce(true);
            // Re-announce well before max-age runs out, with jitter so
            // several devices do not announce in lockstep.
            let interval = u64::from(self.cfg.notify_interval.max(1)) * 1000;
            let jitter = u64::from(self.rand()) % (interval / 16).max(1);
            self.next_notify = now + interval - jitter;
        }
    }

    async fn shutdown(&mut self) {
        log::info!("stopping: sending byebye and removing our firewall rules");
        self.announce(false);
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.nft.teardown();
    }
}

fn log_pinhole(c: &PinChange, now: Millis) {
    let (kind, p) = match (&c.old, &c.new) {
        (None, Some(p)) => ("add", p),
        (Some(_), Some(p)) => ("renew", p),
        (Some(p), None) if p.expires <= now => ("expire", p),
        (Some(p), None) => ("delete", p),
        (None, None) => return,
    };
    let remote = match (p.remote, p.rport) {
        (None, 0) => "any".to_string(),
        (r, port) => format!(
            "[{}]:{port}",
            r.map(|a| a.to_string()).unwrap_or_else(|| "any".into())
        ),
    };
    log::info!(
        "{kind} pinhole {} proto {} from {remote} to [{}]:{} lease {}s client {}",
        p.id,
        p.proto,
        p.iaddr,
        p.iport,
        p.remaining_secs(now),
        p.client
    );
}

fn log_event(ev: &Event, now: Millis) {
    let m = &ev.mapping;
    let lease = match m.remaining_secs(now) {
        Some(s) => format!("{s}s"),
        None => "permanent".into(),
    };
    let remote = m
        .remote
        .map(|r| format!(" from {}/{}", r.addr, r.prefix))
        .unwrap_or_default();
    let line = format!(
        "{} {} {}{} -> {}:{} lease {} client {} origin {} desc \"{}\": {}",
        ev.kind.as_str(),
        m.key.proto,
        m.key.eport,
        remote,
        m.iaddr,
        m.iport,
        lease,
        m.client,
        m.origin.as_str(),
        m.desc,
        ev.reason
    );
    if ev.kind == EventKind::Refuse {
        log::warn!("{line}");
    } else {
        log::info!("{line}");
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(opts: Options) -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("cannot start the runtime: {e}");
            return 1;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match main_loop(opts).await {
            Ok(()) => 0,
            Err(e) => {
                log::error!("{e}");
                1
            }
        }
    })
}

async fn main_loop(opts: Options) -> Result<(), String> {
    let (cfg, warnings) = load_config(&opts).map_err(|e| e.join("; "))?;
    for w in warnings {
        log::warn!("{w}");
    }
    let clock = Clock {
        start: Instant::now(),
    };
    let wan = Daemon::read_wan(&cfg, &HashMap::new());
    let lans = Daemon::read_lans(&cfg, &HashMap::new());
    if lans.is_empty() {
        return Err("no usable LAN interface (check internal_iface / --lan)".into());
    }
    let uuid = cfg
        .uuid
        .clone()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| default_uuid(&lans[0].dev));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let server: Rc<str> =
        format!("Linux/{} UPnP/1.1 rupnpd/{}", kernel.trim(), crate::VERSION).into();
    let (http_tx, mut http_rx) = mpsc::channel::<Job>(64);
    let (udp_tx, mut udp_rx) = mpsc::channel::<Datagram>(256);
    let (notify_tx, mut notify_rx) = mpsc::channel::<notify::Done>(64);
    let (netifd_tx, mut netifd_rx) = mpsc::channel(16);
    let (ubus, mut ubus_rx) = crate::sys::ubus::spawn(opts.ubus_socket.clone(), api::object_spec());
    let setup = Setup::default();
    let nft = Nft::open(cfg.nft.clone(), setup)?;
    log::info!(
        "nftables: table inet {} via {}{}",
        cfg.nft.table,
        if nft.in_process() {
            "libnftables"
        } else {
            "the nft command"
        },
        if nft.owns_hooks() {
            ", own hooks (no fw4)"
        } else {
            ", fw4 hooks"
        }
    );
    let claims = firewall_claims(&opts, &cfg, wan.dev.as_deref());
    let policy = Policy::from_config(&cfg, claims.clone());
    let mut core = Core::new(policy);
    core.pin_policy = pin_policy(&cfg);
    let seed = (unix_now() as u32) ^ (std::process::id() << 16) | 1;
    let mut d = Daemon {
        opts,
        core,
        nft,
        clock,
        lans,
        wan,
        started: 0,
        uuid,
        boot_id: (unix_now() & 0x7fff_ffff) as u32,
        server,
        responder: Responder::new(0),
        next_notify: 0,
        rng: seed,
        deferred: Vec::new(),
        http_tx,
        udp_tx,
        tasks: Vec::new(),
        http_active: Rc::new(shttp::Gate::default()),
        claims,
        epoch_start: 0,
        announce_at: Vec::new(),
        pmp_cfg: pmp::PmpConfig::from_config(&cfg),
        gena: Gena::new(
            cfg.max_subscribers as usize,
            cfg.max_subscribers_per_client as usize,
        ),
        notify_tx,
        evented: Vec::new(),
        leases: LeaseCache::default(),
        ubus: Some(ubus),
        netifd_tx,
        netifd_devs: HashMap::new(),
        netifd_wan: None,
        wan_netifd_up: None,
        netifd_wan_addr: None,
        cfg,
    };
    let restored = d.restore_leases();
    let setup = d.nft_setup();
    let now = d.now();
    // Installs exactly the restored table: anything a previous instance
    // left in the kernel that no lease owns is removed here.
    d.reinstall(Some(setup))
        .map_err(|e| format!("cannot install the firewall structure: {e}"))?;
    if restored > 0 {
        log::info!("restored {restored} mappings from the lease file");
    }
    for ev in d.core.take_events() {
        log_event(&ev, now);
    }
    d.write_leases(None);
    log::info!("firewall ready: {}", nft::describe(d.nft.setup()));
    d.open_frontends().await;
    d.new_epoch(now);

    let sig = |k: SignalKind| signal(k).map_err(|e| format!("signal handler: {e}"));
    let mut sighup = sig(SignalKind::hangup())?;
    let mut sigterm = sig(SignalKind::terminate())?;
    let mut sigint = sig(SignalKind::interrupt())?;
    let mut sigusr1 = sig(SignalKind::user_defined1())?;
    let mut sigusr2 = sig(SignalKind::user_defined2())?;
    let monitor = nft::Monitor::new().ok();
    let addrwatch = AddrWatch::new().ok();
    log::info!("rupnpd {} started", crate::VERSION);

    loop {
        let deadline = d.clock.instant(d.next_deadline());
        let mut firewall_event = false;
        let mut wan_event = false;
        tokio::select! {
            Some(job) = http_rx.recv() => d.on_http(job),
            Some(dg) = udp_rx.recv() => d.on_datagram(dg),
            Some(done) = notify_rx.recv() => d.gena.delivered(&done.sid, done.ok),
            Some(m) = ubus_rx.recv() => d.on_ubus(m).await,
            Some((name, wan, st)) = netifd_rx.recv() => d.on_netifd_status(name, wan, &st).await,
            _ = tokio::time::sleep_until(deadline) => {}
            _ = sighup.recv() => {
                let _ = d.reload().await;
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            _ = sigusr1.recv() => wan_event = true,
            _ = sigusr2.recv() => firewall_event = true,
            r = async { match &monitor { Some(m) => m.foreign_commit().await, None => std::future::pending().await } } => {
                if r.is_ok() { firewall_event = true; }
            }
            r = async { match &addrwatch { Some(w) => w.changed().await, None => std::future::pending().await } } => {
                if r.is_ok() { wan_event = true; }
            }
        }
        for _ in 0..TURN_BATCH {
            match http_rx.try_recv() {
                Ok(job) => d.on_http(job),
                Err(_) => break,
            }
        }
        for _ in 0..TURN_BATCH {
            match udp_rx.try_recv() {
                Ok(dg) => d.on_datagram(dg),
                Err(_) => break,
            }
        }
        if firewall_event {
            d.check_firewall();
        }
        if wan_event {
            d.refresh_wan();
        }
        d.on_timers();
        d.commit();
    }
    d.shutdown().await;
    Ok(())
}
