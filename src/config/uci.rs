//! `/etc/config/upnpd` → [`Config`]: miniupnpd's UCI schema (openwrt.md
//! §1.1, §1.2) with the same meanings, plus rupnpd's own options.
//!
//! Owns: [`from_uci`], [`Loaded`] and the value syntaxes of the schema
//! (booleans, port ranges, address/prefix). Reads a parsed
//! [`Package`]; must not do IO and must not import `core`, `sys` or
//! `daemon`. Absent options keep [`Config::default()`]'s values, which are
//! the daemon's defaults, not those of the shipped file.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::{Config, ConfigError, PermRule};
use crate::proto::uci::{Package, Section, Value};
use crate::proto::{parse_u16, parse_u32};

/// A validated configuration and the notes worth logging about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<String>,
}

/// Largest table a client can fill: one mapping per protocol and port.
const MAX_TABLE: u32 = 2 * 65_535;
/// Longest `presentation_url` (miniupnpd's buffer is 256 bytes).
const MAX_URL: usize = 256;
/// Longest description text (UPnP Device Architecture: "should be < 64
/// characters" for friendlyName, serialNumber, modelNumber).
const MAX_TEXT: usize = 64;

/// Reads the `upnpd` package. Every invalid value is reported, not only
/// the first; warnings cover unknown and ignored options and sections.
pub fn from_uci(pkg: &Package) -> Result<Loaded, Vec<ConfigError>> {
    let mut config = Config::default();
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    // miniupnpd's init script reads the section named `config`.
    match pkg
        .sections
        .iter()
        .position(|s| s.name.as_deref() == Some("config"))
    {
        Some(pos) => {
            let s = &pkg.sections[pos];
            if s.stype != "upnpd" {
                warnings.push(format!(
                    "{}.config: section type is '{}', expected 'upnpd'; read anyway",
                    pkg.name, s.stype
                ));
            }
            let mut r = Reader::new(&pkg.name, "config", &mut errors, &mut warnings);
            read_main(&mut r, s, &mut config);
        }
        None => warnings.push(format!(
            "{}: no `config upnpd 'config'` section; using defaults",
            pkg.name
        )),
    }

    let mut rules = Vec::new();
    for (pos, s) in pkg.sections.iter().enumerate() {
        let id = pkg.section_id(pos);
        match s.stype.as_str() {
            "perm_rule" => {
                let mut r = Reader::new(&pkg.name, &id, &mut errors, &mut warnings);
                if let Some(rule) = read_rule(&mut r, s) {
                    rules.push(rule);
                }
            }
            _ if s.name.as_deref() == Some("config") => {}
            other => warnings.push(format!(
                "{}.{id}: section type '{other}' is not used; ignored",
                pkg.name
            )),
        }
    }
    config.perm_rules = rules;

    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(errors)
    }
}

/// Stores a successfully read value.
fn set<T>(slot: &mut T, v: Option<T>) {
    if let Some(v) = v {
        *slot = v;
    }
}

