//! The Internet Gateway Device as configured: its identity (UUID, BOOTID,
//! CONFIGID, SERVER), what its descriptions say, which IGD version a
//! client is shown, and the settings its actions report.
//!
//! Owns: [`Device`], the IGD version choice (configuration and the
//! User-Agent of clients that fail on IGD:2), and CONFIGID. Pure: built
//! from [`Config`] and the values the daemon read once at start.

use std::net::IpAddr;
use std::rc::Rc;

use crate::config::Config;
use crate::core::facts::Facts;
use crate::core::lan::Lans;
use crate::core::table::Millis;
use crate::proto::desc::{self, DescParams};
use crate::proto::http;
use crate::proto::schema::{Service, ServiceKind};
use crate::proto::ssdp;

/// UDA 1.1 §1.2.2: CACHE-CONTROL max-age of at least 1800 s.
pub const MIN_MAX_AGE: u32 = 1800;

/// The device and the settings of its services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Root device UUID, without `uuid:`.
    pub uuid: String,
    /// BOOTID.UPNP.ORG: changes with every start.
    pub boot_id: u32,
    /// The SERVER header of HTTP and SSDP.
    pub server: Rc<str>,
    friendly_name: String,
    model_number: String,
    serial_number: String,
    /// `presentation_url`: `None` points at the LAN address, `Some("")`
    /// leaves the element out.
    presentation_url: Option<String>,
    /// Describe the device as IGD:1 to every client.
    igdv1: bool,
    /// WANIPv6FirewallControl is offered.
    pinholes: bool,
    /// SSDP NOTIFY period in seconds.
    notify_interval: u32,
    /// Cap for IGDv1 leases (0 = none).
    pub upnp_max_lease: u32,
    /// GetStatusInfo reports the system's uptime (else the daemon's).
    system_uptime: bool,
    /// Configured bandwidth in KiB/s, reported instead of the link speed.
    upload_kib: Option<u32>,
    download_kib: Option<u32>,
}

/// Does a User-Agent belong to a client that fails on IGD:2 descriptions
/// (Windows' NAT traversal, Xbox; miniupnpd's list)?
fn wants_igd1(ua: Option<&str>) -> bool {
    ua.is_some_and(|ua| ua.to_ascii_lowercase().contains("microsoft") || ua.contains("FDSSDP"))
}

/// A stable root UUID from a LAN device's MAC address (`aa:bb:…` as
/// `/sys/class/net/*/address` has it), so control points' caches stay
/// valid across restarts. An unreadable MAC gives zeros.
pub fn uuid_from_mac(mac: &str) -> String {
    let mac = mac.trim().replace(':', "");
    let mac = if mac.len() == 12 && mac.bytes().all(|b| b.is_ascii_hexdigit()) {
        mac
    } else {
        "000000000000".to_string()
    };
    format!("5a0b8d3c-7f1e-4c2a-9d6b-{mac}")
}

