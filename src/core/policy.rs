//! Who may map what: permission rules, secure mode, quotas, collisions with
//! other mechanisms, and the bounded search for a free external port.
//!
//! Owns: [`Policy`], [`Refusal`] and [`ClientKey`], whom a per-client
//! quota or rate limit counts. Whether a local service holds a port is
//! asked of the caller's [`Facts`]; the [`PortClaim`]s it checks are read
//! by `config::firewall`. Pure: reads the table, never changes it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub use crate::config::firewall::PortClaim;
use crate::config::{Config, PermRule};
use crate::core::facts::Facts;
use crate::core::table::{Key, Mapping, Table};
use crate::proto::Proto;

/// The most candidate ports one search examines. Each probe is a hash
/// lookup, so a search costs microseconds; miniupnpd walks all 65535.
pub const SEARCH_LIMIT: usize = 4096;

/// Whom a per-client quota, cap or rate limit counts. An IPv4 client is
/// its address. An IPv6 client is its /64: a host may use any number of
/// addresses inside its prefix (temporary addresses, RFC 8981), so
/// counting addresses would multiply its share; one /64 is one client.
/// A link-local address counts alone, since every link shares fe80::/64.
/// An IPv4-mapped IPv6 address is the IPv4 client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4(Ipv4Addr),
    /// The first 64 bits of a global or unique-local address.
    V6Net([u8; 8]),
    V6LinkLocal(Ipv6Addr),
}

impl ClientKey {
    pub fn of(a: IpAddr) -> ClientKey {
        match a {
            IpAddr::V4(a) => ClientKey::V4(a),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4),
                None if crate::core::lan::is_link_local(&a) => ClientKey::V6LinkLocal(a),
                None => {
                    let o = a.octets();
                    let mut net = [0u8; 8];
                    net.copy_from_slice(&o[..8]);
                    ClientKey::V6Net(net)
                }
            },
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(a) => write!(f, "{a}"),
            ClientKey::V6Net(n) => {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(n);
                write!(f, "{}/64", Ipv6Addr::from(o))
            }
            ClientKey::V6LinkLocal(a) => write!(f, "{a}"),
        }
    }
}

/// Why a request is refused. Each front end turns this into its own code
/// (UPnP 501/606/718/728/729, NAT-PMP 2/3/4, PCP
/// NOT_AUTHORIZED/NETWORK_FAILURE/NO_RESOURCES/…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The permission rules deny it (or no rule matches).
    NotAllowed,
    /// Secure mode: the internal client is not the requester.
    SecureMode,
    /// Another client's mapping holds this external port and protocol.
    Conflict,
    /// A firewall rule or a local service holds the port.
    OtherMechanism(String),
    /// The client holds its quota of mappings.
    ClientQuota,
    /// The table is full.
    TableFull,
    /// The search found no usable port within its bound.
    NoFreePort,
    /// The requester may not act on this mapping (wrong owner, wrong PCP nonce).
    NotOwner,
    /// The firewall is down (fw4 stopped) and the mapping would be new.
    FirewallDown,
    /// New mappings are refused because the Internet cannot reach them
    /// (`core::wan::Closed`, in its short words).
    Unreachable(String),
}

impl Refusal {
    /// Short reason for logs and the ubus `refuse` event.
    pub fn reason(&self) -> String {
        match self {
            Refusal::NotAllowed => "denied by permission rules".into(),
            Refusal::SecureMode => "secure mode: internal client is not the requester".into(),
            Refusal::Conflict => "port held by another client's mapping".into(),
            Refusal::OtherMechanism(s) => format!("port held by {s}"),
            Refusal::ClientQuota => "client mapping quota reached".into(),
            Refusal::TableFull => "mapping table full".into(),
            Refusal::NoFreePort => "no free external port".into(),
            Refusal::NotOwner => "not the owner of the mapping".into(),
            Refusal::FirewallDown => "the firewall is down (fw4 stopped)".into(),
            Refusal::Unreachable(why) => format!("new mappings are refused: {why}"),
        }
    }
}