fn read_main(r: &mut Reader<'_>, s: &Section, c: &mut Config) {
    let mut pcp_given = false;
    let mut download = None;
    let mut upload = None;
    for (name, v) in &s.options {
        let o = name.as_str();
        match o {
            "enabled" => set(&mut c.enabled, r.boolean(o, v)),
            "enable_upnp" => set(&mut c.enable_upnp, r.boolean(o, v)),
            "enable_natpmp" => set(&mut c.enable_natpmp, r.boolean(o, v)),
            "enable_pcp" => {
                pcp_given = true;
                set(&mut c.enable_pcp, r.boolean(o, v));
            }
            "secure_mode" => set(&mut c.secure_mode, r.boolean(o, v)),
            "log_output" => set(&mut c.log_output, r.log_level(o, v)),
            "download" => download = r.uint(o, v, 0, u32::MAX),
            "upload" => upload = r.uint(o, v, 0, u32::MAX),
            "external_iface" => set(&mut c.external_iface, r.ifname(o, v).map(Some)),
            "external_iface6" => set(&mut c.external_iface6, r.ifname(o, v).map(Some)),
            "external_zone" => set(&mut c.external_zone, r.ifname(o, v).map(Some)),
            "external_ip" => set(&mut c.external_ip, r.ipv4(o, v).map(Some)),
            "internal_iface" => set(&mut c.internal_iface, r.ifnames(o, v)),
            "port" => set(&mut c.port, r.port(o, v)),
            "upnp_lease_file" => set(&mut c.upnp_lease_file, r.path(o, v).map(Some)),
            "upnp_lease_file6" => set(&mut c.upnp_lease_file6, r.path(o, v).map(Some)),
            "igdv1" => set(&mut c.igdv1, r.boolean(o, v)),
            "uuid" => set(&mut c.uuid, r.uuid(o, v)),
            "notify_interval" => {
                let n = r.uint(o, v, 60, 86_400);
                if n.is_some_and(|n| n < 900) {
                    r.warn(o, "below 900 s: clients may see the device come and go");
                }
                set(&mut c.notify_interval, n);
            }
            "presentation_url" => set(&mut c.presentation_url, r.text(o, v, MAX_URL)),
            "friendly_name" => set(&mut c.friendly_name, r.text(o, v, MAX_TEXT)),
            "serial_number" => set(&mut c.serial_number, r.text(o, v, MAX_TEXT)),
            "model_number" => set(&mut c.model_number, r.text(o, v, MAX_TEXT)),
            "system_uptime" => set(&mut c.system_uptime, r.boolean(o, v)),
            // miniupnpd's own file says `ext_perform_stun=allow-filtered`;
            // the same word here is read as both switches.
            "use_stun" if v.as_option().is_some_and(|s| s.trim() == "allow-filtered") => {
                c.use_stun = true;
                c.stun_allow_filtered = true;
            }
            "use_stun" => set(&mut c.use_stun, r.boolean(o, v)),
            "stun_allow_filtered" => set(&mut c.stun_allow_filtered, r.boolean(o, v)),
            "stun_host" => set(&mut c.stun_host, r.host(o, v).map(Some)),
            "stun_port" => set(&mut c.stun_port, r.port(o, v)),
            "ipv6_disable" => set(&mut c.ipv6_disable, r.boolean(o, v)),
            "ext_allow_private_ipv4" => set(&mut c.ext_allow_private_ipv4, r.boolean(o, v)),
            "log_packets" => set(&mut c.log_packets, r.boolean(o, v)),
            "log_connections" => set(&mut c.log_connections, r.boolean(o, v)),
            "hairpin" => set(&mut c.hairpin, r.boolean(o, v)),
            "max_mappings" => set(&mut c.max_mappings, r.uint(o, v, 1, MAX_TABLE)),
            "max_mappings_per_client" => {
                set(&mut c.max_mappings_per_client, r.uint(o, v, 1, MAX_TABLE));
            }
            "min_lifetime" => set(&mut c.min_lifetime, r.uint(o, v, 1, u32::MAX)),
            "max_lifetime" => set(&mut c.max_lifetime, r.uint(o, v, 1, u32::MAX)),
            "upnp_max_lease" => set(&mut c.upnp_max_lease, r.uint(o, v, 0, u32::MAX)),
            "pcp_allow_thirdparty" => set(&mut c.pcp_allow_thirdparty, r.boolean(o, v)),
            "max_subscribers" => set(&mut c.max_subscribers, r.uint(o, v, 1, 4096)),
            "max_subscribers_per_client" => {
                set(&mut c.max_subscribers_per_client, r.uint(o, v, 1, 4096));
            }
            "ipv6_pinholes" => set(&mut c.ipv6_pinholes, r.boolean(o, v)),
            "nft_table" => set(&mut c.nft.table, r.nft_name(o, v)),
            "nft_forward_chain" => set(&mut c.nft.forward_chain, r.nft_name(o, v)),
            "nft_prerouting_chain" => set(&mut c.nft.prerouting_chain, r.nft_name(o, v)),
            "nft_postrouting_chain" => set(&mut c.nft.postrouting_chain, r.nft_name(o, v)),
            "clean_ruleset_threshold" | "clean_ruleset_interval" => {
                r.warn(o, "legacy miniupnpd option, ignored");
            }
            "config_file" => r.warn(
                o,
                "ignored: rupnpd reads only UCI, not a miniupnpd.conf file",
            ),
            _ => r.warn(o, "unknown option, ignored"),
        }
    }
    // enable_natpmp switches NAT-PMP and PCP together in miniupnpd.
    if !pcp_given {
        c.enable_pcp = c.enable_natpmp;
    }
    // The init script passes the bitrates only when both are set.
    match (download, upload) {
        (Some(d), Some(u)) => {
            c.download = Some(d);
            c.upload = Some(u);
        }
        _ if s.get("download").is_some() != s.get("upload").is_some() => {
            r.warn(
                if s.get("download").is_some() {
                    "download"
                } else {
                    "upload"
                },
                "download and upload are used only together; both ignored",
            );
        }
        _ => {}
    }
    if c.use_stun && c.stun_host.is_none() {
        r.warn("use_stun", "no stun_host is set; STUN stays off");
        c.use_stun = false;
    }
    if c.min_lifetime > c.max_lifetime {
        r.bad::<()>(
            "min_lifetime",
            &c.min_lifetime.to_string(),
            format!("at most max_lifetime ({})", c.max_lifetime),
        );
    }
}