/// A version 4 UUID from 16 random bytes.
pub fn random_uuid(mut b: [u8; 16]) -> String {
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

impl Device {
    pub fn new(cfg: &Config, uuid: String, boot_id: u32, server: Rc<str>) -> Device {
        let mut d = Device {
            uuid,
            boot_id,
            server,
            friendly_name: String::new(),
            model_number: String::new(),
            serial_number: String::new(),
            presentation_url: None,
            igdv1: false,
            pinholes: false,
            notify_interval: 0,
            upnp_max_lease: 0,
            system_uptime: false,
            upload_kib: None,
            download_kib: None,
        };
        d.reconfigure(cfg);
        d
    }

    /// Takes the new configuration's settings; the identity stays.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.friendly_name = cfg
            .friendly_name
            .clone()
            .unwrap_or_else(|| "OpenWrt router".into());
        self.model_number = cfg
            .model_number
            .clone()
            .unwrap_or_else(|| crate::VERSION.into());
        self.serial_number = cfg
            .serial_number
            .clone()
            .unwrap_or_else(|| "00000000".into());
        self.presentation_url = cfg.presentation_url.clone();
        self.igdv1 = cfg.igdv1;
        self.pinholes = cfg.ipv6_pinholes && !cfg.ipv6_disable;
        self.notify_interval = cfg.notify_interval;
        self.upnp_max_lease = cfg.upnp_max_lease;
        self.system_uptime = cfg.system_uptime;
        self.upload_kib = cfg.upload;
        self.download_kib = cfg.download;
    }

    /// The IGD version announced and described by default.
    pub fn version(&self) -> u8 {
        if self.igdv1 { 1 } else { 2 }
    }

    /// The IGD version a client with this User-Agent is described.
    pub fn version_for(&self, user_agent: Option<&str>) -> u8 {
        if wants_igd1(user_agent) {
            1
        } else {
            self.version()
        }
    }

    pub fn pinholes(&self) -> bool {
        self.pinholes
    }

    /// Whether a service is part of the device described at version `v`:
    /// WANIPv6FirewallControl only in IGD:2, and only with pinholes on.
    pub fn serves(&self, s: &Service, v: u8) -> bool {
        if s.v2_only && v < 2 {
            return false;
        }
        s.kind != ServiceKind::WanIpv6FirewallControl || self.pinholes
    }

    /// The WANConnectionDevice's UDN (Layer3Forwarding, GetActiveConnection).
    pub fn conn_udn(&self) -> String {
        desc::udn(&self.uuid, 2)
    }

    fn desc_params(&self, lan_addr: Option<IpAddr>) -> DescParams {
        DescParams {
            uuid: self.uuid.clone(),
            friendly_name: self.friendly_name.clone(),
            model_number: self.model_number.clone(),
            serial_number: self.serial_number.clone(),
            presentation_url: match &self.presentation_url {
                Some(u) if u.is_empty() => None,
                Some(u) => Some(u.clone()),
                // UDA Annex A: an IPv6 literal in brackets (RFC 2732)
                None => lan_addr.map(|a| format!("http://{}/", http::url_host(a))),
            },
            config_id: 0,
            pinholes: self.pinholes,
        }
    }

    /// CONFIGID.UPNP.ORG (UDA 1.1): changes whenever the description
    /// would (FNV-1a of what it is made of, 24 bits).
    pub fn config_id(&self, lans: &Lans) -> u32 {
        let p = self.desc_params(lans.get(0).map(|l| IpAddr::V4(l.addr)));
        let mut h: u32 = 2166136261;
        for b in format!("{p:?}{}", self.igdv1).bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(16777619);
        }
        h & 0x00ff_ffff
    }

    /// The root description as shown on LAN `lan` at IGD version `v`, to
    /// a client that reached us at `local` (its family decides the
    /// address in the presentation URL, UDA Annex A); `None`: the LAN's
    /// IPv4 address.
    pub fn description(&self, lans: &Lans, lan: usize, local: Option<IpAddr>, v: u8) -> String {
        let local = local.or_else(|| lans.get(lan).map(|l| IpAddr::V4(l.addr)));
        let mut p = self.desc_params(local);
        p.config_id = self.config_id(lans);
        desc::root(&p, v)
    }

    /// What SSDP announces.
    pub fn identity(&self) -> ssdp::Identity {
        ssdp::Identity {
            uuid: self.uuid.clone(),
            version: self.version(),
            pinholes: self.pinholes,
        }
    }

    /// CACHE-CONTROL max-age: twice the NOTIFY period, at least 1800 s.
    pub fn max_age(&self) -> u32 {
        self.notify_interval.saturating_mul(2).max(MIN_MAX_AGE)
    }

    /// The NOTIFY period in ms (at least 1 s).
    pub fn notify_period(&self) -> Millis {
        u64::from(self.notify_interval.max(1)) * 1000
    }

    /// GetStatusInfo's NewUptime: the system's or the daemon's (`now`
    /// counts from its start).
    pub fn uptime(&self, now: Millis, facts: &dyn Facts) -> u32 {
        if self.system_uptime {
            facts.system_uptime().unwrap_or(0)
        } else {
            u32::try_from(now / 1000).unwrap_or(u32::MAX)
        }
    }

    /// GetCommonLinkProperties' (upstream, downstream) bit/s: the
    /// configured bandwidth (KiB/s × 1024 × 8), else the link's speed.
    pub fn link_bps(&self, facts: &dyn Facts) -> (u32, u32) {
        let speed = std::cell::OnceCell::new();
        let bps = |kib: Option<u32>| match kib {
            Some(k) => u32::try_from(u64::from(k) * 1024 * 8).unwrap_or(u32::MAX),
            None => *speed.get_or_init(|| facts.wan_speed_bps()),
        };
        (bps(self.upload_kib), bps(self.download_kib))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::facts::FixedFacts;

    fn device(cfg: &Config) -> Device {
        Device::new(cfg, uuid_from_mac("02:00:00:aa:bb:cc"), 7, "test".into())
    }

    #[test]
    fn windows_and_xbox_are_shown_igd1() {
        let d = device(&Config::default());
        assert_eq!(d.version(), 2);
        assert_eq!(d.version_for(None), 2);
        assert_eq!(d.version_for(Some("upnpc/2.2")), 2);
        assert_eq!(d.version_for(Some("Microsoft-Windows/10.0 UPnP/1.0")), 1);
        assert_eq!(d.version_for(Some("FDSSDP")), 1);
        let v1 = device(&Config {
            igdv1: true,
            ..Config::default()
        });
        assert_eq!(v1.version_for(Some("upnpc/2.2")), 1);
    }

    #[test]
    fn uuids() {
        assert_eq!(
            uuid_from_mac("02:00:00:AA:bb:cc\n"),
            "5a0b8d3c-7f1e-4c2a-9d6b-020000AAbbcc"
        );
        assert_eq!(
            uuid_from_mac("garbage"),
            "5a0b8d3c-7f1e-4c2a-9d6b-000000000000"
        );
        assert_eq!(
            random_uuid([0xff; 16]),
            "ffffffff-ffff-4fff-bfff-ffffffffffff"
        );
    }

    #[test]
    fn config_id_follows_the_description() {
        let lans = Lans::default();
        let a = device(&Config::default());
        let b = device(&Config {
            friendly_name: Some("Other".into()),
            ..Config::default()
        });
        assert_ne!(a.config_id(&lans), b.config_id(&lans));
        assert_eq!(
            a.config_id(&lans),
            device(&Config::default()).config_id(&lans)
        );
        assert!(a.config_id(&lans) < 1 << 24);
    }

    #[test]
    fn link_properties_prefer_the_configured_bandwidth() {
        let facts = FixedFacts {
            speed_bps: 1_000_000_000,
            uptime: Some(99),
            ..FixedFacts::default()
        };
        let d = device(&Config {
            upload: Some(1000),
            system_uptime: false,
            ..Config::default()
        });
        assert_eq!(d.link_bps(&facts), (8_192_000, 1_000_000_000));
        assert_eq!(d.uptime(42_999, &facts), 42);
        assert_eq!(device(&Config::default()).uptime(42_999, &facts), 99);
    }
}