/// The policy half of the configuration, plus the firewall's static claims.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub secure_mode: bool,
    pub rules: Vec<PermRule>,
    pub max_mappings: u32,
    pub max_per_client: u32,
    pub claims: Vec<PortClaim>,
}

/// A request for a mapping, as every front end states it.
#[derive(Debug, Clone)]
pub struct Want {
    pub client: Ipv4Addr,
    pub proto: Proto,
    /// The external port asked for; with `search`, 0 means "same as internal".
    pub eport: u16,
    pub iaddr: Ipv4Addr,
    pub iport: u16,
    /// May another external port be chosen if this one is unusable?
    pub search: bool,
    /// Also require the same port of the other protocol not to be held by
    /// another host (NAT-PMP companion port, RFC 6886 §3.3).
    pub companion: bool,
}

/// Which existing mapping at the chosen key a request may replace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Any mapping of the same internal host (UPnP: AddPortMapping by the
    /// same client updates the entry).
    SameHost,
    /// Only the NAT-PMP/PCP mapping of the same internal address, protocol
    /// and port (RFC 6886 §3.3, RFC 6887 §11.1): a NAT-PMP or PCP request
    /// must never take over another application's mapping on that host.
    SameEndpoint,
}

impl Policy {
    pub fn from_config(cfg: &Config, claims: Vec<PortClaim>) -> Policy {
        Policy {
            secure_mode: cfg.secure_mode,
            rules: cfg.perm_rules.clone(),
            max_mappings: cfg.max_mappings,
            max_per_client: cfg.max_mappings_per_client,
            claims,
        }
    }

    /// First matching rule decides; no match denies (safer than
    /// miniupnpd, which allows).
    pub fn permitted(&self, eport: u16, iaddr: Ipv4Addr, iport: u16) -> bool {
        self.rules
            .iter()
            .find(|r| r.matches(eport, iaddr, iport))
            .is_some_and(|r| r.allow)
    }

    /// The external ports the rules allow for this internal endpoint, as
    /// sorted disjoint ranges. Interval arithmetic over the rules, so a
    /// search never probes a denied port.
    pub fn allowed_eports(&self, iaddr: Ipv4Addr, iport: u16) -> Vec<(u16, u16)> {
        let mut remaining: Vec<(u16, u16)> = vec![(0, u16::MAX)];
        let mut allowed: Vec<(u16, u16)> = Vec::new();
        for r in self
            .rules
            .iter()
            .filter(|r| r.matches_internal(iaddr, iport))
        {
            let (lo, hi) = r.ext_ports;
            let mut rest = Vec::with_capacity(remaining.len() + 1);
            for &(a, b) in &remaining {
                let (clo, chi) = (a.max(lo), b.min(hi));
                if clo > chi {
                    rest.push((a, b));
                    continue;
                }
                if r.allow {
                    allowed.push((clo, chi));
                }
                if a < clo {
                    rest.push((a, clo - 1));
                }
                if chi < b {
                    rest.push((chi + 1, b));
                }
            }
            remaining = rest;
            if remaining.is_empty() {
                break;
            }
        }
        allowed.sort_unstable();
        allowed
    }

    /// The static claim holding a port, if any.
    pub fn claimed_by(&self, proto: Proto, port: u16) -> Option<&PortClaim> {
        self.claims.iter().find(|c| c.covers(proto, port))
    }

    /// Can this exact key serve the request? `Ok(true)` means the
    /// requester's own mapping already holds it (a renewal). With
    /// `Renewal::SameEndpoint` only a NAT-PMP/PCP mapping of the same
    /// internal address *and port* counts as the requester's own.
    fn check_key(
        &self,
        table: &Table,
        facts: &dyn Facts,
        want: &Want,
        key: Key,
        renewal: Renewal,
    ) -> Result<bool, Refusal> {
        if !self.permitted(key.eport, want.iaddr, want.iport) {
            return Err(Refusal::NotAllowed);
        }
        if let Some(m) = table.get(&key) {
            let own = m.iaddr == want.iaddr
                && (renewal == Renewal::SameHost
                    || (m.iport == want.iport && m.origin.is_natpmp_or_pcp()));
            return if own {
                Ok(true)
            } else {
                Err(Refusal::Conflict)
            };
        }
        if want.companion {
            if let Some(m) = table.get(&Key::new(key.proto.other(), key.eport)) {
                if m.iaddr != want.iaddr {
                    return Err(Refusal::Conflict);
                }
            }
        }
        self.other_mechanism(facts, key)?;
        Ok(false)
    }