fn read_rule(r: &mut Reader<'_>, s: &Section) -> Option<PermRule> {
    // Defaults of an option left out (openwrt.md §1.2).
    let mut rule = PermRule {
        allow: false,
        ext_ports: (0, 65535),
        int_addr: Ipv4Addr::UNSPECIFIED,
        int_prefix: 0,
        int_ports: (0, 65535),
        comment: "ACL".into(),
    };
    let mut ok = true;
    for (name, v) in &s.options {
        let o = name.as_str();
        let good = match o {
            "action" => r.action(o, v).map(|a| rule.allow = a).is_some(),
            "ext_ports" => r.ports(o, v).map(|p| rule.ext_ports = p).is_some(),
            "int_ports" => r.ports(o, v).map(|p| rule.int_ports = p).is_some(),
            "int_addr" => r
                .cidr(o, v)
                .map(|(a, p)| {
                    rule.int_addr = a;
                    rule.int_prefix = p;
                })
                .is_some(),
            "comment" => r
                .single(o, v)
                .map(|t| rule.comment = t.chars().filter(|c| !c.is_control()).collect())
                .is_some(),
            _ => {
                r.warn(o, "unknown option, ignored");
                true
            }
        };
        ok &= good;
    }
    ok.then_some(rule)
}

/// A UCI boolean, as OpenWrt's `config_get_bool` spells them (any case).
pub fn parse_bool(s: &str) -> Option<bool> {
    const TRUE: [&str; 5] = ["1", "yes", "on", "true", "enabled"];
    const FALSE: [&str; 5] = ["0", "no", "off", "false", "disabled"];
    let s = s.trim();
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Some(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Some(false)
    } else {
        None
    }
}

/// `N`, `N-M` or `N:M` with `N <= M`, ports 0–65535 (miniupnpd perm
/// rules; also fw4's port syntax).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let s = s.trim();
    let (lo, hi) = match s.split_once(['-', ':']) {
        Some((a, b)) => (parse_u16(a)?, parse_u16(b)?),
        None => {
            let p = parse_u16(s)?;
            (p, p)
        }
    };
    (lo <= hi).then_some((lo, hi))
}

