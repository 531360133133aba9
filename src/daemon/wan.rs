//! Following the WAN and the LAN devices. netifd says which device a
//! logical interface is on (`network.interface.<name> status` and its
//! notifications); the kernel says what addresses a device has and
//! corrects netifd's view of the WAN (it knows of a new address or a link
//! going down first). A configured name is resolved the same way at start
//! as after: netifd's answer; else, while netifd has said nothing about
//! that name, a device of that name (systems without netifd: Debian, the
//! tests, `--lan DEV`); else the interface waits for netifd, and the
//! daemon says so once.
//!
//! Owns: reading the devices and addresses (through `sys::netif`), asking
//! netifd, and the one path that applies a new view of the WAN
//! ([`Daemon::follow_wan`]) and the one that relearns the LANs
//! ([`Daemon::relearn_lans`]). What a view means is decided in
//! `core::wan` and `core::lan`.

use std::net::Ipv6Addr;

use crate::config::Config;
use crate::core::hairpin;
use crate::core::lan::{Lan, Lans, serves_ipv6};
use crate::core::wan::{Closed, Link, Netifd, NetifdNews, WanChange};
use crate::proto::blob::Value;
use crate::sys::netif;
use crate::sys::netifd::{self, IfaceStatus};

use super::{Daemon, files};

/// netifd's objects: `network.interface` (its notifications cover every
/// interface) and `network.interface.<name>`.
const NETIFD_OBJECT: &str = "network.interface";
/// The ubus event announcing a new object (netifd publishing its own).
const OBJECT_ADD_EVENT: &str = "ubus.object.add";

/// A status of logical interface `name` from netifd (`wan`: it is the WAN).
pub(super) struct NetifdStatus {
    pub name: String,
    pub wan: bool,
    pub data: Value,
}

/// Why a configured interface is not served; each is logged once, when it
/// starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Unserved {
    /// No device known for it: netifd has not reported it up, and no
    /// device has its name.
    WaitingForNetifd { name: String, wan: bool },
    /// Its device has no IPv4 address.
    NoAddress { name: String, dev: String },
}

impl Unserved {
    fn log(&self) {
        match self {
            Unserved::WaitingForNetifd { name, wan } => log::info!(
                "{} interface {name}: waiting for netifd to report its device",
                if *wan { "WAN" } else { "LAN" }
            ),
            Unserved::NoAddress { name, dev } => {
                log::warn!("LAN interface {name}: device {dev} has no IPv4 address; not serving it")
            }
        }
    }
}

/// The device of logical interface (or device name) `name`: netifd's
/// answer; else, if netifd has not reported on `name`, the device of that
/// name if there is one.
fn device(netifd: &Netifd, name: &str) -> Option<String> {
    if let Some(dev) = netifd.device(name) {
        return Some(dev.to_string());
    }
    (!netifd.knows(name) && netif::exists(name)).then(|| name.to_string())
}

/// The WAN link as the kernel shows it: the device of the configured
/// interface (or of the one netifd reported), else the device of the
/// default route.
fn read_link(cfg: &Config, netifd: &Netifd) -> Link {
    let dev = match netifd.wan_name(cfg.external_iface.as_deref()) {
        Some(name) => device(netifd, name),
        None => netif::default_route_dev(),
    };
    let addr = dev
        .as_deref()
        .and_then(|d| netif::ipv4_addrs(d).into_iter().next().map(|(a, _)| a));
    let up = dev.as_deref().is_some_and(netif::is_up) && addr.is_some();
    Link { dev, addr, up }
}

/// The global and unique-local IPv6 addresses of a device.
fn served_ipv6(dev: &str) -> Vec<(Ipv6Addr, u8)> {
    netif::ipv6_addrs(dev)
        .into_iter()
        .filter(|(a, _)| serves_ipv6(a))
        .collect()
}

