//! The validated configuration the daemon runs with, and its defaults.
//!
//! Owns: [`Config`] and [`PermRule`], their defaults, and the printout of
//! `--check-config`. Values come from UCI (`/etc/config/upnpd`, see
//! [`uci`]) and are then overridden by command-line flags. Must not import
//! `core`, `sys` or `daemon`: it is data plus validation only.

pub mod firewall;
pub mod load;
pub mod uci;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

/// One `config perm_rule` section: allow or deny a mapping by external port
/// range, internal address/mask and internal port range (miniupnpd's
/// semantics; evaluated in file order, first match wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermRule {
    pub allow: bool,
    pub ext_ports: (u16, u16),
    pub int_addr: Ipv4Addr,
    /// Prefix length 0–32 of `int_addr`.
    pub int_prefix: u8,
    pub int_ports: (u16, u16),
    pub comment: String,
}

impl PermRule {
    /// Whether the internal side (address and port) of this rule matches.
    pub fn matches_internal(&self, addr: Ipv4Addr, port: u16) -> bool {
        prefix_contains(self.int_addr, self.int_prefix, addr)
            && (self.int_ports.0..=self.int_ports.1).contains(&port)
    }

    /// Whether the rule matches a complete mapping request.
    pub fn matches(&self, eport: u16, addr: Ipv4Addr, iport: u16) -> bool {
        (self.ext_ports.0..=self.ext_ports.1).contains(&eport) && self.matches_internal(addr, iport)
    }
}

/// True if `addr` lies in `net/prefix`.
pub fn prefix_contains(net: Ipv4Addr, prefix: u8, addr: Ipv4Addr) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = 32 - u32::from(prefix.min(32));
    (u32::from(net) >> shift) == (u32::from(addr) >> shift)
}

/// Names of the nftables objects the daemon owns. On OpenWrt they live in
/// fw4's `table inet fw4`; elsewhere the daemon creates the table itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftNames {
    pub table: String,
    pub forward_chain: String,
    pub prerouting_chain: String,
    pub postrouting_chain: String,
}

impl Default for NftNames {
    fn default() -> Self {
        NftNames {
            table: "fw4".into(),
            forward_chain: "upnp_forward".into(),
            prerouting_chain: "upnp_prerouting".into(),
            postrouting_chain: "upnp_postrouting".into(),
        }
    }
}

