//! The ruleset of the nftables backend as nft text: the map and set
//! declarations (which the fw4 include file repeats), our chains and
//! their rules, and the base chains hooked in where fw4 is absent.
//!
//! Owns: [`structure`], [`Setup`] (what the rules depend on) and the
//! checks on names that reach nft text from configuration. Pure text:
//! `super` runs it.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::config::NftNames;

/// Map and set names inside the table.
pub(super) const DNAT: &str = "upnp_dnat";
pub(super) const DNAT_RH: &str = "upnp_dnat_rh";
pub(super) const FWD: &str = "upnp_fwd";
pub(super) const SNAT: &str = "upnp_snat";
pub(super) const EXTADDR: &str = "upnp_extaddr";
pub(super) const ALIVE: &str = "upnp_alive";
/// The WAN address and ports of the STUN client's sockets: fw4's input
/// chain accepts datagrams to them (the include file
/// `chain-pre/input/20-rupnpd.nft` holds the rule).
pub(super) const STUN: &str = "upnp_stun";
/// IPv6 pinholes, one set per wildcard shape: any remote, remote host
/// (`_h`), remote port (`_p`), both (`_hp`).
pub(super) const PIN6: &str = "upnp_pin6";
pub(super) const PIN6_H: &str = "upnp_pin6_h";
pub(super) const PIN6_P: &str = "upnp_pin6_p";
pub(super) const PIN6_HP: &str = "upnp_pin6_hp";
/// Comment on our main DNAT rule: a firewall reload flushes every rule
/// (and, depending on the nft version, possibly set elements), so
/// "our rule is there and so is the canary element" means intact.
pub(super) const MARKER: &str = "rupnpd";
/// Base chains the daemon adds when fw4 is absent.
pub(super) const BASE_FORWARD: &str = "rupnpd_forward";
pub(super) const BASE_DSTNAT: &str = "rupnpd_dstnat";
pub(super) const BASE_SRCNAT: &str = "rupnpd_srcnat";

/// Declarations, identical to those of the fw4 include file
/// (`openwrt-pkg/rupnpd/files/nftables.d/table-post/20-rupnpd.nft`):
/// `add` of an existing map only succeeds if it is declared the same way.
pub(super) const DECLARATIONS: [(&str, &str, &str); 11] = [
    (
        "map",
        DNAT,
        "type inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; counter;",
    ),
    (
        "map",
        DNAT_RH,
        "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval,timeout; counter;",
    ),
    (
        "set",
        FWD,
        "type ipv4_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "map",
        SNAT,
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service : ipv4_addr . inet_service; flags timeout; counter;",
    ),
    ("set", EXTADDR, "type ipv4_addr;"),
    ("set", ALIVE, "type inet_service;"),
    ("set", STUN, "type ipv4_addr . inet_service;"),
    (
        "set",
        PIN6,
        "type ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_H,
        "type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_P,
        "type inet_service . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_HP,
        "type ipv6_addr . inet_service . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
];

/// What the rules in our chains depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub wan_dev: Option<String>,
    pub lan_devs: Vec<String>,
    /// The address the router's NAT translates to (PCP PEER's SNAT), and
    /// the first the hairpin rule matches.
    pub ext_addr: Option<Ipv4Addr>,
    /// Another address LAN hosts may reach mappings through: the public
    /// address STUN found in front of the router.
    pub public_addr: Option<Ipv4Addr>,
    /// Where the STUN client's answers arrive (its sockets' address and
    /// ports).
    pub stun: Vec<(Ipv4Addr, u16)>,
    pub hairpin: bool,
    pub log_packets: bool,
    pub log_connections: bool,
}