/// The LAN interfaces to serve, with their addresses, and those left out
/// with the reason.
pub(super) fn read_lans(cfg: &Config, netifd: &Netifd) -> (Lans, Vec<Unserved>) {
    let mut out: Vec<Lan> = Vec::new();
    let mut unserved = Vec::new();
    for name in &cfg.internal_iface {
        let Some(dev) = device(netifd, name) else {
            unserved.push(Unserved::WaitingForNetifd {
                name: name.clone(),
                wan: false,
            });
            continue;
        };
        if out.iter().any(|l| l.dev == dev) {
            continue;
        }
        let addrs = netif::ipv4_addrs(&dev);
        let Some(&(addr, _)) = addrs.first() else {
            unserved.push(Unserved::NoAddress {
                name: name.clone(),
                dev,
            });
            continue;
        };
        let nets6 = if cfg.ipv6_disable {
            Vec::new()
        } else {
            served_ipv6(&dev)
        };
        out.push(Lan {
            dev,
            addr,
            nets: addrs,
            nets6,
            http_port: cfg.port,
        });
    }
    (Lans::new(out), unserved)
}

/// Logs the entries of `now` that are not in `before`.
fn log_new(before: &[Unserved], now: &[Unserved]) {
    for u in now.iter().filter(|u| !before.contains(u)) {
        u.log();
    }
}

impl Daemon {
    /// Reads the WAN, corrects it with netifd's view and applies it: a
    /// new external address starts a new NAT-PMP/PCP epoch (RFC 6887
    /// §8.5), and the STUN client follows the WAN address. With
    /// `firewall_now` the rules are reinstalled and the change announced
    /// at once; starting and reloading install themselves afterwards.
    pub(super) fn follow_wan(&mut self, firewall_now: bool) {
        let link = self.netifd.correct(read_link(&self.cfg, &self.netifd));
        let waiting = self
            .netifd
            .wan_name(self.cfg.external_iface.as_deref())
            .filter(|_| link.dev.is_none())
            .map(|name| Unserved::WaitingForNetifd {
                name: name.to_string(),
                wan: true,
            });
        self.note_unserved(true, waiting.into_iter().collect());
        let Some(change) = self.wan.update(link, self.cfg.external_ip) else {
            return;
        };
        let l = self.wan.link();
        log::info!(
            "WAN now {} address {}",
            l.dev.as_deref().unwrap_or("-"),
            l.addr
                .map(|a| a.to_string())
                .unwrap_or_else(|| "none".into())
        );
        let change = change.or(self.stun_follow_wan());
        self.apply_wan_change(change, false, "wan");
        if firewall_now {
            let _ = self.install_setup("updating firewall for the new WAN");
            self.send_status_event("wan");
        }
    }

    /// Follows the IPv6 prefixes of the WAN and the LANs (after an
    /// address change, once the LANs are read again): any change starts a
    /// new PCP epoch over IPv6, announced to [ff02::1]:5350 (the LANs'
    /// front ends follow their addresses through `relearn_lans`). With
    /// `ipv6_disable` nothing is followed.
    pub(super) fn follow_ipv6(&mut self) {
        if self.cfg.ipv6_disable {
            return;
        }
        let mut seen: Vec<_> = self.lans.iter().flat_map(|l| l.nets6.clone()).collect();
        if let Some(dev) = self.wan.link().dev.as_deref() {
            seen.extend(served_ipv6(dev));
        }
        if !self.wan.update_prefixes6(&seen) {
            return;
        }
        let shown: Vec<String> = self
            .wan
            .prefixes6()
            .iter()
            .map(|(a, n)| format!("{a}/{n}"))
            .collect();
        log::info!("IPv6 prefixes now [{}]", shown.join(", "));
        let now = self.now();
        self.epoch6.restart(now);
    }

    /// What a new view of the WAN (link, STUN, rules) means for the
    /// protocols: a new external address starts a new epoch (RFC 6886
    /// §3.6, RFC 6887 §8.5) and its announcements; mappings closing or
    /// opening again reach the core and the log. With `firewall_now` the
    /// firewall follows at once (the hairpin address, the STUN ports) and
    /// the change is announced on ubus.
    pub(super) fn apply_wan_change(&mut self, change: WanChange, firewall_now: bool, why: &str) {
        if change.external_changed {
            let now = self.now();
            self.epoch.restart(now);
        }
        if change.closed_changed {
            self.core.set_closed(self.wan.closed().map(Closed::short));
        }
        self.log_closed();
        if !firewall_now || !(change.external_changed || change.closed_changed) {
            return;
        }
        if self.nft_setup() != *self.nft.setup() {
            let _ = self.install_setup("updating the firewall for the new WAN view");
        }
        self.send_status_event(why);
    }