/// The daemon's whole configuration. Field names follow the UCI option
/// names of `/etc/config/upnpd` (miniupnpd's schema) where one exists.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Master switch. When off the daemon serves nothing and holds no mappings.
    pub enabled: bool,
    pub enable_upnp: bool,
    pub enable_natpmp: bool,
    /// PCP; defaults to the value of `enable_natpmp`, as miniupnpd's
    /// `enable_natpmp` switches both.
    pub enable_pcp: bool,
    /// A client may only map to (and delete mappings of) its own address.
    pub secure_mode: bool,
    /// Debug logging (`log_output 1`).
    pub log_output: bool,
    /// Downstream and upstream bandwidth in KiB/s, reported by
    /// GetCommonLinkProperties as `value * 1024 * 8` bit/s.
    pub download: Option<u32>,
    pub upload: Option<u32>,
    /// Logical WAN interface (`wan`) or, on plain Linux, a device name.
    pub external_iface: Option<String>,
    pub external_iface6: Option<String>,
    pub external_zone: Option<String>,
    /// A fixed external address to report instead of the WAN address.
    pub external_ip: Option<Ipv4Addr>,
    /// Logical LAN interfaces (or device names) to serve.
    pub internal_iface: Vec<String>,
    /// HTTP port for descriptions, control and events.
    pub port: u16,
    pub upnp_lease_file: Option<PathBuf>,
    pub upnp_lease_file6: Option<PathBuf>,
    /// Describe the device as IGD:1 to every client.
    pub igdv1: bool,
    pub uuid: Option<String>,
    /// SSDP NOTIFY period in seconds.
    pub notify_interval: u32,
    pub presentation_url: Option<String>,
    pub friendly_name: Option<String>,
    pub serial_number: Option<String>,
    pub model_number: Option<String>,
    /// Report system uptime (true) or daemon uptime (false) in GetStatusInfo.
    pub system_uptime: bool,
    /// Learn the public address and test the path from the Internet with
    /// STUN (needs `stun_host`).
    pub use_stun: bool,
    pub stun_host: Option<String>,
    pub stun_port: u16,
    /// Keep giving out mappings when STUN finds the path filtered or
    /// cannot tell (miniupnpd's `ext_perform_stun=allow-filtered`).
    pub stun_allow_filtered: bool,
    pub ipv6_disable: bool,
    pub ext_allow_private_ipv4: bool,
    pub perm_rules: Vec<PermRule>,
    /// Log packets through mapped ports to the kernel log (rate-limited).
    pub log_packets: bool,
    /// Log each new connection through a mapping once.
    pub log_connections: bool,
    /// NAT reflection: LAN hosts reach mappings through the external address.
    pub hairpin: bool,
    /// Global cap on mappings (all protocols, all clients).
    pub max_mappings: u32,
    /// Cap on mappings one LAN client may hold.
    pub max_mappings_per_client: u32,
    /// Lifetime bounds in seconds for NAT-PMP and PCP (RFC 6887 §15).
    pub min_lifetime: u32,
    pub max_lifetime: u32,
    /// Cap in seconds for IGDv1 leases, including "permanent" (0) ones;
    /// 0 leaves IGDv1 leases uncapped.
    pub upnp_max_lease: u32,
    /// Accept PCP THIRD_PARTY requests.
    pub pcp_allow_thirdparty: bool,
    /// Cap on GENA subscribers in total and per client.
    pub max_subscribers: u32,
    pub max_subscribers_per_client: u32,
    /// IPv6 pinholes (WANIPv6FirewallControl) allowed.
    pub ipv6_pinholes: bool,
    pub nft: NftNames,
}

/// The two rules of OpenWrt's shipped `/etc/config/upnpd`: any LAN host
/// may map ports 1024–65535 to ports 1024–65535, nothing else.
pub fn default_perm_rules() -> Vec<PermRule> {
    vec![
        PermRule {
            allow: true,
            ext_ports: (1024, 65535),
            int_addr: Ipv4Addr::UNSPECIFIED,
            int_prefix: 0,
            int_ports: (1024, 65535),
            comment: "Allow high ports".into(),
        },
        PermRule {
            allow: false,
            ext_ports: (0, 65535),
            int_addr: Ipv4Addr::UNSPECIFIED,
            int_prefix: 0,
            int_ports: (0, 65535),
            comment: "Default deny".into(),
        },
    ]
}

/// A switch that `ubus call rupnpd set` flips at run time, named by its
/// UCI option.
pub struct Toggle {
    pub name: &'static str,
    slot: fn(&mut Config) -> &mut bool,
    get: fn(&Config) -> bool,
}

impl Toggle {
    pub fn get(&self, c: &Config) -> bool {
        (self.get)(c)
    }

    pub fn set(&self, c: &mut Config, on: bool) {
        *(self.slot)(c) = on;
    }

    /// The toggle named `name`.
    pub fn named(name: &str) -> Option<&'static Toggle> {
        TOGGLES.iter().find(|t| t.name == name)
    }
}

macro_rules! toggle {
    ($field:ident) => {
        Toggle {
            name: stringify!($field),
            slot: |c| &mut c.$field,
            get: |c| c.$field,
        }
    };
}

/// Every live toggle, in the order `ubus -v list rupnpd` shows them.
pub const TOGGLES: [Toggle; 7] = [
    toggle!(enabled),
    toggle!(enable_upnp),
    toggle!(enable_natpmp),
    toggle!(enable_pcp),
    toggle!(secure_mode),
    toggle!(log_packets),
    toggle!(log_connections),
];

