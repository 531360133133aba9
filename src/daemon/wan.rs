//! Following the WAN and the LAN devices: what the kernel shows, corrected
//! by what netifd reports over ubus (it knows of a new address or a link
//! going down first).
//!
//! Owns: reading the devices and addresses (through `sys::netif`), asking
//! netifd, and the one path that applies a new view of the WAN
//! ([`Daemon::follow_wan`]) and the one that relearns the LANs
//! ([`Daemon::relearn_lans`]). What a view means is decided in
//! `core::wan` and `core::lan`.

use crate::config::Config;
use crate::core::lan::{Lan, Lans, serves_ipv6};
use crate::core::wan::{Closed, Link, Netifd, NetifdNews, WanChange};
use crate::proto::blob::Value;
use crate::sys::{netif, netifd};

use super::Daemon;

/// A status of logical interface `name` from netifd (`wan`: it is the WAN).
pub(super) struct NetifdStatus {
    pub name: String,
    pub wan: bool,
    pub data: Value,
}

/// The device of a logical interface (or device name) `name`: netifd's
/// answer, else a guess from the kernel's devices.
fn device(netifd: &Netifd, name: &str) -> Option<String> {
    netifd
        .device(name)
        .map(String::from)
        .or_else(|| netif::guess_device(name))
}

/// The WAN link as the kernel shows it: the configured interface (or the
/// one netifd reported), else the device of the default route.
fn read_link(cfg: &Config, netifd: &Netifd) -> Link {
    let dev = match netifd.wan_name(cfg.external_iface.as_deref()) {
        Some(name) => device(netifd, name).or_else(|| Some(name.to_string())),
        None => netif::default_route_dev(),
    };
    let addr = dev
        .as_deref()
        .and_then(|d| netif::ipv4_addrs(d).into_iter().next().map(|(a, _)| a));
    let up = dev.as_deref().is_some_and(netif::is_up) && addr.is_some();
    Link { dev, addr, up }
}

/// The LAN interfaces to serve, with their addresses; those without a
/// device or an IPv4 address are left out, with a warning.
pub(super) fn read_lans(cfg: &Config, netifd: &Netifd) -> Lans {
    let mut out: Vec<Lan> = Vec::new();
    for name in &cfg.internal_iface {
        let Some(dev) = device(netifd, name) else {
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
                .filter(|(a, _)| serves_ipv6(a))
                .collect()
        };
        out.push(Lan {
            dev,
            addr,
            nets: addrs,
            nets6,
            http_port: cfg.port,
        });
    }
    Lans::new(out)
}

impl Daemon {
    /// Reads the WAN, corrects it with netifd's view and applies it: a
    /// new external address starts a new NAT-PMP/PCP epoch (RFC 6887
    /// §8.5), and the STUN client follows the WAN address. With
    /// `firewall_now` the rules are reinstalled and the change announced
    /// at once; starting and reloading install themselves afterwards.
    pub(super) fn follow_wan(&mut self, firewall_now: bool) {
        let link = self.netifd.correct(read_link(&self.cfg, &self.netifd));
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

    /// Reads the LAN interfaces again and reopens their front ends (a
    /// reload changed them, or netifd moved one to another device).
    pub(super) fn relearn_lans(&mut self) {
        self.lans = read_lans(&self.cfg, &self.netifd);
        self.open_frontends();
        let now = self.now();
        self.ssdp.announce_soon(now);
    }

    /// netifd's status of a logical interface.
    pub(super) fn on_netifd_status(&mut self, st: NetifdStatus) {
        let Some(s) = netifd::parse_status(&st.data) else {
            return;
        };
        let addr = s.ipv4.first().map(|(a, _)| *a);
        match self
            .netifd
            .on_status(&st.name, st.wan, s.up, s.l3_device.as_deref(), addr)
        {
            NetifdNews::Wan => self.follow_wan(true),
            NetifdNews::LanDevice { name, dev } => {
                log::info!("netifd: LAN interface {name} is device {dev}");
                self.relearn_lans();
                let _ = self.install_setup("updating the firewall for new LAN devices");
            }
            NetifdNews::Nothing => {}
        }
    }

    /// A notification from `network.interface.<name>`.
    pub(super) fn on_interface(&mut self, object: &str, kind: &str, data: &Value) {
        let Some(name) = object.strip_prefix("network.interface.") else {
            return;
        };
        let data = match kind {
            "interface.update" => data.clone(),
            "interface.down" => Value::table().with("up", false),
            _ => return,
        };
        self.on_netifd_status(NetifdStatus {
            name: name.to_string(),
            wan: true,
            data,
        });
    }

    /// Asks netifd for the devices and addresses of the configured
    /// logical interfaces (or, with no WAN configured, for the interface
    /// holding the default route), and follows the WAN's notifications.
    pub(super) fn netifd_query(&mut self) {
        let Some(u) = self.ubus.clone() else {
            return;
        };
        let mut names: Vec<String> = self.cfg.internal_iface.clone();
        match &self.cfg.external_iface {
            Some(w) => {
                names.push(w.clone());
                u.subscribe(&format!("network.interface.{w}"));
            }
            None => {
                let tx = self.netifd_tx.clone();
                let u2 = u.clone();
                tokio::task::spawn_local(async move {
                    if let Ok(dump) = u2.call("network.interface", "dump", Value::table()).await {
                        if let Some((name, _)) = netifd::find_wan(&dump) {
                            let path = format!("network.interface.{name}");
                            u2.subscribe(&path);
                            if let Ok(data) = u2.call(&path, "status", Value::table()).await {
                                let st = NetifdStatus {
                                    name,
                                    wan: true,
                                    data,
                                };
                                let _ = tx.send(st).await;
                            }
                        }
                    }
                });
            }
        }
        for name in names {
            let tx = self.netifd_tx.clone();
            let u2 = u.clone();
            let wan = self.cfg.external_iface.as_deref() == Some(name.as_str());
            tokio::task::spawn_local(async move {
                let path = format!("network.interface.{name}");
                match u2.call(&path, "status", Value::table()).await {
                    Ok(data) => {
                        let _ = tx.send(NetifdStatus { name, wan, data }).await;
                    }
                    Err(s) => log::debug!("netifd: {path} status: {s:?}"),
                }
            });
        }
    }
}
