//! The files the daemon reads and writes: the UCI packages `upnpd` and
//! `firewall`, the LAN device's MAC for a stable UUID, and the lease
//! files. What they mean is decided in `config` and `core::persist`.

use crate::config::Config;
use crate::config::firewall::{PortClaim, claims, wan_zones};
use crate::config::load::assemble;
use crate::config::uci::{Loaded, from_uci};
use crate::core::device::uuid_from_mac;
use crate::core::persist::{self, LeaseFile, LeaseWrite};
use crate::core::table::Millis;
use crate::sys::facts::Kernel;
use crate::sys::{leasefile, uci};

use super::{Daemon, Options, unix_now};
use std::path::Path;

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
    let loaded = match uci::load(&dirs, "upnpd") {
        Ok((pkg, _)) => from_uci(&pkg)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Loaded {
            config: Config::default(),
            warnings: vec![format!("{e}; using the built-in defaults")],
        },
        Err(e) => return Err(vec![e.to_string()]),
    };
    let firewall = || uci::load(&dirs, "firewall").ok().map(|(fw, _)| fw);
    let l = assemble(loaded, &opts.flags, firewall);
    Ok((l.config, l.warnings))
}

/// What tells whether a file changed without reading it: modification
/// time, size and inode (`uci commit` replaces the file, so a new inode).
pub type Stamp = (std::time::SystemTime, u64, u64);

/// The [`Stamp`] of the `firewall` package's file; `None` if it cannot
/// be read (then it is read every time).
pub fn firewall_stamp(opts: &Options) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let path = uci_dirs(opts).path("firewall").ok()?;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Ports that `/etc/config/firewall` already opens from the WAN zone.
pub fn firewall_claims(opts: &Options, cfg: &Config, wan_dev: Option<&str>) -> Vec<PortClaim> {
    match uci::load(&uci_dirs(opts), "firewall") {
        Ok((fw, _)) => {
            let nets: Vec<&str> = cfg.external_iface.iter().map(String::as_str).collect();
            let zones = wan_zones(&fw, &nets, wan_dev);
            let claims = claims(&fw, &zones);
            log::debug!(
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

/// A stable root UUID when none is configured, from the first LAN
/// device's MAC address.
pub fn default_uuid(dev: &str) -> String {
    uuid_from_mac(
        &std::fs::read_to_string(format!("/sys/class/net/{dev}/address")).unwrap_or_default(),
    )
}

impl Daemon {
    /// Restores the mappings and pinholes of the lease files, re-validated
    /// against the current policy. Returns how many mappings.
    pub(super) fn restore_leases(&mut self) -> usize {
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
        let text6 = self
            .cfg
            .upnp_lease_file6
            .as_ref()
            .map(|p| leasefile::read(p).unwrap_or_default());
        let now = self.now();
        let facts = Kernel::new(&self.wan, &mut self.nft, &mut self.probe);
        let r = persist::restore(
            &mut self.core,
            &self.lans,
            Some(&text),
            text6.as_deref(),
            now,
            unix_now(),
            &facts,
        );
        for b in r.bad_lines.iter().take(10) {
            log::warn!("lease file {}: {b:?}", path.display());
        }
        for (addr, port, why) in &r.off_lan {
            log::warn!("lease for {addr}:{port} dropped: the address is {why}");
        }
        r.mappings
    }

    /// Brings the lease files up to date with the turn's changes (`None`:
    /// everything): the IPv4 file through its in-place writes
    /// (`core::persist::LeaseFile`), the IPv6 file whole when a pinhole
    /// changed. Before any reply of the turn leaves.
    pub(super) fn write_leases(&mut self, changes: Option<(&[crate::core::table::Change], bool)>) {
        let now = self.now();
        let wall = unix_now();
        let (restarted, write) = self.leases.file.update(
            self.core.table(),
            changes.map(|c| c.0),
            now,
            wall,
            self.cfg.upnp_lease_file.is_some(),
        );
        if let Some(path) = &self.cfg.upnp_lease_file {
            let w = Leases::writer(&mut self.leases.v4, path);
            let text = self.leases.file.text().as_bytes();
            let r = match write {
                LeaseWrite::Unchanged => Ok(()),
                LeaseWrite::Whole => w.replace(text),
                LeaseWrite::Patch { from, patches } => w.patch(text, from, &patches, now),
            };
            if let Err(e) = r {
                log::error!("writing lease file: {e}");
            }
        }
        let pins_changed = restarted || changes.is_some_and(|c| c.1);
        if let Some(path6) = self.cfg.upnp_lease_file6.as_ref().filter(|_| pins_changed) {
            let text = persist::pinhole_file(self.core.pinholes(), now, wall);
            if let Err(e) = Leases::writer(&mut self.leases.v6, path6).replace(text.as_bytes()) {
                log::error!("writing IPv6 lease file: {e}");
            }
        }
    }

    /// Syncs the lease files kept on flash once their time has come.
    pub(super) fn sync_leases(&mut self) {
        let now = self.now();
        for w in [&mut self.leases.v4, &mut self.leases.v6]
            .into_iter()
            .flatten()
        {
            if let Err(e) = w.sync_if_due(now) {
                log::error!("syncing lease file: {e}");
            }
        }
    }
}

/// The lease files: the IPv4 file's text and line index, and the writers
/// of both files.
#[derive(Default)]
pub(super) struct Leases {
    file: LeaseFile,
    v4: Option<leasefile::Writer>,
    v6: Option<leasefile::Writer>,
}

impl Leases {
    /// The writer of `path`: a new one if the path changed (a reload), so
    /// the first write there is a whole one.
    fn writer<'a>(
        slot: &'a mut Option<leasefile::Writer>,
        path: &Path,
    ) -> &'a mut leasefile::Writer {
        if slot.as_ref().is_none_or(|w| w.path() != path) {
            *slot = Some(leasefile::Writer::new(path));
        }
        slot.get_or_insert_with(|| leasefile::Writer::new(path))
    }

    /// When a change on flash is due to be synced (the daemon's clock).
    pub(super) fn sync_due(&self) -> Option<Millis> {
        [&self.v4, &self.v6]
            .into_iter()
            .flatten()
            .filter_map(leasefile::Writer::sync_due)
            .min()
    }
}
