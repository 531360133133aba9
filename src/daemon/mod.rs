//! The one event loop: sockets, signals, timers and firewall notifications
//! in; the core's decisions out to nftables, the network and the logs.
//!
//! Owns: [`Daemon`] and the loop turn. Each turn hands whatever events are
//! ready (a bounded number) to the core, then commits the core's changes
//! to the firewall as one transaction, and only then sends the replies
//! that depended on them, rewrites the lease files and logs. No protocol
//! decision is made here; the jobs are split by file:
//!
//! * `frontends.rs`: the sockets and tasks of each LAN (HTTP, SSDP,
//!   NAT-PMP/PCP), carrying requests to the core and its bytes back;
//! * `wan.rs`: following the WAN and the LAN devices (kernel and netifd),
//!   through one path that applies a new view;
//! * `commit.rs`: the end of a turn: firewall transaction, lease files,
//!   replies, events and log lines;
//! * `api.rs`: the ubus object `rupnpd`;
//! * `files.rs`: reading the configuration and the lease files.

mod api;
mod commit;
mod files;
mod frontends;
mod stun;
mod wan;

use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use files::load_config;

use crate::config::Config;
use crate::config::firewall::PortClaim;
use crate::config::load::Overrides;
use crate::core::Core;
use crate::core::device::Device;
use crate::core::hairpin::SelfBlocked;
use crate::core::lan::Lans;
use crate::core::loglimit::LogLimit;
use crate::core::natpmp_pcp::{self, Epoch};
use crate::core::pinhole::PinPolicy;
use crate::core::policy::Policy;
use crate::core::ssdp::Ssdp;
use crate::core::table::Millis;
use crate::core::wan::{Closed, Netifd, Wan};
use crate::core::web::Web;
use crate::sys::facts::Kernel;
use crate::sys::http::Job;
use crate::sys::netif::{AddrWatch, Probe};
use crate::sys::nft::{self, Look, Nft, Setup};
use crate::sys::udp::Datagram;
use crate::sys::{notify, ubus};

use api::UciWrites;
use commit::Deferred;
use frontends::FrontEnds;
use stun::Stun;
use wan::{NetifdStatus, Unserved};

/// Most events handled in one loop turn before committing.
const TURN_BATCH: usize = 128;

/// How long the loop waits after a foreign nftables transaction (or fw4's
/// SIGUSR2) before checking the firewall, so that a burst of them (a fw4
/// restart is two, dnsmasq and banIP commit in runs) costs one check.
const FIREWALL_SETTLE: Millis = 250;

/// How often the neighbour tables are read for absent hosts: a quarter of
/// `absent_host_timeout`, within 1–60 s (one netlink dump per period,
/// only while something is mapped).
fn sweep_period(timeout_secs: u32) -> Millis {
    (Millis::from(timeout_secs) * 250).clamp(1_000, 60_000)
}

/// Command-line options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub config_dir: Option<PathBuf>,
    pub ubus_socket: Option<PathBuf>,
    /// Log to stderr only.
    pub stderr: bool,
    /// What the flags override in the configuration.
    pub flags: Overrides,
}

/// The monotonic clock the core's `Millis` are measured on, from the
/// daemon's start.
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

