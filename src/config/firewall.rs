//! Ports that `/etc/config/firewall` already forwards or opens from the
//! WAN (openwrt.md §4.5), so that no mapping takes them over.
//!
//! Owns: [`PortClaim`], [`wan_zones`] and [`claims`]. Reads a parsed
//! [`Package`] the way fw4 reads it (fw4.uc `parse_redirect`,
//! `parse_rule`); must not do IO and must not import `core`, `sys` or
//! `daemon`. Sections fw4 would skip as invalid claim nothing.

use super::uci::{parse_bool, parse_port_range};
use crate::proto::Proto;
use crate::proto::uci::{Package, Section, Value};

/// A port that another mechanism (a firewall redirect or an accept rule
/// from the WAN zone) already opens from the Internet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortClaim {
    /// `None` covers both TCP and UDP.
    pub proto: Option<Proto>,
    pub lo: u16,
    pub hi: u16,
    /// `!` in UCI: every port *outside* `lo..=hi`.
    pub invert: bool,
    /// What holds it, for logs: e.g. `firewall redirect 'ssh'`.
    pub source: String,
}

impl PortClaim {
    pub fn covers(&self, proto: Proto, port: u16) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && ((self.lo..=self.hi).contains(&port) != self.invert)
    }
}

/// The firewall zones that face the Internet: zones whose `network` holds
/// one of the logical WAN interfaces or whose `device` holds the WAN
/// device. If none does, the zone named `wan`, if there is one.
pub fn wan_zones(fw: &Package, wan_networks: &[&str], wan_device: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut has_wan = false;
    for z in fw.of_type("zone").filter(|z| enabled(z) == Some(true)) {
        let Some(name) = z.option("name") else {
            continue;
        };
        has_wan |= name == "wan";
        let by_net = z
            .get("network")
            .is_some_and(|v| v.words().any(|n| wan_networks.contains(&n)));
        let by_dev = wan_device.is_some_and(|d| {
            z.get("device")
                .is_some_and(|v| v.words().any(|p| device_matches(p, d)))
        });
        if (by_net || by_dev) && !out.iter().any(|o| o == name) {
            out.push(name.into());
        }
    }
    if out.is_empty() && has_wan {
        out.push("wan".into());
    }
    out
}

/// fw4 device patterns: a trailing `+` or `*` matches any suffix; `!`
/// excludes and so never selects a zone.
fn device_matches(pattern: &str, dev: &str) -> bool {
    if pattern.starts_with('!') {
        return false;
    }
    match pattern.strip_suffix(['+', '*']) {
        Some(prefix) => dev.starts_with(prefix),
        None => pattern == dev,
    }
}