    /// A firewall rule of `/etc/config/firewall` or a local service
    /// holding the port.
    fn other_mechanism(&self, facts: &dyn Facts, key: Key) -> Result<(), Refusal> {
        if let Some(c) = self.claimed_by(key.proto, key.eport) {
            return Err(Refusal::OtherMechanism(c.source.clone()));
        }
        if facts.wan_listener(key.proto, key.eport) {
            return Err(Refusal::OtherMechanism(format!(
                "a local service listening on {}/{}",
                key.proto.as_lower(),
                key.eport
            )));
        }
        Ok(())
    }

    /// Whether an existing mapping would still be granted (after a reload
    /// or a firewall change): the same checks as a new request, except
    /// the table's own conflicts and the quotas, which the caller counts.
    pub fn recheck(&self, facts: &dyn Facts, m: &Mapping) -> Result<(), Refusal> {
        if self.secure_mode && m.iaddr != m.client {
            return Err(Refusal::SecureMode);
        }
        if !self.permitted(m.key.eport, m.iaddr, m.iport) {
            return Err(Refusal::NotAllowed);
        }
        self.other_mechanism(facts, m.key)
    }

    fn check_quota(&self, table: &Table, client: Ipv4Addr) -> Result<(), Refusal> {
        if table.count_for(client) >= self.max_per_client {
            return Err(Refusal::ClientQuota);
        }
        if table.len() >= self.max_mappings as usize {
            return Err(Refusal::TableFull);
        }
        Ok(())
    }

    /// Chooses the key a request gets, without changing the table.
    /// Returns the key and whether it renews the requester's own mapping.
    pub fn choose(
        &self,
        table: &Table,
        facts: &dyn Facts,
        want: &Want,
    ) -> Result<(Key, bool), Refusal> {
        self.choose_with(table, facts, want, Renewal::SameHost)
    }

    /// [`Policy::choose`] with an explicit notion of which existing
    /// mapping the request may take over.
    pub fn choose_with(
        &self,
        table: &Table,
        facts: &dyn Facts,
        want: &Want,
        renewal: Renewal,
    ) -> Result<(Key, bool), Refusal> {
        if self.secure_mode && want.iaddr != want.client {
            return Err(Refusal::SecureMode);
        }
        let preferred = if want.eport == 0 {
            want.iport
        } else {
            want.eport
        };
        let first = Key::new(want.proto, preferred);
        let first_err = match self.check_key(table, facts, want, first, renewal) {
            Ok(true) => return Ok((first, true)),
            Ok(false) => {
                self.check_quota(table, want.client)?;
                return Ok((first, false));
            }
            Err(e) => e,
        };
        if !want.search {
            return Err(first_err);
        }
        self.check_quota(table, want.client)?;
        let ranges = self.allowed_eports(want.iaddr, want.iport);
        if ranges.is_empty() {
            return Err(Refusal::NotAllowed);
        }
        for port in candidates(&ranges, preferred).take(SEARCH_LIMIT) {
            if port == 0 || port == preferred {
                continue;
            }
            let key = Key::new(want.proto, port);
            if table.get(&key).is_some() {
                continue;
            }
            if let Ok(false) = self.check_key(table, facts, want, key, renewal) {
                return Ok((key, false));
            }
        }
        Err(Refusal::NoFreePort)
    }
}