/// The loop's state: the core and the protocol state beside it, and the
/// adapters it carries their bytes and changes through.
pub struct Daemon {
    opts: Options,
    cfg: Config,
    clock: Clock,
    core: Core,
    device: Device,
    lans: Lans,
    wan: Wan,
    netifd: Netifd,
    web: Web,
    ssdp: Ssdp,
    natpmp_pcp: natpmp_pcp::Settings,
    /// The NAT-PMP/PCP epoch over IPv4 (restarts with the external
    /// address) and PCP's over IPv6 (restarts with an IPv6 prefix).
    epoch: Epoch,
    epoch6: Epoch,
    nft: Nft,
    /// The kernel facts' netlink sockets, kept from request to request.
    probe: Probe,
    /// Ports `/etc/config/firewall` opens itself.
    claims: Vec<PortClaim>,
    leases: files::Leases,
    /// When the neighbour tables are next read for absent hosts.
    next_sweep: Millis,
    /// When the firewall is next checked after foreign changes.
    firewall_check_at: Option<Millis>,
    /// `/etc/config/firewall` as last read, to read it again only when it
    /// changed.
    claims_stamp: Option<files::Stamp>,
    /// The warnings of refused requests, bounded.
    refusals: LogLimit,
    /// `ubus set`'s writes of the configuration, off the loop.
    uci: UciWrites,
    /// Replies waiting for the turn's firewall transaction.
    deferred: Vec<Deferred>,
    fronts: FrontEnds,
    /// The configuration or the LANs changed: the front ends follow at the
    /// end of the turn ([`Daemon::sync_frontends`]).
    fronts_stale: bool,
    notify_tx: mpsc::Sender<notify::Done>,
    ubus: Option<ubus::Handle>,
    netifd_tx: mpsc::Sender<NetifdStatus>,
    /// The configured interfaces not served, and why (each logged once).
    unserved: Vec<Unserved>,
    stun: Stun,
    /// Why new mappings were refused when that was last logged.
    logged_closed: Option<Closed>,
    /// Why a LAN host cannot reach its own mapping through the external
    /// address, as last found (`check_hairpin_self`).
    hairpin_self: Option<SelfBlocked>,
}

impl Daemon {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    /// What the firewall rules depend on.
    fn nft_setup(&self) -> Setup {
        Setup {
            wan_dev: self.wan.link().dev.clone(),
            lan_devs: self.lans.iter().map(|l| l.dev.clone()).collect(),
            ext_addr: self.wan.nat_addr(),
            public_addr: self.wan.public_addr(),
            stun: self.stun.listening(),
            hairpin: self.cfg.hairpin,
            log_packets: self.cfg.log_packets,
            log_connections: self.cfg.log_connections,
        }
    }

    /// Reinstalls the rules for the current setup, and every mapping and
    /// pinhole; `what` names the occasion in the error.
    fn install_setup(&mut self, what: &str) -> Result<(), String> {
        self.nft.set_setup(self.nft_setup());
        let now = self.now();
        self.core
            .reinstall(&mut self.nft, now)
            .inspect_err(|e| log::error!("{what}: {e}"))
    }