/// Every port that an enabled DNAT `redirect` from a WAN zone forwards,
/// or an enabled ACCEPT `rule` from a WAN zone (or `*`) opens, for IPv4.
pub fn claims(fw: &Package, wan_zones: &[String]) -> Vec<PortClaim> {
    let from_wan = |s: &Section| {
        s.option("src")
            .is_some_and(|z| wan_zones.iter().any(|w| w == z))
    };
    let mut out = Vec::new();
    for (pos, s) in fw.sections.iter().enumerate() {
        let kind = s.stype.as_str();
        let ports = match kind {
            // fw4 parse_redirect: target defaults to dnat; src `*` is invalid.
            "redirect" => {
                if !from_wan(s) || target(s, "dnat").as_deref() != Some("dnat") {
                    continue;
                }
                let ports = match s.get("src_dport") {
                    None => Some(Vec::new()),
                    // One port value, not a list (fw4 `parse_opt`).
                    Some(Value::Option(p)) => port_list(std::iter::once(p.trim())),
                    Some(Value::List(_)) => None,
                };
                let v6_target = ["dest_ip", "src_dip"]
                    .iter()
                    .any(|o| s.option(o).is_some_and(|a| a.contains(':')));
                if v6_target {
                    continue;
                }
                ports
            }
            // fw4 parse_rule: no default target (a rule without one only counts).
            "rule" => {
                let src_any = s.option("src") == Some("*");
                if !(from_wan(s) || src_any) || target(s, "").as_deref() != Some("accept") {
                    continue;
                }
                match s.get("dest_port") {
                    None => Some(Vec::new()),
                    Some(v) => port_list(v.words()),
                }
            }
            _ => continue,
        };
        if enabled(s) != Some(true) || family_v6_only(s) != Some(false) {
            continue;
        }
        let (Some(ports), Some(protos)) = (ports, protocols(s)) else {
            continue;
        };
        let source = match s.option("name") {
            Some(n) => format!(
                "firewall {kind} '{}'",
                n.chars().filter(|c| !c.is_control()).collect::<String>()
            ),
            None if s.name.is_some() => format!("firewall {kind} '{}'", fw.section_id(pos)),
            None => format!("firewall {kind} {}", fw.section_id(pos)),
        };
        let proto_claims: &[Option<Proto>] = match protos {
            Protos::None => &[],
            Protos::Tcp => &[Some(Proto::Tcp)],
            Protos::Udp => &[Some(Proto::Udp)],
            Protos::Both | Protos::Any => &[None],
        };
        // A rule for every protocol matches no port (fw4 only matches
        // ports for tcp and udp), and no port option means every port.
        let ranges = if ports.is_empty() || protos == Protos::Any {
            vec![(0, u16::MAX, false)]
        } else {
            ports
        };
        for &proto in proto_claims {
            for &(lo, hi, invert) in &ranges {
                out.push(PortClaim {
                    proto,
                    lo,
                    hi,
                    invert,
                    source: source.clone(),
                });
            }
        }
    }
    out
}

/// `enabled` (default on); `None` if fw4 would reject the value.
fn enabled(s: &Section) -> Option<bool> {
    match s.get("enabled") {
        None => Some(true),
        Some(Value::Option(v)) => parse_bool(v),
        Some(Value::List(_)) => None,
    }
}

/// fw4 `parse_family`: `Some(true)` for IPv6 only; `None` if invalid.
fn family_v6_only(s: &Section) -> Option<bool> {
    let Some(f) = s.get("family") else {
        return Some(false);
    };
    let f = f.as_option()?;
    if matches!(f, "any" | "all" | "*") || f == "inet" || f.contains('4') {
        Some(false)
    } else if f.contains('6') {
        Some(true)
    } else {
        None
    }
}

/// fw4 `parse_target`: case-insensitive, and any prefix of a target name
/// selects the first name it starts (so `acc` is `accept`, `d` is `drop`).
fn target(s: &Section, default: &str) -> Option<String> {
    const TARGETS: [&str; 10] = [
        "accept",
        "reject",
        "drop",
        "notrack",
        "helper",
        "mark",
        "dscp",
        "dnat",
        "snat",
        "masquerade",
    ];
    let v = match s.get("target") {
        None if default.is_empty() => return None,
        None => return Some(default.into()),
        Some(v) => v.as_option()?.to_ascii_lowercase(),
    };
    let t = TARGETS
        .iter()
        .find(|t| !v.is_empty() && t.starts_with(&v))?;
    // fw4 turns any redirect target other than snat into dnat.
    if default == "dnat" && *t != "snat" {
        return Some("dnat".into());
    }
    Some((*t).into())
}

/// Ports as `(lo, hi, invert)`; `None` if any is invalid (fw4 then skips
/// the whole section).
fn port_list<'a>(words: impl Iterator<Item = &'a str>) -> Option<Vec<(u16, u16, bool)>> {
    let mut out = Vec::new();
    for w in words {
        let (invert, p) = match w.trim_start().strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, w),
        };
        let (lo, hi) = parse_port_range(p)?;
        out.push((lo, hi, invert));
    }
    Some(out)
}

/// Which of TCP and UDP a section's `proto` covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protos {
    None,
    Tcp,
    Udp,
    Both,
    /// `all`/`any`/`*`: every protocol, ports unmatched.
    Any,
}