/// Quotes a device name for nft: names come from configuration, so
/// anything outside the kernel's allowed characters is refused.
fn dev_ok(d: &str) -> bool {
    !d.is_empty()
        && d.len() < 16
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

/// An nft identifier (table, chain) from configuration.
pub(super) fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

fn dev_set(devs: &[String]) -> String {
    let quoted: Vec<String> = devs
        .iter()
        .filter(|d| dev_ok(d))
        .map(|d| format!("\"{d}\""))
        .collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// The structure and rules: idempotent, so it serves at start and after
/// every firewall reload. `own_base` adds hooked base chains (no fw4).
pub fn structure(n: &NftNames, s: &Setup, own_base: bool) -> String {
    let t = &n.table;
    let mut c = String::with_capacity(2048);
    let _ = writeln!(c, "add table inet {t}");
    for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
        let _ = writeln!(c, "add chain inet {t} {chain}");
        let _ = writeln!(c, "flush chain inet {t} {chain}");
    }
    for (kind, name, decl) in DECLARATIONS {
        let _ = writeln!(c, "add {kind} inet {t} {name} {{ {decl} }}");
    }
    if own_base {
        let base = [
            (
                BASE_FORWARD,
                "filter hook forward priority filter",
                &n.forward_chain,
            ),
            (
                BASE_DSTNAT,
                "nat hook prerouting priority dstnat",
                &n.prerouting_chain,
            ),
            (
                BASE_SRCNAT,
                "nat hook postrouting priority srcnat",
                &n.postrouting_chain,
            ),
        ];
        for (name, hook, target) in base {
            let _ = writeln!(
                c,
                "add chain inet {t} {name} {{ type {hook}; policy accept; }}"
            );
            let _ = writeln!(c, "flush chain inet {t} {name}");
            let _ = writeln!(c, "add rule inet {t} {name} jump {target}");
        }
    }
    let (fw, pre, post) = (&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain);
    let lans = dev_set(&s.lan_devs);
    let have_lan = s.lan_devs.iter().any(|d| dev_ok(d));
    if let Some(w) = s.wan_dev.as_deref().filter(|w| dev_ok(w)) {
        let fwd_match = format!("ct status dnat ip daddr . meta l4proto . th dport @{FWD}");
        let _ = writeln!(
            c,
            "add rule inet {t} {pre} iifname \"{w}\" meta l4proto {{ tcp, udp }} dnat ip to ip saddr . meta l4proto . th dport map @{DNAT_RH}"
        );
        let _ = writeln!(
            c,
            "add rule inet {t} {pre} iifname \"{w}\" meta nfproto ipv4 meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @{DNAT} comment \"{MARKER}\""
        );
        if s.log_connections {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" ct state new {fwd_match} log prefix \"rupnpd conn: \" level info"
            );
        }
        if s.log_packets {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" {fwd_match} limit rate 20/second burst 50 packets log prefix \"rupnpd pkt: \" level info"
            );
        }
        let _ = writeln!(
            c,
            "add rule inet {t} {fw} iifname \"{w}\" {fwd_match} accept"
        );
        // IPv6 pinholes: no translation, one lookup per wildcard shape.
        for (set, key) in [
            (PIN6, "ip6 daddr . meta l4proto . th dport"),
            (PIN6_H, "ip6 saddr . ip6 daddr . meta l4proto . th dport"),
            (PIN6_P, "th sport . ip6 daddr . meta l4proto . th dport"),
            (
                PIN6_HP,
                "ip6 saddr . th sport . ip6 daddr . meta l4proto . th dport",
            ),
        ] {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" meta nfproto ipv6 {key} @{set} accept"
            );
        }
        if s.hairpin && have_lan {
            let _ = writeln!(
                c,
                "add rule inet {t} {pre} iifname {lans} ip daddr @{EXTADDR} meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @{DNAT}"
            );
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname {lans} {fwd_match} accept"
            );
            let _ = writeln!(
                c,
                "add rule inet {t} {post} iifname {lans} oifname {lans} {fwd_match} masquerade"
            );
        }
        let _ = writeln!(
            c,
            "add rule inet {t} {post} oifname \"{w}\" meta l4proto {{ tcp, udp }} snat ip to ip saddr . meta l4proto . th sport . ip daddr . th dport map @{SNAT}"
        );
    }
    let _ = writeln!(c, "flush set inet {t} {EXTADDR}");
    for a in [s.ext_addr, s.public_addr].into_iter().flatten() {
        let _ = writeln!(c, "add element inet {t} {EXTADDR} {{ {a} }}");
    }
    let _ = writeln!(c, "flush set inet {t} {STUN}");
    for (a, port) in &s.stun {
        let _ = writeln!(c, "add element inet {t} {STUN} {{ {a} . {port} }}");
    }
    let _ = writeln!(c, "add element inet {t} {ALIVE} {{ 1 }}");
    c
}

/// Devices in a set, deduplicated, for logs.
pub fn describe(s: &Setup) -> String {
    let lans: HashSet<&String> = s.lan_devs.iter().collect();
    format!(
        "wan={} lan={:?} ext={}",
        s.wan_dev.as_deref().unwrap_or("-"),
        lans,
        s.ext_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structure_text() {
        let s = Setup {
            wan_dev: Some("r-wan".into()),
            lan_devs: vec!["r-lan".into(), "bad\"dev".into()],
            ext_addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
            public_addr: Some(Ipv4Addr::new(203, 0, 113, 1)),
            stun: vec![(Ipv4Addr::new(192, 0, 3, 1), 40000)],
            hairpin: true,
            log_packets: true,
            log_connections: false,
        };
        let text = structure(&NftNames::default(), &s, false);
        assert!(text.contains("add rule inet fw4 upnp_prerouting iifname \"r-wan\" meta nfproto ipv4 meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @upnp_dnat comment \"rupnpd\"\n"));
        assert!(text.contains("iifname { \"r-lan\" } ip daddr @upnp_extaddr"));
        assert!(!text.contains("bad"));
        assert!(text.contains("log prefix \"rupnpd pkt: \""));
        assert!(!text.contains("rupnpd conn"));
        assert!(!text.contains(BASE_FORWARD));
        assert!(text.contains("add element inet fw4 upnp_extaddr { 192.0.3.1 }"));
        assert!(text.contains("add element inet fw4 upnp_extaddr { 203.0.113.1 }"));
        assert!(text.contains(
            "flush set inet fw4 upnp_stun\nadd element inet fw4 upnp_stun { 192.0.3.1 . 40000 }"
        ));
        let own = structure(&NftNames::default(), &s, true);
        assert!(own.contains("add chain inet fw4 rupnpd_forward { type filter hook forward priority filter; policy accept; }"));
    }

    /// The daemon's declarations and the fw4 include file must agree:
    /// re-declaring a map differently fails fw4's whole ruleset load.
    #[test]
    fn declarations_match_the_fw4_include() {
        let include =
            include_str!("../../../openwrt-pkg/rupnpd/files/nftables.d/table-post/20-rupnpd.nft");
        let norm = |s: &str| {
            s.replace([';', '\n', '\t'], " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let text = norm(
            &include
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        for (kind, name, decl) in DECLARATIONS {
            let want = norm(&format!("{kind} {name} {{ {decl} }}"));
            assert!(text.contains(&want), "include lacks: {want}\n in: {text}");
        }
        for chain in ["upnp_forward", "upnp_prerouting", "upnp_postrouting"] {
            assert!(text.contains(&format!("chain {chain} {{}}")), "{chain}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(ident_ok("fw4") && ident_ok("upnp_forward"));
        assert!(!ident_ok("") && !ident_ok("a b") && !ident_ok("x;y") && !ident_ok("1abc"));
        assert!(dev_ok("pppoe-wan") && !dev_ok("a\"b") && !dev_ok("waytoolongdevicename"));
    }
}