/// miniupnpd's default IGDv2 lease cap (UPnP IGD:2, 604800 s = 7 days).
pub const IGD2_MAX_LEASE: u32 = 604_800;

impl Default for Config {
    fn default() -> Self {
        Config {
            enabled: true,
            enable_upnp: true,
            enable_natpmp: true,
            enable_pcp: true,
            secure_mode: true,
            log_output: false,
            download: None,
            upload: None,
            external_iface: None,
            external_iface6: None,
            external_zone: None,
            external_ip: None,
            internal_iface: vec!["lan".into()],
            port: 5000,
            upnp_lease_file: None,
            upnp_lease_file6: None,
            igdv1: false,
            uuid: None,
            notify_interval: 900,
            presentation_url: None,
            friendly_name: None,
            serial_number: None,
            model_number: None,
            system_uptime: true,
            use_stun: false,
            stun_host: None,
            stun_port: 3478,
            stun_allow_filtered: false,
            ipv6_disable: false,
            ext_allow_private_ipv4: false,
            perm_rules: default_perm_rules(),
            log_packets: false,
            log_connections: false,
            hairpin: true,
            max_mappings: 4096,
            max_mappings_per_client: 1024,
            min_lifetime: 120,
            max_lifetime: 86400,
            upnp_max_lease: 0,
            pcp_allow_thirdparty: false,
            max_subscribers: 64,
            max_subscribers_per_client: 8,
            ipv6_pinholes: true,
            nft: NftNames::default(),
        }
    }
}

/// One problem with a configuration value: which option, what was wrong,
/// and what is allowed. Displays as
/// `upnpd.config.port: invalid value "70000" (expected a port 1-65535)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `package.section.option`, e.g. `upnpd.config.port` or
    /// `upnpd.@perm_rule[1].ext_ports`.
    pub path: String,
    pub value: String,
    pub expected: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid value \"{}\" (expected {})",
            self.path,
            self.value.escape_debug(),
            self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|x| x.to_string()).unwrap_or_default()
}

fn b(v: bool) -> &'static str {
    if v { "1" } else { "0" }
}