    /// SIGHUP / ubus reload: reads the configuration again and applies
    /// it; an invalid one is logged and refused (its errors returned), and
    /// the running one stays.
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
        self.apply_config(cfg);
        Ok(())
    }

    /// The root device UUID the configuration asks for: `uuid`, else one
    /// derived from the first LAN device's MAC address.
    fn wanted_uuid(&self) -> String {
        self.cfg
            .uuid
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(|| self.lans.get(0).map(|l| files::default_uuid(&l.dev)))
            .unwrap_or_else(|| self.device.uuid.clone())
    }

    /// Applies a new configuration without dropping leases; those the new
    /// rules or limits forbid are removed, each with a log line. Every
    /// setting read takes effect, except the nftables names, which would
    /// move every rule and element: they wait for a restart, and the log
    /// says so.
    fn apply_config(&mut self, mut cfg: Config) {
        if cfg.nft != self.cfg.nft {
            log::warn!(
                "reload: nft_table and the nft_*_chain names take effect at the next restart; \
the running rules stay in table inet {}",
                self.cfg.nft.table
            );
            cfg.nft = self.cfg.nft.clone();
        }
        let old = std::mem::replace(&mut self.cfg, cfg);
        crate::sys::syslog::set_debug(self.cfg.log_output);
        let cfg = &self.cfg;
        self.device.reconfigure(cfg);
        self.web.set_limits(
            cfg.max_subscribers as usize,
            cfg.max_subscribers_per_client as usize,
        );
        self.ssdp.set_enabled(cfg.enabled && cfg.enable_upnp);
        self.natpmp_pcp = natpmp_pcp::Settings::from_config(cfg);
        let change = self.configure_stun();
        self.apply_wan_change(change, false, "reload");
        self.follow_wan(false);
        self.claims = self.read_claims();
        self.core
            .set_policy(Policy::from_config(&self.cfg, self.claims.clone()));
        self.core.set_pin_policy(PinPolicy::from_config(&self.cfg));
        let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
        self.core.enforce_pinholes(&facts);
        if !self.cfg.enabled {
            if old.enabled {
                self.announce(false);
            }
            self.core.flush("service disabled");
            self.web.clear();
        } else {
            let removed = self.core.enforce(&facts);
            if removed > 0 {
                log::info!("reload removed {removed} mappings the new configuration forbids");
            }
        }
        let frontends_changed = old.enabled != self.cfg.enabled
            || old.enable_upnp != self.cfg.enable_upnp
            || old.enable_natpmp != self.cfg.enable_natpmp
            || old.enable_pcp != self.cfg.enable_pcp
            || old.port != self.cfg.port
            || old.internal_iface != self.cfg.internal_iface
            || old.ipv6_disable != self.cfg.ipv6_disable;
        if frontends_changed {
            if old.enabled && self.cfg.enabled && old.enable_upnp {
                self.announce(false);
            }
            self.fronts_stale = true;
            let now = self.now();
            self.ssdp.announce_soon(now);
        }
        self.relearn_lans();
        if old.internal_iface != self.cfg.internal_iface
            || old.external_iface != self.cfg.external_iface
        {
            self.netifd_query();
        }
        let uuid = self.wanted_uuid();
        if uuid != self.device.uuid {
            // the old identity leaves, the new one is announced
            if self.cfg.enabled && self.cfg.enable_upnp {
                self.announce(false);
            }
            log::info!("device UUID now {uuid}");
            self.device.uuid = uuid;
            let now = self.now();
            self.ssdp.announce_soon(now);
        }
        let _ = self.install_setup("reload: reinstalling the firewall rules failed");
        self.check_hairpin_self(true);
        log::info!("configuration reloaded");
    }

    /// A foreign nftables transaction touched our table, or fw4 says it
    /// reloaded: the firewall is checked once the burst has settled.
    fn firewall_soon(&mut self) {
        let now = self.now();
        self.firewall_check_at.get_or_insert(now + FIREWALL_SETTLE);
    }

    /// `/etc/config/firewall`'s port claims, read now.
    fn read_claims(&mut self) -> Vec<PortClaim> {
        self.claims_stamp = files::firewall_stamp(&self.opts);
        files::firewall_claims(&self.opts, &self.cfg, self.wan.link().dev.as_deref())
    }

    /// After a firewall reload (fw4's include, or a foreign nftables
    /// commit): its configuration may have changed, so the ports it opens
    /// itself are read again, then the elements are restored if the
    /// reload removed them.
    fn check_firewall(&mut self) {
        let was_down = self.core.firewall_down();
        match self.nft.look() {
            Look::Stopped => {
                if !was_down {
                    log::warn!(
                        "firewall stopped (table inet {} is gone): keeping {} mappings and {} pinholes \
for when it starts again, refusing new ones until then",
                        self.cfg.nft.table,
                        self.core.table().len(),
                        self.core.pinholes().len()
                    );
                    self.core.set_firewall_down(true);
                    self.send_status_event("firewall");
                }
                return;
            }
            Look::Intact => {}
            Look::Damaged if was_down => self.restore_firewall("firewall started again"),
            Look::Damaged => self.restore_firewall("firewall was reloaded"),
        }
        if was_down {
            self.core.set_firewall_down(false);
            self.send_status_event("firewall");
        }
        self.refresh_claims();
    }

    /// The `nft` command finished a transaction off the loop.
    fn on_nft_done(&mut self, done: nft::CmdDone) {
        match (done.then, done.result) {
            (nft::Then::Elements, Ok(())) => {
                let now = self.now();
                if let Err(e) = self.core.reinstall(&mut self.nft, now) {
                    log::error!("installing mappings after the nft command: {e}");
                }
            }
            (nft::Then::Elements, Err(e)) => {
                log::error!("installing the firewall rules with the nft command: {e}");
            }
            (nft::Then::HooksHandedOver, r) => nft::log_hand_over(r),
        }
    }

    fn restore_firewall(&mut self, why: &str) {
        let t = std::time::Instant::now();
        let now = self.now();
        match self.core.reinstall(&mut self.nft, now) {
            Ok(()) => log::info!(
                "{why}: reinstalled {} mappings and {} pinholes in {} ms",
                self.core.table().len(),
                self.core.pinholes().len(),
                t.elapsed().as_millis()
            ),
            Err(e) => log::error!("{why}: reinstalling mappings failed: {e}"),
        }
    }

    /// Re-reads the port claims of `/etc/config/firewall`; mappings on a
    /// port the firewall now opens itself are removed, each logged.
    fn refresh_claims(&mut self) {
        let stamp = files::firewall_stamp(&self.opts);
        if stamp.is_some() && stamp == self.claims_stamp {
            return;
        }
        let claims = self.read_claims();
        if claims == self.claims {
            return;
        }
        log::info!(
            "firewall configuration changed: {} port claims from redirects and rules",
            claims.len()
        );
        self.claims = claims;
        self.core
            .set_policy(Policy::from_config(&self.cfg, self.claims.clone()));
        let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
        let removed = self.core.enforce(&facts);
        if removed > 0 {
            log::info!(
                "firewall configuration changed: removed {removed} mappings it now conflicts with"
            );
        }
    }

    /// Whether absent hosts are swept: the option is on and something is
    /// mapped.
    fn sweeping(&self) -> bool {
        self.cfg.absent_host_timeout > 0
            && !(self.core.table().is_empty() && self.core.pinholes().is_empty())
    }

    fn next_deadline(&self) -> Millis {
        [
            self.core.next_deadline(),
            self.epoch.next_deadline(),
            self.epoch6.next_deadline(),
            self.web.next_deadline(),
            self.sweeping().then_some(self.next_sweep),
            self.firewall_check_at,
            self.refusals.next_deadline(),
            self.stun.next_deadline(),
            self.leases.sync_due(),
        ]
        .into_iter()
        .flatten()
        .fold(self.ssdp.next_deadline(), Millis::min)
    }

    fn on_timers(&mut self) {
        let now = self.now();
        if self.firewall_check_at.is_some_and(|t| t <= now) {
            self.firewall_check_at = None;
            self.check_firewall();
        }
        self.log_refusal_summary(now, false);
        self.core.expire(now);
        if self.sweeping() && now >= self.next_sweep {
            let timeout = self.cfg.absent_host_timeout;
            self.next_sweep = now + sweep_period(timeout);
            let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
            self.core
                .sweep_absent(&facts, now, Millis::from(timeout) * 1000);
        }
        self.stun_timers(now);
        self.send_search_replies(now);
        self.send_announcements(now);
        self.send_notifications(now);
        if self.ssdp.notify_due(&self.device, now) {
            self.announce(true);
        }
    }

    fn shutdown(&mut self) {
        let now = self.now();
        self.log_refusal_summary(now, true);
        log::info!("stopping: sending byebye and removing our firewall rules");
        self.announce(false);
        self.fronts.close_all();
        self.nft.teardown();
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit code.
pub fn run(opts: Options) -> i32 {
    crate::sys::mem::tune_allocator();
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
    // On the heap: the loop's state is large, and every move of it down
    // block_on's calls would leave a copy in the stack's resident pages.
    local.block_on(
        &rt,
        Box::pin(async move {
            match main_loop(opts).await {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("{e}");
                    1
                }
            }
        }),
    )
}