/// fw4 `parse_protocol` over the `proto` list (default `tcpudp`). An
/// inverted entry (`!tcp`) is counted as both TCP and UDP, since what fw4
/// makes of it depends on the other options; over-claiming only refuses a
/// mapping, under-claiming would hijack a forwarded port.
fn protocols(s: &Section) -> Option<Protos> {
    let words: Vec<&str> = match s.get("proto") {
        None => vec!["tcpudp"],
        Some(v) => v.words().collect(),
    };
    let (mut tcp, mut udp, mut any) = (false, false, false);
    for w in words {
        let (invert, p) = match w.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, w),
        };
        if p.is_empty() {
            return None;
        }
        let p = p.to_ascii_lowercase();
        match p.as_str() {
            _ if invert => (tcp, udp) = (true, true),
            "all" | "any" | "*" => any = true,
            "tcpudp" => (tcp, udp) = (true, true),
            "tcp" | "6" => tcp = true,
            "udp" | "17" => udp = true,
            _ => {}
        }
    }
    Some(match (any, tcp, udp) {
        (true, _, _) => Protos::Any,
        (_, true, true) => Protos::Both,
        (_, true, false) => Protos::Tcp,
        (_, false, true) => Protos::Udp,
        _ => Protos::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::uci::parse;

    /// OpenWrt's default /etc/config/firewall (fw4 era).
    const DEFAULT: &str = "config defaults
\toption syn_flood\t1
\toption input\t\tREJECT
\toption output\t\tACCEPT
\toption forward\t\tREJECT
# Uncomment this line to disable ipv6 rules
#\toption disable_ipv6\t1

config zone
\toption name\t\tlan
\tlist   network\t\t'lan'
\toption input\t\tACCEPT
\toption output\t\tACCEPT
\toption forward\t\tACCEPT

config zone
\toption name\t\twan
\tlist   network\t\t'wan'
\tlist   network\t\t'wan6'
\toption input\t\tREJECT
\toption output\t\tACCEPT
\toption forward\t\tREJECT
\toption masq\t\t1
\toption mtu_fix\t\t1

config forwarding
\toption src\t\tlan
\toption dest\t\twan

# We need to accept udp packets on port 68,
# see https://dev.openwrt.org/ticket/4108
config rule
\toption name\t\tAllow-DHCP-Renew
\toption src\t\twan
\toption proto\t\tudp
\toption dest_port\t68
\toption target\t\tACCEPT
\toption family\t\tipv4

# Allow IPv4 ping
config rule
\toption name\t\tAllow-Ping
\toption src\t\twan
\toption proto\t\ticmp
\toption icmp_type\techo-request
\toption family\t\tipv4
\toption target\t\tACCEPT

config rule
\toption name\t\tAllow-IGMP
\toption src\t\twan
\toption proto\t\tigmp
\toption family\t\tipv4
\toption target\t\tACCEPT

# Allow DHCPv6 replies
config rule
\toption name\t\tAllow-DHCPv6
\toption src\t\twan
\toption proto\t\tudp
\toption dest_port\t546
\toption family\t\tipv6
\toption target\t\tACCEPT

config rule
\toption name\t\tAllow-MLD
\toption src\t\twan
\toption proto\t\ticmp
\toption src_ip\t\tfe80::/10
\tlist icmp_type\t\t'130/0'
\tlist icmp_type\t\t'131/0'
\tlist icmp_type\t\t'132/0'
\tlist icmp_type\t\t'143/0'
\toption family\t\tipv6
\toption target\t\tACCEPT

# Allow essential incoming IPv6 ICMP traffic
config rule
\toption name\t\tAllow-ICMPv6-Input
\toption src\t\twan
\toption proto\ticmp
\tlist icmp_type\t\techo-request
\tlist icmp_type\t\techo-reply
\tlist icmp_type\t\tdestination-unreachable
\tlist icmp_type\t\tpacket-too-big
\tlist icmp_type\t\ttime-exceeded
\tlist icmp_type\t\tbad-header
\tlist icmp_type\t\tunknown-header-type
\tlist icmp_type\t\trouter-solicitation
\tlist icmp_type\t\tneighbour-solicitation
\tlist icmp_type\t\trouter-advertisement
\tlist icmp_type\t\tneighbour-advertisement
\toption limit\t\t1000/sec
\toption family\t\tipv6
\toption target\t\tACCEPT

# Allow essential forwarded IPv6 ICMP traffic
config rule
\toption name\t\tAllow-ICMPv6-Forward
\toption src\t\twan
\toption dest\t\t*
\toption proto\t\ticmp
\tlist icmp_type\t\techo-request
\tlist icmp_type\t\techo-reply
\tlist icmp_type\t\tdestination-unreachable
\tlist icmp_type\t\tpacket-too-big
\tlist icmp_type\t\ttime-exceeded
\tlist icmp_type\t\tbad-header
\tlist icmp_type\t\tunknown-header-type
\toption limit\t\t1000/sec
\toption family\t\tipv6
\toption target\t\tACCEPT

config rule
\toption name\t\tAllow-IPSec-ESP
\toption src\t\twan
\toption dest\t\tlan
\toption proto\t\tesp
\toption target\t\tACCEPT

config rule
\toption name\t\tAllow-ISAKMP
\toption src\t\twan
\toption dest\t\tlan
\toption dest_port\t500
\toption proto\t\tudp
\toption target\t\tACCEPT
";

    /// What a user typically adds in LuCI.
    const ADDED: &str = "
config redirect
\toption name 'Allow-SSH'
\toption src 'wan'
\toption src_dport '2222'
\toption dest 'lan'
\toption dest_ip '192.168.1.2'
\toption dest_port '22'
\toption proto 'tcp'
\toption target 'DNAT'

config redirect
\toption name 'torrent'
\toption src 'wan'
\toption src_dport '6881-6889'
\toption dest_ip '192.168.1.3'

config redirect
\toption name 'off'
\toption enabled '0'
\toption src 'wan'
\toption src_dport '3000'

config redirect
\toption name 'from-lan'
\toption src 'lan'
\toption src_dport '4000'

config redirect
\toption name 'snat'
\toption target 'SNAT'
\toption src 'wan'
\toption src_dport '5000'
\toption src_dip '203.0.113.7'
\toption dest 'lan'

config redirect
\toption src 'wan'
\toption src_dport '!1000:1999'
\toption proto 'udp'

config redirect
\toption name 'v6'
\toption src 'wan'
\toption src_dport '6000'
\toption dest_ip 'fd00::2'

config redirect
\toption name 'bad port'
\toption src 'wan'
\toption src_dport '70000'

config rule 'web'
\toption src 'wan'
\tlist dest_port '80'
\tlist dest_port '443'
\toption proto 'tcp'
\toption target 'accept'

config rule
\toption name 'words'
\toption src '*'
\toption dest_port '8000 8080:8090'
\toption proto 'tcp udp'
\toption target 'ACCEPT'

config rule
\toption name 'drop'
\toption src 'wan'
\toption dest_port '9000'
\toption target 'DROP'

config rule
\toption name 'no-target'
\toption src 'wan'
\toption dest_port '9001'

config rule
\toption name 'all-tcp'
\toption src 'wan'
\toption proto '6'
\toption target 'ACCEPT'

config rule
\toption name 'everything'
\toption src 'wan'
\toption proto 'all'
\toption dest_port '9'
\toption target 'ACCEPT'

config rule
\toption name 'to-router-only'
\toption dest 'wan'
\toption dest_port '7000'
\toption target 'ACCEPT'
";

    fn claim(proto: Option<Proto>, lo: u16, hi: u16, invert: bool, source: &str) -> PortClaim {
        PortClaim {
            proto,
            lo,
            hi,
            invert,
            source: source.into(),
        }
    }

    #[test]
    fn default_firewall() {
        let fw = parse("firewall", DEFAULT).unwrap();
        let zones = wan_zones(&fw, &["wan", "wan6"], Some("eth1"));
        assert_eq!(zones, ["wan"]);
        assert_eq!(
            claims(&fw, &zones),
            vec![
                claim(
                    Some(Proto::Udp),
                    68,
                    68,
                    false,
                    "firewall rule 'Allow-DHCP-Renew'"
                ),
                claim(
                    Some(Proto::Udp),
                    500,
                    500,
                    false,
                    "firewall rule 'Allow-ISAKMP'"
                ),
            ]
        );
    }

    #[test]
    fn redirects_and_rules() {
        let fw = parse("firewall", &format!("{DEFAULT}{ADDED}")).unwrap();
        let c = claims(&fw, &["wan".to_string()]);
        let ours: Vec<_> = c.into_iter().skip(2).collect();
        assert_eq!(
            ours,
            vec![
                claim(
                    Some(Proto::Tcp),
                    2222,
                    2222,
                    false,
                    "firewall redirect 'Allow-SSH'"
                ),
                claim(None, 6881, 6889, false, "firewall redirect 'torrent'"),
                claim(
                    Some(Proto::Udp),
                    1000,
                    1999,
                    true,
                    "firewall redirect @redirect[5]"
                ),
                claim(Some(Proto::Tcp), 80, 80, false, "firewall rule 'web'"),
                claim(Some(Proto::Tcp), 443, 443, false, "firewall rule 'web'"),
                claim(None, 8000, 8000, false, "firewall rule 'words'"),
                claim(None, 8080, 8090, false, "firewall rule 'words'"),
                claim(Some(Proto::Tcp), 0, 65535, false, "firewall rule 'all-tcp'"),
                claim(None, 0, 65535, false, "firewall rule 'everything'"),
            ]
        );
    }

    #[test]
    fn zones_by_network_or_device() {
        let fw = parse(
            "firewall",
            "config zone\n\toption name 'lan'\n\toption network 'lan'\n\
             config zone\n\toption name 'wan'\n\toption network 'wan wan6'\n\
             config zone\n\toption name 'vpn'\n\tlist device 'tun+'\n\
             config zone\n\toption name 'modem'\n\tlist device 'eth2'\n\
             config zone\n\toption name 'off'\n\toption enabled 0\n\tlist network 'wwan'\n",
        )
        .unwrap();
        assert_eq!(wan_zones(&fw, &["wan6"], None), ["wan"]);
        assert_eq!(wan_zones(&fw, &["wwan"], Some("tun0")), ["vpn"]);
        assert_eq!(wan_zones(&fw, &["wwan"], Some("eth2")), ["modem"]);
        assert_eq!(wan_zones(&fw, &["lan", "wan"], None), ["lan", "wan"]);
        // nothing matches: the zone named wan
        assert_eq!(wan_zones(&fw, &["x"], Some("eth9")), ["wan"]);
        let none = parse("firewall", "config zone\n\toption name 'lan'\n").unwrap();
        assert!(wan_zones(&none, &["wan"], None).is_empty());
    }

    #[test]
    fn inversions_and_invalid_sections() {
        let fw = parse(
            "firewall",
            "config redirect 'r1'
\toption src 'wan'
\toption src_dport '!1000-1999'
\toption proto '!tcp'
config redirect 'r2'
\toption src 'wan'
\toption src_dport '80 81'
config redirect 'r3'
\toption src 'wan'
\toption src_dport '80'
\toption family 'bogus'
config redirect 'r4'
\toption src 'wan'
\toption src_dport '80'
\toption enabled 'maybe'
config redirect 'r5'
\toption src 'wan'
\toption target 'frobnicate'
config rule 'r6'
\toption src 'wan'
\toption proto 'icmp esp'
\toption target 'ACCEPT'
config rule 'r7'
\toption src 'wan'
\toption proto 'udp'
\toption dest_port '53 !1-1024'
\toption target 'acc'
",
        )
        .unwrap();
        let c = claims(&fw, &["wan".to_string()]);
        assert_eq!(
            c,
            vec![
                claim(None, 1000, 1999, true, "firewall redirect 'r1'"),
                claim(Some(Proto::Udp), 53, 53, false, "firewall rule 'r7'"),
                claim(Some(Proto::Udp), 1, 1024, true, "firewall rule 'r7'"),
            ]
        );
        let held = |p, port| c.iter().any(|c| c.covers(p, port));
        assert!(held(Proto::Tcp, 2500));
        assert!(!held(Proto::Tcp, 1500));
        assert!(held(Proto::Udp, 53));
        assert!(held(Proto::Udp, 4000));
    }
}