/// `--check-config` prints the effective configuration in UCI syntax.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        writeln!(f, "config upnpd 'config'")?;
        let mut o = |k: &str, v: String| writeln!(f, "\toption {k} {}", q(&v));
        o("enabled", b(self.enabled).into())?;
        o("enable_upnp", b(self.enable_upnp).into())?;
        o("enable_natpmp", b(self.enable_natpmp).into())?;
        o("enable_pcp", b(self.enable_pcp).into())?;
        o("secure_mode", b(self.secure_mode).into())?;
        o("log_output", b(self.log_output).into())?;
        o("download", opt(&self.download))?;
        o("upload", opt(&self.upload))?;
        o("external_iface", opt(&self.external_iface))?;
        o("external_iface6", opt(&self.external_iface6))?;
        o("external_zone", opt(&self.external_zone))?;
        o("external_ip", opt(&self.external_ip))?;
        o("internal_iface", self.internal_iface.join(" "))?;
        o("port", self.port.to_string())?;
        o(
            "upnp_lease_file",
            opt(&self.upnp_lease_file.as_ref().map(|p| p.display())),
        )?;
        o(
            "upnp_lease_file6",
            opt(&self.upnp_lease_file6.as_ref().map(|p| p.display())),
        )?;
        o("igdv1", b(self.igdv1).into())?;
        o("uuid", opt(&self.uuid))?;
        o("notify_interval", self.notify_interval.to_string())?;
        o("presentation_url", opt(&self.presentation_url))?;
        o("friendly_name", opt(&self.friendly_name))?;
        o("serial_number", opt(&self.serial_number))?;
        o("model_number", opt(&self.model_number))?;
        o("system_uptime", b(self.system_uptime).into())?;
        o("use_stun", b(self.use_stun).into())?;
        o("stun_host", opt(&self.stun_host))?;
        o("stun_port", self.stun_port.to_string())?;
        o("stun_allow_filtered", b(self.stun_allow_filtered).into())?;
        o("ipv6_disable", b(self.ipv6_disable).into())?;
        o(
            "ext_allow_private_ipv4",
            b(self.ext_allow_private_ipv4).into(),
        )?;
        o("log_packets", b(self.log_packets).into())?;
        o("log_connections", b(self.log_connections).into())?;
        o("hairpin", b(self.hairpin).into())?;
        o("max_mappings", self.max_mappings.to_string())?;
        o(
            "max_mappings_per_client",
            self.max_mappings_per_client.to_string(),
        )?;
        o("min_lifetime", self.min_lifetime.to_string())?;
        o("max_lifetime", self.max_lifetime.to_string())?;
        o("upnp_max_lease", self.upnp_max_lease.to_string())?;
        o("pcp_allow_thirdparty", b(self.pcp_allow_thirdparty).into())?;
        o("max_subscribers", self.max_subscribers.to_string())?;
        o(
            "max_subscribers_per_client",
            self.max_subscribers_per_client.to_string(),
        )?;
        o("ipv6_pinholes", b(self.ipv6_pinholes).into())?;
        o("nft_table", self.nft.table.clone())?;
        o("nft_forward_chain", self.nft.forward_chain.clone())?;
        o("nft_prerouting_chain", self.nft.prerouting_chain.clone())?;
        o("nft_postrouting_chain", self.nft.postrouting_chain.clone())?;
        for r in &self.perm_rules {
            writeln!(f, "\nconfig perm_rule")?;
            writeln!(
                f,
                "\toption action {}",
                q(if r.allow { "allow" } else { "deny" })
            )?;
            writeln!(
                f,
                "\toption ext_ports '{}-{}'",
                r.ext_ports.0, r.ext_ports.1
            )?;
            writeln!(f, "\toption int_addr '{}/{}'", r.int_addr, r.int_prefix)?;
            writeln!(
                f,
                "\toption int_ports '{}-{}'",
                r.int_ports.0, r.int_ports.1
            )?;
            writeln!(f, "\toption comment {}", q(&r.comment))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let net = Ipv4Addr::new(192, 168, 1, 0);
        assert!(prefix_contains(net, 24, Ipv4Addr::new(192, 168, 1, 77)));
        assert!(!prefix_contains(net, 24, Ipv4Addr::new(192, 168, 2, 1)));
        assert!(prefix_contains(net, 0, Ipv4Addr::new(8, 8, 8, 8)));
        assert!(prefix_contains(
            Ipv4Addr::new(10, 0, 0, 5),
            32,
            Ipv4Addr::new(10, 0, 0, 5)
        ));
        assert!(!prefix_contains(
            Ipv4Addr::new(10, 0, 0, 5),
            32,
            Ipv4Addr::new(10, 0, 0, 6)
        ));
    }

    #[test]
    fn rule_matching() {
        let r = PermRule {
            allow: true,
            ext_ports: (1024, 65535),
            int_addr: Ipv4Addr::UNSPECIFIED,
            int_prefix: 0,
            int_ports: (1024, 65535),
            comment: "Allow high ports".into(),
        };
        assert!(r.matches(2000, Ipv4Addr::new(192, 168, 1, 2), 2000));
        assert!(!r.matches(80, Ipv4Addr::new(192, 168, 1, 2), 2000));
        assert!(!r.matches(2000, Ipv4Addr::new(192, 168, 1, 2), 22));
    }

    #[test]
    fn printout_is_uci() {
        let text = Config::default().to_string();
        assert!(text.starts_with("config upnpd 'config'\n"));
        assert!(text.contains("\toption port '5000'\n"));
    }
}