/// Ports in `ranges` starting at the first one ≥ `start`, ascending, then
/// wrapping round to the lowest.
fn candidates(ranges: &[(u16, u16)], start: u16) -> impl Iterator<Item = u16> + '_ {
    let split = ranges.partition_point(|&(_, hi)| hi < start);
    let (before, after) = ranges.split_at(split);
    after
        .iter()
        .map(move |&(lo, hi)| (lo.max(start), hi))
        .chain(before.iter().copied())
        .flat_map(|(lo, hi)| lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::facts::FixedFacts;
    use crate::core::table::tests::mapping;

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 1, d)
    }

    fn rule(allow: bool, ext: (u16, u16), int: (u16, u16)) -> PermRule {
        PermRule {
            allow,
            ext_ports: ext,
            int_addr: Ipv4Addr::UNSPECIFIED,
            int_prefix: 0,
            int_ports: int,
            comment: String::new(),
        }
    }

    fn policy() -> Policy {
        Policy {
            secure_mode: true,
            rules: vec![
                rule(true, (1024, 65535), (1024, 65535)),
                rule(false, (0, 65535), (0, 65535)),
            ],
            max_mappings: 100,
            max_per_client: 3,
            claims: vec![PortClaim {
                proto: Some(Proto::Tcp),
                lo: 2222,
                hi: 2222,
                invert: false,
                source: "firewall redirect 'ssh'".into(),
            }],
        }
    }

    fn want(eport: u16, iport: u16, search: bool) -> Want {
        Want {
            client: ip(2),
            proto: Proto::Tcp,
            eport,
            iaddr: ip(2),
            iport,
            search,
            companion: false,
        }
    }

    #[test]
    fn clients_are_counted_by_address_or_by_64() {
        let k = |s: &str| ClientKey::of(s.parse().unwrap());
        assert_eq!(k("192.168.1.2"), ClientKey::V4(ip(2)));
        assert_eq!(k("::ffff:192.168.1.2"), ClientKey::V4(ip(2)));
        // every address of one /64 is one client; another /64 is another
        assert_eq!(k("fd77::2"), k("fd77::1234:5678:9abc:def0"));
        assert_ne!(k("fd77::2"), k("fd77:0:0:1::2"));
        assert_eq!(k("2001:db8:1:2::9").to_string(), "2001:db8:1:2::/64");
        // link-local hosts share fe80::/64: each counts alone
        assert_ne!(k("fe80::1"), k("fe80::2"));
        assert_eq!(k("fe80::1").to_string(), "fe80::1");
    }

    #[test]
    fn first_match_and_default_deny() {
        let p = policy();
        assert!(p.permitted(8080, ip(2), 8080));
        assert!(!p.permitted(80, ip(2), 8080));
        let empty = Policy::default();
        assert!(!empty.permitted(8080, ip(2), 8080));
    }

    #[test]
    fn allowed_ranges_respect_order() {
        let mut p = policy();
        p.rules.insert(0, rule(false, (5000, 5999), (0, 65535)));
        assert_eq!(
            p.allowed_eports(ip(2), 2000),
            vec![(1024, 4999), (6000, 65535)]
        );
        assert_eq!(p.allowed_eports(ip(2), 80), vec![]);
    }

    #[test]
    fn exact_requests() {
        let p = policy();
        let mut t = Table::new();
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(8080, 8080, false)),
            Ok((Key::new(Proto::Tcp, 8080), false))
        );
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(80, 8080, false)),
            Err(Refusal::NotAllowed)
        );
        assert!(matches!(
            p.choose(&t, &FixedFacts::default(), &want(2222, 2222, false)),
            Err(Refusal::OtherMechanism(_))
        ));
        t.put(mapping(Proto::Tcp, 8080, 3, None));
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(8080, 8080, false)),
            Err(Refusal::Conflict)
        );
        t.put(mapping(Proto::Tcp, 9000, 2, None));
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(9000, 9000, false)),
            Ok((Key::new(Proto::Tcp, 9000), true))
        );
        let mut w = want(9001, 9001, false);
        w.iaddr = ip(9);
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &w),
            Err(Refusal::SecureMode)
        );
    }

    #[test]
    fn search_skips_taken_and_claimed_ports() {
        let p = policy();
        let mut t = Table::new();
        t.put(mapping(Proto::Tcp, 2221, 3, None));
        // 2221 is another client's, 2222 is claimed by a redirect.
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(2221, 2221, true)),
            Ok((Key::new(Proto::Tcp, 2223), false))
        );
        // a denied preferred port searches inside the allowed ranges
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(80, 2000, true)),
            Ok((Key::new(Proto::Tcp, 1024), false))
        );
        // nothing allowed for a low internal port: refused without a walk
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(80, 80, true)),
            Err(Refusal::NotAllowed)
        );
        // wrap-around from the top of the range
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(65535, 65535, true)),
            Ok((Key::new(Proto::Tcp, 65535), false))
        );
    }

    #[test]
    fn quotas() {
        let p = policy();
        let mut t = Table::new();
        for port in [5000, 5001, 5002] {
            t.put(mapping(Proto::Udp, port, 2, None));
        }
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &want(6000, 6000, false)),
            Err(Refusal::ClientQuota)
        );
        // a renewal is not a new mapping
        let mut w = want(5000, 5000, false);
        w.proto = Proto::Udp;
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &w),
            Ok((Key::new(Proto::Udp, 5000), true))
        );
    }

    #[test]
    fn companion_port() {
        let p = policy();
        let mut t = Table::new();
        t.put(mapping(Proto::Udp, 7000, 3, None));
        let mut w = want(7000, 7000, false);
        w.companion = true;
        assert_eq!(
            p.choose(&t, &FixedFacts::default(), &w),
            Err(Refusal::Conflict)
        );
    }

    #[test]
    fn natpmp_and_pcp_renew_only_their_own_endpoint() {
        use crate::core::table::Origin;
        let p = policy();
        let mut t = Table::new();
        // the same host's UPnP mapping on 8080 → 8080
        t.put(mapping(Proto::Tcp, 8080, 2, None));
        let w = want(8080, 8080, false);
        assert_eq!(
            p.choose_with(&t, &FixedFacts::default(), &w, Renewal::SameHost),
            Ok((Key::new(Proto::Tcp, 8080), true))
        );
        assert_eq!(
            p.choose_with(&t, &FixedFacts::default(), &w, Renewal::SameEndpoint),
            Err(Refusal::Conflict)
        );
        let mut m = mapping(Proto::Tcp, 9000, 2, None);
        m.origin = Origin::NatPmp;
        t.put(m);
        assert_eq!(
            p.choose_with(
                &t,
                &FixedFacts::default(),
                &want(9000, 9000, false),
                Renewal::SameEndpoint
            ),
            Ok((Key::new(Proto::Tcp, 9000), true))
        );
        // another internal port of the same host does not take it over
        assert_eq!(
            p.choose_with(
                &t,
                &FixedFacts::default(),
                &want(9000, 9001, true),
                Renewal::SameEndpoint
            ),
            Ok((Key::new(Proto::Tcp, 9001), false))
        );
    }

    #[test]
    fn inverted_claims() {
        let c = PortClaim {
            proto: None,
            lo: 100,
            hi: 200,
            invert: true,
            source: String::new(),
        };
        assert!(c.covers(Proto::Udp, 99));
        assert!(!c.covers(Proto::Tcp, 150));
    }

    fn listening(port: u16) -> FixedFacts {
        FixedFacts {
            listeners: vec![(Proto::Tcp, port)],
            ..FixedFacts::default()
        }
    }

    #[test]
    fn local_listeners_collide() {
        let p = policy();
        let t = Table::new();
        assert!(matches!(
            p.choose(&t, &listening(8080), &want(8080, 8080, false)),
            Err(Refusal::OtherMechanism(_))
        ));
        assert_eq!(
            p.choose(&t, &listening(8080), &want(8080, 8080, true)),
            Ok((Key::new(Proto::Tcp, 8081), false))
        );
    }
}