/// `a.b.c.d` (a /32), `a.b.c.d/nn` or `a.b.c.d/m.m.m.m` with a
/// contiguous mask.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let s = s.trim();
    let Some((addr, len)) = s.split_once('/') else {
        return Some((s.parse().ok()?, 32));
    };
    let addr: Ipv4Addr = addr.parse().ok()?;
    if let Some(n) = parse_u32(len) {
        return (n <= 32).then_some((addr, u8::try_from(n).ok()?));
    }
    let mask = u32::from(len.parse::<Ipv4Addr>().ok()?);
    // A contiguous mask is ones followed by zeros.
    (mask.leading_ones() + mask.trailing_zeros() == 32)
        .then(|| (addr, u8::try_from(mask.leading_ones()).unwrap_or(32)))
}

/// Validates option values of one section and records what is wrong.
struct Reader<'a> {
    /// `upnpd.config` or `upnpd.@perm_rule[1]`.
    prefix: String,
    errors: &'a mut Vec<ConfigError>,
    warnings: &'a mut Vec<String>,
}

impl<'a> Reader<'a> {
    fn new(
        pkg: &str,
        section: &str,
        errors: &'a mut Vec<ConfigError>,
        warnings: &'a mut Vec<String>,
    ) -> Reader<'a> {
        Reader {
            prefix: format!("{pkg}.{section}"),
            errors,
            warnings,
        }
    }

    fn bad<T>(&mut self, opt: &str, value: &str, expected: impl Into<String>) -> Option<T> {
        self.errors.push(ConfigError {
            path: format!("{}.{opt}", self.prefix),
            value: value.into(),
            expected: expected.into(),
        });
        None
    }

    fn warn(&mut self, opt: &str, what: &str) {
        self.warnings.push(format!("{}.{opt}: {what}", self.prefix));
    }

    /// The value of a plain option; a `list` is an error here.
    fn single<'v>(&mut self, opt: &str, v: &'v Value) -> Option<&'v str> {
        match v {
            Value::Option(s) => Some(s),
            Value::List(items) => self.bad(opt, &items.join(" "), "a single value, not a list"),
        }
    }

    fn boolean(&mut self, opt: &str, v: &Value) -> Option<bool> {
        let s = self.single(opt, v)?;
        parse_bool(s).or_else(|| {
            self.bad(
                opt,
                s,
                "a boolean (1/0, yes/no, on/off, true/false, enabled/disabled)",
            )
        })
    }

    /// A boolean, or a level name of the proposed new schema
    /// (`default`/`info`/`debug`, openwrt.md §1.3).
    fn log_level(&mut self, opt: &str, v: &Value) -> Option<bool> {
        let s = self.single(opt, v)?;
        match s.trim() {
            "debug" => Some(true),
            "info" | "default" => Some(false),
            t => parse_bool(t)
                .or_else(|| self.bad(opt, s, "a boolean (1/0, yes/no, …) or default/info/debug")),
        }
    }

    fn uint(&mut self, opt: &str, v: &Value, lo: u32, hi: u32) -> Option<u32> {
        let s = self.single(opt, v)?;
        match parse_u32(s.trim()) {
            Some(n) if (lo..=hi).contains(&n) => Some(n),
            _ => self.bad(opt, s, format!("an integer {lo}-{hi}")),
        }
    }

    fn port(&mut self, opt: &str, v: &Value) -> Option<u16> {
        let s = self.single(opt, v)?;
        match parse_u16(s.trim()) {
            Some(p) if p != 0 => Some(p),
            _ => self.bad(opt, s, "a port 1-65535"),
        }
    }

    fn ports(&mut self, opt: &str, v: &Value) -> Option<(u16, u16)> {
        let s = self.single(opt, v)?;
        parse_port_range(s).or_else(|| {
            self.bad(
                opt,
                s,
                "a port or range N, N-M or N:M within 0-65535 with N <= M",
            )
        })
    }

    fn ipv4(&mut self, opt: &str, v: &Value) -> Option<Ipv4Addr> {
        let s = self.single(opt, v)?;
        s.trim()
            .parse()
            .ok()
            .or_else(|| self.bad(opt, s, "an IPv4 address"))
    }

    fn cidr(&mut self, opt: &str, v: &Value) -> Option<(Ipv4Addr, u8)> {
        let s = self.single(opt, v)?;
        parse_cidr(s)
            .or_else(|| self.bad(opt, s, "an IPv4 address, a.b.c.d/0-32 or a.b.c.d/netmask"))
    }

    fn action(&mut self, opt: &str, v: &Value) -> Option<bool> {
        let s = self.single(opt, v)?;
        match s.trim().to_ascii_lowercase().as_str() {
            "allow" => Some(true),
            "deny" => Some(false),
            _ => self.bad(opt, s, "allow or deny"),
        }
    }

    fn one_ifname(&mut self, opt: &str, s: &str) -> Option<String> {
        let ok =
            (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if ok {
            Some(s.into())
        } else {
            self.bad(
                opt,
                s,
                "an interface name (1-64 printable characters, no spaces or '/')",
            )
        }
    }

    fn ifname(&mut self, opt: &str, v: &Value) -> Option<String> {
        let s = self.single(opt, v)?;
        self.one_ifname(opt, s.trim())
    }

    /// Space-separated names in one option, or a `list`.
    fn ifnames(&mut self, opt: &str, v: &Value) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let mut ok = true;
        for w in v.words() {
            match self.one_ifname(opt, w) {
                Some(n) if !out.contains(&n) => out.push(n),
                Some(_) => {}
                None => ok = false,
            }
        }
        if out.is_empty() && ok {
            return self.bad(opt, &v.items().join(" "), "one or more interface names");
        }
        ok.then_some(out)
    }

    fn path(&mut self, opt: &str, v: &Value) -> Option<PathBuf> {
        let s = self.single(opt, v)?;
        let ok = s.starts_with('/') && s.len() <= 4096 && !s.chars().any(char::is_control);
        if ok {
            Some(PathBuf::from(s))
        } else {
            self.bad(opt, s, "an absolute path")
        }
    }

    /// A UUID; the literal `nocli` (miniupnpd's init: "do not pass one")
    /// means the daemon makes its own, as an absent value does.
    fn uuid(&mut self, opt: &str, v: &Value) -> Option<Option<String>> {
        let s = self.single(opt, v)?;
        let t = s.trim();
        if t == "nocli" {
            return Some(None);
        }
        let b = t.as_bytes();
        let ok = b.len() == 36
            && b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            });
        if ok {
            Some(Some(t.into()))
        } else {
            self.bad(opt, s, "a UUID like 01234567-89ab-cdef-0123-456789abcdef")
        }
    }

    /// Free text for the device description: no control characters.
    fn text(&mut self, opt: &str, v: &Value, max: usize) -> Option<Option<String>> {
        let s = self.single(opt, v)?;
        if s.chars().count() <= max && !s.chars().any(char::is_control) {
            Some(Some(s.into()))
        } else {
            self.bad(
                opt,
                s,
                format!("text of at most {max} characters without control characters"),
            )
        }
    }

    fn host(&mut self, opt: &str, v: &Value) -> Option<String> {
        let s = self.single(opt, v)?;
        let t = s.trim();
        let ok = (1..=253).contains(&t.len())
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'));
        if ok {
            Some(t.into())
        } else {
            self.bad(opt, s, "a host name or address")
        }
    }

    /// An nftables table or chain name.
    fn nft_name(&mut self, opt: &str, v: &Value) -> Option<String> {
        let s = self.single(opt, v)?;
        let b = s.as_bytes();
        let ok = (1..=64).contains(&b.len())
            && b.first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'));
        if ok {
            Some(s.into())
        } else {
            self.bad(
                opt,
                s,
                "an nftables name (a letter or _, then letters, digits, _ . -; at most 64)",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_perm_rules;
    use crate::proto::uci::{parse, tests::SHIPPED_UPNPD};

    fn load(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        from_uci(&parse("upnpd", text).unwrap())
    }

    fn errors(text: &str) -> Vec<String> {
        load(text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const RULES: &str = "\nconfig perm_rule\n\toption action allow\n";

    #[test]
    fn shipped_config() {
        let l = load(SHIPPED_UPNPD).unwrap();
        let c = &l.config;
        assert!(!c.enabled);
        assert!(c.enable_natpmp && c.enable_pcp && c.enable_upnp && c.secure_mode);
        assert_eq!((c.download, c.upload), (Some(1024), Some(512)));
        assert_eq!(c.external_iface, None);
        assert_eq!(c.internal_iface, vec!["lan".to_string()]);
        assert_eq!(c.port, 5000);
        assert_eq!(
            c.upnp_lease_file,
            Some(PathBuf::from("/var/run/miniupnpd.leases"))
        );
        assert!(c.igdv1);
        assert_eq!(c.perm_rules, default_perm_rules());
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn defaults_round_trip() {
        let d = Config::default();
        let l = load(&d.to_string()).unwrap();
        assert_eq!(l.config, d);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn everything_set_round_trips() {
        let c = Config {
            enabled: false,
            enable_upnp: false,
            enable_natpmp: false,
            enable_pcp: true,
            secure_mode: false,
            log_output: true,
            download: Some(100_000),
            upload: Some(20_000),
            external_iface: Some("wan".into()),
            external_iface6: Some("wan6".into()),
            external_zone: Some("wan".into()),
            external_ip: Some(Ipv4Addr::new(203, 0, 113, 7)),
            internal_iface: vec!["lan".into(), "guest".into()],
            port: 5555,
            upnp_lease_file: Some("/tmp/l4".into()),
            upnp_lease_file6: Some("/tmp/l6".into()),
            igdv1: true,
            uuid: Some("01234567-89ab-cdef-0123-456789ABCDEF".into()),
            notify_interval: 1800,
            presentation_url: Some("http://192.168.1.1/cgi-bin/luci".into()),
            friendly_name: Some("Bob's router".into()),
            serial_number: Some("12345678".into()),
            model_number: Some("1".into()),
            system_uptime: false,
            use_stun: true,
            stun_host: Some("stun.example.org".into()),
            stun_port: 3479,
            stun_allow_filtered: true,
            ipv6_disable: true,
            ext_allow_private_ipv4: true,
            log_packets: true,
            log_connections: true,
            hairpin: false,
            max_mappings: 10,
            max_mappings_per_client: 2,
            min_lifetime: 60,
            max_lifetime: 7200,
            upnp_max_lease: 3600,
            pcp_allow_thirdparty: true,
            max_subscribers: 5,
            max_subscribers_per_client: 1,
            ipv6_pinholes: false,
            perm_rules: vec![PermRule {
                allow: true,
                ext_ports: (80, 80),
                int_addr: Ipv4Addr::new(192, 168, 1, 10),
                int_prefix: 32,
                int_ports: (8080, 8090),
                comment: "web 'server'".into(),
            }],
            nft: crate::config::NftNames {
                table: "rupnpd".into(),
                forward_chain: "fwd".into(),
                prerouting_chain: "pre".into(),
                postrouting_chain: "post".into(),
            },
        };
        let l = load(&c.to_string()).unwrap();
        assert_eq!(l.config, c);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn defaults_when_absent() {
        let l = load(&format!("config upnpd config\n{RULES}")).unwrap();
        let d = Config::default();
        assert!(l.config.enabled);
        assert!(!l.config.igdv1);
        assert_eq!(l.config.notify_interval, d.notify_interval);
        assert_eq!(l.config.internal_iface, d.internal_iface);
        // enable_pcp follows enable_natpmp when absent
        let l = load(&format!(
            "config upnpd config\n\toption enable_natpmp 0\n{RULES}"
        ))
        .unwrap();
        assert!(!l.config.enable_natpmp && !l.config.enable_pcp);
        let l = load(&format!(
            "config upnpd config\n\toption enable_natpmp no\n\toption enable_pcp on\n{RULES}"
        ))
        .unwrap();
        assert!(!l.config.enable_natpmp && l.config.enable_pcp);
    }

    #[test]
    fn boolean_spellings() {
        for (s, v) in [
            ("1", true),
            ("yes", true),
            ("on", true),
            ("true", true),
            ("enabled", true),
            ("TRUE", true),
            ("0", false),
            ("no", false),
            ("off", false),
            ("false", false),
            ("disabled", false),
        ] {
            assert_eq!(parse_bool(s), Some(v), "{s}");
        }
        assert_eq!(parse_bool("2"), None);
        assert_eq!(parse_bool(""), None);
    }

    #[test]
    fn perm_rules_in_order() {
        let l = load(
            "config upnpd config
config perm_rule
\toption action allow
\toption ext_ports 8080
\toption int_addr 192.168.1.10
\toption int_ports 8000:8100
\toption comment 'one host'
config perm_rule 'named'
\toption action DENY
\toption int_addr 192.168.1.0/255.255.255.0
config perm_rule
",
        )
        .unwrap();
        let r = &l.config.perm_rules;
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            PermRule {
                allow: true,
                ext_ports: (8080, 8080),
                int_addr: Ipv4Addr::new(192, 168, 1, 10),
                int_prefix: 32,
                int_ports: (8000, 8100),
                comment: "one host".into(),
            }
        );
        assert!(!r[1].allow);
        assert_eq!(
            (r[1].int_addr, r[1].int_prefix),
            (Ipv4Addr::new(192, 168, 1, 0), 24)
        );
        assert_eq!(r[1].ext_ports, (0, 65535));
        assert_eq!(r[1].comment, "ACL");
        // an empty rule takes every default: deny everything
        assert_eq!(
            r[2],
            PermRule {
                allow: false,
                ext_ports: (0, 65535),
                int_addr: Ipv4Addr::UNSPECIFIED,
                int_prefix: 0,
                int_ports: (0, 65535),
                comment: "ACL".into(),
            }
        );
    }

    #[test]
    fn invalid_values_are_all_reported() {
        let e = errors(
            "config upnpd config
\toption port 70000
\toption enabled maybe
\toption external_ip 1.2.3
\tlist secure_mode 1
\toption uuid 1234
\toption notify_interval 10
\toption min_lifetime 500
\toption max_lifetime 100
\toption nft_table 'fw 4'
\toption presentation_url 'http://x/\x01'
\toption internal_iface 'lan wan/x'
\toption upnp_lease_file relative.leases
config perm_rule
\toption action maybe
\toption ext_ports 2000-1000
config perm_rule
\toption int_addr 10.0.0.0/33
\toption int_ports 1-65536
",
        );
        assert_eq!(
            e,
            vec![
                "upnpd.config.port: invalid value \"70000\" (expected a port 1-65535)",
                "upnpd.config.enabled: invalid value \"maybe\" (expected a boolean (1/0, yes/no, on/off, true/false, enabled/disabled))",
                "upnpd.config.external_ip: invalid value \"1.2.3\" (expected an IPv4 address)",
                "upnpd.config.secure_mode: invalid value \"1\" (expected a single value, not a list)",
                "upnpd.config.uuid: invalid value \"1234\" (expected a UUID like 01234567-89ab-cdef-0123-456789abcdef)",
                "upnpd.config.notify_interval: invalid value \"10\" (expected an integer 60-86400)",
                "upnpd.config.nft_table: invalid value \"fw 4\" (expected an nftables name (a letter or _, then letters, digits, _ . -; at most 64))",
                "upnpd.config.presentation_url: invalid value \"http://x/\\u{1}\" (expected text of at most 256 characters without control characters)",
                "upnpd.config.internal_iface: invalid value \"wan/x\" (expected an interface name (1-64 printable characters, no spaces or '/'))",
                "upnpd.config.upnp_lease_file: invalid value \"relative.leases\" (expected an absolute path)",
                "upnpd.config.min_lifetime: invalid value \"500\" (expected at most max_lifetime (100))",
                "upnpd.@perm_rule[0].action: invalid value \"maybe\" (expected allow or deny)",
                "upnpd.@perm_rule[0].ext_ports: invalid value \"2000-1000\" (expected a port or range N, N-M or N:M within 0-65535 with N <= M)",
                "upnpd.@perm_rule[1].int_addr: invalid value \"10.0.0.0/33\" (expected an IPv4 address, a.b.c.d/0-32 or a.b.c.d/netmask)",
                "upnpd.@perm_rule[1].int_ports: invalid value \"1-65536\" (expected a port or range N, N-M or N:M within 0-65535 with N <= M)",
            ]
        );
    }

    #[test]
    fn warnings() {
        let l = load(
            "config upnpd config
\toption clean_ruleset_threshold 20
\toption config_file /etc/miniupnpd.conf
\toption frobnicate 1
\toption download 1000
\toption notify_interval 60
\toption use_stun 1
\toption uuid nocli
config other x
config perm_rule
\toption colour blue
",
        )
        .unwrap();
        assert_eq!(
            l.warnings,
            vec![
                "upnpd.config.clean_ruleset_threshold: legacy miniupnpd option, ignored",
                "upnpd.config.config_file: ignored: rupnpd reads only UCI, not a miniupnpd.conf file",
                "upnpd.config.frobnicate: unknown option, ignored",
                "upnpd.config.notify_interval: below 900 s: clients may see the device come and go",
                "upnpd.config.download: download and upload are used only together; both ignored",
                "upnpd.config.use_stun: no stun_host is set; STUN stays off",
                "upnpd.x: section type 'other' is not used; ignored",
                "upnpd.@perm_rule[0].colour: unknown option, ignored",
            ]
        );
        assert_eq!(l.config.download, None);
        assert!(!l.config.use_stun);
        assert_eq!(l.config.uuid, None);
    }

    #[test]
    fn missing_sections() {
        let l = load("").unwrap();
        assert_eq!(
            l.warnings,
            vec!["upnpd: no `config upnpd 'config'` section; using defaults",]
        );
        assert!(l.config.perm_rules.is_empty());
        assert!(l.config.enabled);
    }

    #[test]
    fn interfaces_as_list_or_words() {
        let l = load(&format!(
            "config upnpd config\n\tlist internal_iface lan\n\tlist internal_iface 'guest iot'\n{RULES}"
        ))
        .unwrap();
        assert_eq!(l.config.internal_iface, ["lan", "guest", "iot"]);
        let l = load(&format!(
            "config upnpd config\n\toption internal_iface 'lan  lan guest'\n{RULES}"
        ))
        .unwrap();
        assert_eq!(l.config.internal_iface, ["lan", "guest"]);
    }

    #[test]
    fn value_syntaxes() {
        assert_eq!(parse_port_range("1024-65535"), Some((1024, 65535)));
        assert_eq!(parse_port_range("1024:2048"), Some((1024, 2048)));
        assert_eq!(parse_port_range("0"), Some((0, 0)));
        assert_eq!(parse_port_range("5-4"), None);
        assert_eq!(parse_port_range("-4"), None);
        assert_eq!(parse_port_range("1-2-3"), None);
        assert_eq!(parse_cidr("0.0.0.0/0"), Some((Ipv4Addr::UNSPECIFIED, 0)));
        assert_eq!(
            parse_cidr("10.1.2.3"),
            Some((Ipv4Addr::new(10, 1, 2, 3), 32))
        );
        assert_eq!(
            parse_cidr("10.0.0.0/255.0.0.0"),
            Some((Ipv4Addr::new(10, 0, 0, 0), 8))
        );
        assert_eq!(parse_cidr("10.0.0.0/255.0.255.0"), None);
        assert_eq!(parse_cidr("10.0.0.0/"), None);
        assert_eq!(parse_cidr("host/24"), None);
    }
}