    /// One log line when new mappings become refused (why, and which
    /// switch helps) or allowed again; not while STUN is still finding
    /// out, so a WAN change that STUN answers at once logs nothing.
    fn log_closed(&mut self) {
        if self.stun.settling(self.now()) {
            return;
        }
        let closed = self.wan.closed();
        if closed == self.logged_closed {
            return;
        }
        match closed {
            Some(c) => log::warn!("{}", c.explain()),
            None => log::info!("new port mappings are allowed again"),
        }
        self.logged_closed = closed;
    }

    /// Reads the LAN interfaces again. If they changed, their front ends
    /// follow at the end of the turn, SSDP announces them, and the answer
    /// says whether their devices changed (the firewall rules name them).
    pub(super) fn relearn_lans(&mut self) -> bool {
        let (lans, unserved) = read_lans(&self.cfg, &self.netifd);
        self.note_unserved(false, unserved);
        if lans.same_interfaces(&self.lans) {
            return false;
        }
        let devs = |l: &Lans| l.iter().map(|l| l.dev.clone()).collect::<Vec<_>>();
        let devices_changed = devs(&lans) != devs(&self.lans);
        self.lans = lans;
        // The root UUID comes from the first LAN's MAC when none is
        // configured, so it is settled once a LAN is known.
        if self.device.uuid.is_empty() {
            if let Some(first) = self.lans.get(0) {
                self.device.uuid = files::default_uuid(&first.dev);
            }
        }
        self.fronts_stale = true;
        let now = self.now();
        self.ssdp.announce_soon(now);
        devices_changed
    }

    /// Keeps the reasons the WAN (`wan`) or the LANs are not served,
    /// logging those that are new.
    fn note_unserved(&mut self, wan: bool, fresh: Vec<Unserved>) {
        let is_wan = |u: &Unserved| matches!(u, Unserved::WaitingForNetifd { wan: true, .. });
        let (mine, others): (Vec<Unserved>, Vec<Unserved>) = std::mem::take(&mut self.unserved)
            .into_iter()
            .partition(|u| is_wan(u) == wan);
        log_new(&mine, &fresh);
        self.unserved = others;
        self.unserved.extend(fresh);
    }

    /// netifd's status of a logical interface.
    pub(super) fn on_netifd_status(&mut self, st: NetifdStatus) {
        let Some(s) = netifd::parse_status(&st.data) else {
            return;
        };
        let addr = s.ipv4.first().map(|(a, _)| *a);
        let news = self
            .netifd
            .on_status(&st.name, st.wan, s.up, s.l3_device.as_deref(), addr);
        match news {
            NetifdNews::Wan => self.follow_wan(true),
            NetifdNews::LanDevice { name, dev } => {
                log::info!("netifd: LAN interface {name} is device {dev}");
                self.lan_status();
            }
            // The first report of a LAN ends the use of a device of its
            // name (see `device`).
            NetifdNews::Nothing => self.lan_status(),
        }
    }

    /// Follows the LAN devices: the firewall rules name them, and a new
    /// bridge may keep a host from its own mapping.
    pub(super) fn lan_status(&mut self) {
        if self.relearn_lans() {
            let _ = self.install_setup("updating the firewall for new LAN devices");
            self.check_hairpin_self(false);
        }
    }

    /// Finds out whether a LAN host can reach its own mapping through the
    /// external address (`core::hairpin`). One warning line when it
    /// cannot: at start and on reload (`again`) whenever so, otherwise
    /// when that changes.
    pub(super) fn check_hairpin_self(&mut self, again: bool) {
        let facts = netif::bridge_facts(self.lans.iter().map(|l| l.dev.as_str()));
        let found = hairpin::self_blocked(self.cfg.hairpin, &facts);
        match &found {
            Some(b) if again || self.hairpin_self.as_ref() != Some(b) => {
                log::warn!("hairpin: {}", b.explain());
            }
            None if self.hairpin_self.is_some() && self.cfg.hairpin => {
                log::info!("hairpin: every LAN host reaches its own mappings again");
            }
            _ => {}
        }
        self.hairpin_self = found;
    }