/// The signals the daemon acts on.
#[derive(Debug, Clone, Copy)]
enum Sig {
    /// SIGHUP: reload the configuration.
    Hup,
    /// SIGTERM, SIGINT: stop cleanly.
    Stop,
    /// SIGUSR1: the WAN changed.
    Usr1,
    /// SIGUSR2: the firewall was reloaded.
    Usr2,
}

/// The signals as one channel, fed by a task of their own: the loop
/// then waits on one future for all of them, instead of making five
/// anew every turn (a tenth of a small request's instructions).
fn signals() -> Result<mpsc::Receiver<Sig>, String> {
    let sig = |k: SignalKind| signal(k).map_err(|e| format!("signal handler: {e}"));
    let mut hup = sig(SignalKind::hangup())?;
    let mut term = sig(SignalKind::terminate())?;
    let mut int = sig(SignalKind::interrupt())?;
    let mut usr1 = sig(SignalKind::user_defined1())?;
    let mut usr2 = sig(SignalKind::user_defined2())?;
    let (tx, rx) = mpsc::channel(8);
    crate::sys::task::spawn_local(async move {
        loop {
            let s = tokio::select! {
                _ = hup.recv() => Sig::Hup,
                _ = term.recv() => Sig::Stop,
                _ = int.recv() => Sig::Stop,
                _ = usr1.recv() => Sig::Usr1,
                _ = usr2.recv() => Sig::Usr2,
            };
            if tx.send(s).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

async fn main_loop(opts: Options) -> Result<(), String> {
    let (cfg, warnings) = load_config(&opts).map_err(|e| e.join("; "))?;
    for w in warnings {
        log::warn!("{w}");
    }
    let clock = Clock {
        start: Instant::now(),
    };
    crate::sys::syslog::set_debug(cfg.log_output);
    // Without a configured UUID, the first LAN's MAC gives it, once a
    // LAN is known (`Daemon::relearn_lans`).
    let uuid = cfg.uuid.clone().unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let server: Rc<str> =
        format!("Linux/{} UPnP/1.1 rupnpd/{}", kernel.trim(), crate::VERSION).into();
    let (http_tx, mut http_rx) = mpsc::channel::<Job>(64);
    let (udp_tx, mut udp_rx) = mpsc::channel::<Datagram>(256);
    let (notify_tx, mut notify_rx) = mpsc::channel::<notify::Done>(64);
    let (netifd_tx, mut netifd_rx) = mpsc::channel(16);
    let (stun_tx, mut stun_rx) = mpsc::channel(16);
    let (ubus, mut ubus_rx) = ubus::spawn(opts.ubus_socket.clone(), api::object_spec());
    let nft = Nft::open(cfg.nft.clone(), Setup::default())?;
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
    let boot_id = (unix_now() & 0x7fff_ffff) as u32;
    let seed = (unix_now() as u32) ^ (std::process::id() << 16);
    let mut d = Daemon {
        core: Core::new(Policy::default(), PinPolicy::from_config(&cfg)),
        device: Device::new(&cfg, uuid, boot_id, server.clone()),
        lans: Lans::default(),
        wan: Wan::new(cfg.external_ip),
        netifd: Netifd::default(),
        web: Web::new(
            cfg.max_subscribers as usize,
            cfg.max_subscribers_per_client as usize,
        ),
        ssdp: Ssdp::new(cfg.enabled && cfg.enable_upnp, 0, seed),
        natpmp_pcp: natpmp_pcp::Settings::from_config(&cfg),
        epoch: Epoch::default(),
        epoch6: Epoch::default(),
        nft,
        probe: Probe::default(),
        claims: Vec::new(),
        leases: files::Leases::default(),
        next_sweep: 0,
        firewall_check_at: None,
        claims_stamp: None,
        refusals: LogLimit::new("refused requests"),
        uci: UciWrites::default(),
        deferred: Vec::new(),
        fronts: FrontEnds::new(http_tx, udp_tx, server),
        fronts_stale: true,
        notify_tx,
        ubus: Some(ubus),
        netifd_tx,
        unserved: Vec::new(),
        stun: Stun::new(stun_tx),
        logged_closed: None,
        hairpin_self: None,
        opts,
        clock,
        cfg,
    };
    // At start as after: netifd's devices when it answers (its answers
    // and notifications come through the loop), devices of the configured
    // names until then.
    d.follow_netifd();
    let change = d.configure_stun();
    d.apply_wan_change(change, false, "start");
    d.follow_wan(false);
    d.relearn_lans();
    d.follow_ipv6();
    d.claims = d.read_claims();
    d.core
        .set_policy(Policy::from_config(&d.cfg, d.claims.clone()));
    let restored = d.restore_leases();
    let now = d.now();
    // Without libnftables the structure goes in through the nft command
    // first, awaited: nothing is served yet.
    d.nft.set_setup(d.nft_setup());
    d.nft
        .settle()
        .await
        .map_err(|e| format!("cannot install the firewall structure: {e}"))?;
    // Installs exactly the restored table: anything a previous instance
    // left in the kernel that no lease owns is removed here.
    d.install_setup("installing the firewall")
        .map_err(|e| format!("cannot install the firewall structure: {e}"))?;
    if restored > 0 {
        log::info!("restored {restored} mappings from the lease file");
    }
    for ev in d.core.take_events() {
        d.log_event(&ev, now);
    }
    d.write_leases(None);
    log::info!("firewall ready: {}", nft::describe(d.nft.setup()));
    d.check_hairpin_self(true);
    d.sync_frontends().await;
    d.epoch.restart(now);
    d.epoch6.restart(now);

    let mut signals = signals()?;
    let mut monitor = nft::Monitor::new(&d.cfg.nft.table).ok();
    let mut addrwatch = AddrWatch::new().ok();
    log::info!("rupnpd {} started", crate::VERSION);

    loop {
        let deadline = d.clock.instant(d.next_deadline());
        let mut firewall_event = false;
        let mut wan_event = false;
        tokio::select! {
            Some(job) = http_rx.recv() => d.on_http(job),
            Some(dg) = udp_rx.recv() => d.on_datagram(dg),
            Some(done) = notify_rx.recv() => d.web.delivered(&done.sid, done.ok),
            Some(m) = ubus_rx.recv() => d.on_ubus(m).await,
            Some(st) = netifd_rx.recv() => d.on_netifd_status(st),
            Some(input) = stun_rx.recv() => d.on_stun(input),
            _ = tokio::time::sleep_until(deadline) => {}
            Some(sig) = signals.recv() => match sig {
                Sig::Hup => {
                    let _ = d.reload().await;
                }
                Sig::Stop => break,
                Sig::Usr1 => {
                    wan_event = true;
                    d.stun_check_now();
                }
                Sig::Usr2 => firewall_event = true,
            },
            r = async { match &mut monitor { Some(m) => m.foreign_commit().await, None => std::future::pending().await } } => {
                if r.is_ok() { firewall_event = true; }
            }
            r = async { match &mut addrwatch { Some(w) => w.changed().await, None => std::future::pending().await } } => {
                if r.is_ok() { wan_event = true; }
            }
            done = d.nft.cmd_done() => d.on_nft_done(done),
            written = d.uci.done() => d.on_uci_written(written),
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
            d.firewall_soon();
        }
        if wan_event {
            d.follow_wan(true);
            // A LAN device may have appeared or got its address.
            d.lan_status();
            d.follow_ipv6();
        }
        // Before the timers (announcements go out on the new sockets) and
        // the commit (a `set` is answered once its front ends follow).
        if d.fronts_stale {
            d.sync_frontends().await;
        }
        d.on_timers();
        d.commit();
    }
    d.nft.finish().await;
    d.shutdown();
    Ok(())
}