    /// Whether interface `name` is the WAN (`Some(true)`), a LAN
    /// (`Some(false)`) or none of ours. With no WAN configured or found
    /// yet, an interface with an IPv4 default route is the WAN, as
    /// `network_find_wan` picks it.
    fn netifd_role(&self, name: &str, status: Option<&IfaceStatus>) -> Option<bool> {
        let wan = match self.netifd.wan_name(self.cfg.external_iface.as_deref()) {
            Some(w) => w == name,
            None => status.is_some_and(|s| {
                s.has_default_route4 && name != "loopback" && s.l3_device.as_deref() != Some("lo")
            }),
        };
        if wan {
            Some(true)
        } else {
            self.cfg
                .internal_iface
                .iter()
                .any(|n| n == name)
                .then_some(false)
        }
    }

    /// A notification from `network.interface` (about the interface its
    /// `interface` field names) or from `network.interface.<name>`.
    pub(super) fn on_interface(&mut self, object: &str, kind: &str, data: &Value) {
        let name = match object.strip_prefix(NETIFD_OBJECT) {
            Some("") => netifd::interface_name(data),
            Some(rest) => rest.strip_prefix('.'),
            None => None,
        };
        let Some(name) = name else {
            return;
        };
        let data = match kind {
            "interface.update" => data.clone(),
            "interface.down" => Value::table().with("up", false),
            _ => return,
        };
        let Some(wan) = self.netifd_role(name, netifd::parse_status(&data).as_ref()) else {
            return;
        };
        self.on_netifd_status(NetifdStatus {
            name: name.to_string(),
            wan,
            data,
        });
    }

    /// Follows netifd from now on: its notifications about every
    /// interface, and its objects appearing (netifd starting after us).
    pub(super) fn follow_netifd(&self) {
        if let Some(u) = &self.ubus {
            u.subscribe(NETIFD_OBJECT);
            u.listen(OBJECT_ADD_EVENT);
        }
    }

    /// An object appeared on ubus: netifd's root object (netifd started)
    /// or one of the interfaces we serve.
    pub(super) fn on_ubus_object(&mut self, path: &str) {
        match path.strip_prefix(NETIFD_OBJECT) {
            Some("") => self.netifd_query(),
            Some(rest) => {
                let Some(name) = rest.strip_prefix('.') else {
                    return;
                };
                if let Some(wan) = self.netifd_role(name, None) {
                    self.ask_netifd(name, wan);
                }
            }
            None => {}
        }
    }

    /// Asks netifd for the status of the configured logical interfaces
    /// (or, with no WAN configured, for the interface holding the default
    /// route).
    pub(super) fn netifd_query(&mut self) {
        let Some(u) = self.ubus.clone() else {
            return;
        };
        for name in &self.cfg.internal_iface {
            self.ask_netifd(name, false);
        }
        match self.netifd.wan_name(self.cfg.external_iface.as_deref()) {
            Some(w) => self.ask_netifd(w, true),
            None => {
                let tx = self.netifd_tx.clone();
                crate::sys::task::spawn_local(async move {
                    let Ok(dump) = u.call(NETIFD_OBJECT, "dump", Value::table()).await else {
                        return;
                    };
                    if let Some((name, _)) = netifd::find_wan(&dump) {
                        let path = format!("{NETIFD_OBJECT}.{name}");
                        if let Ok(data) = u.call(&path, "status", Value::table()).await {
                            let st = NetifdStatus {
                                name,
                                wan: true,
                                data,
                            };
                            let _ = tx.send(st).await;
                        }
                    }
                });
            }
        }
    }

    /// Asks netifd for the status of interface `name`; the answer comes
    /// back to the loop as a [`NetifdStatus`].
    fn ask_netifd(&self, name: &str, wan: bool) {
        let Some(u) = self.ubus.clone() else {
            return;
        };
        let tx = self.netifd_tx.clone();
        let name = name.to_string();
        crate::sys::task::spawn_local(async move {
            let path = format!("{NETIFD_OBJECT}.{name}");
            match u.call(&path, "status", Value::table()).await {
                Ok(data) => {
                    let _ = tx.send(NetifdStatus { name, wan, data }).await;
                }
                // Not there (yet): netifd publishing it is an event.
                Err(s) => log::debug!("netifd: {path} status: {s:?}"),
            }
        });
    }
}
