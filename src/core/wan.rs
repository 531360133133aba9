//! The WAN as the protocols see it: its device, its address, whether it is
//! up, and the one decision of which external address every protocol
//! reports (UPnP, NAT-PMP, PCP, GENA, ubus) and whether new port mappings
//! can be given out at all.
//!
//! Owns: [`Wan`], [`Link`], [`Rules`], [`Stunned`], [`Closed`] and
//! [`Netifd`], netifd's view of the interfaces, which corrects what the
//! kernel shows (netifd knows of an address or a link going down first).
//! Pure: the daemon reads the kernel, netifd and the STUN client and hands
//! the results in.
//!
//! # The external address and the refusal of new mappings
//!
//! | what is known | reported address | new mappings |
//! |---|---|---|
//! | `external_ip` configured | it | refused if it is private and `ext_allow_private_ipv4` is off |
//! | no STUN, or STUN without an answer yet | the WAN address (a private one only with `ext_allow_private_ipv4`) | the same rule on the WAN address (miniupnpd's) |
//! | STUN: open (endpoint-independent) | STUN's public address | allowed |
//! | STUN: filtered | STUN's public address | refused unless `stun_allow_filtered` |
//! | STUN: cannot tell | STUN's public address | refused if the WAN address is private, unless `ext_allow_private_ipv4` or `stun_allow_filtered` |
//!
//! A private reported address is hidden (GetExternalIPAddress empty,
//! NAT-PMP result 3) unless `ext_allow_private_ipv4` is on, as miniupnpd does: clients must
//! not be told an address the Internet cannot use. Mappings that exist
//! when mappings close stay until they expire or are deleted; only new
//! ones are refused.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::core::stun::{FilterKind, Filtering};

/// The WAN link as read from the kernel (and corrected by netifd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub dev: Option<String>,
    pub addr: Option<Ipv4Addr>,
    /// Up, with an address.
    pub up: bool,
}

/// What the configuration says about private addresses and STUN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// `ext_allow_private_ipv4`: report a private address and map ports
    /// with it.
    pub allow_private: bool,
    /// `use_stun`: `Some(stun_allow_filtered)` when STUN is used.
    pub stun: Option<bool>,
}

/// What the STUN client last found, as far as the reported address and
/// the mappings depend on it (`core::stun::Status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stunned {
    pub public: Option<Ipv4Addr>,
    pub filtering: Filtering,
}

impl Default for Stunned {
    fn default() -> Stunned {
        Stunned {
            public: None,
            filtering: Filtering::Unknown,
        }
    }
}

/// Why new port mappings are refused: each protocol answers it with its
/// own code (UPnP 501 ActionFailed, NAT-PMP 3 Network Failure, PCP
/// NETWORK_FAILURE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The address mappings would use is private or shared and
    /// `ext_allow_private_ipv4` is off (no STUN verdict).
    Private(Ipv4Addr),
    /// STUN found that the NAT or firewall in front filters unsolicited
    /// traffic, or changes port numbers; `stun_allow_filtered` is off.
    Filtered(FilterKind),
    /// STUN cannot tell whether the NAT in front filters, and the WAN
    /// address is private.
    Untested(Ipv4Addr),
}

impl Closed {
    /// A few words for the log line and the ubus event of each refusal.
    pub fn short(self) -> String {
        match self {
            Closed::Private(a) => {
                format!("the external address {a} is private (ext_allow_private_ipv4 is off)")
            }
            Closed::Filtered(k) => format!(
                "STUN found the NAT in front {} (stun_allow_filtered is off)",
                match k {
                    FilterKind::AddressDependent => "filtering by address",
                    FilterKind::AddressAndPortDependent => "filtering by address and port",
                    FilterKind::PortTranslated => "changing port numbers",
                }
            ),
            Closed::Untested(a) => format!(
                "the WAN address {a} is private and STUN cannot tell whether the NAT in front filters"
            ),
        }
    }

    /// What a router owner reads in `status` and LuCI: what is refused,
    /// why, and which switch changes it.
    pub fn explain(self) -> String {
        match self {
            Closed::Private(a) => format!(
                "New port mappings are refused: the address {a} is private or shared (CGNAT), so \
                 this router sits behind another NAT and a port opened here is not open on the \
                 Internet. Turn on \"Allow a private external address\" (ext_allow_private_ipv4) \
                 if that NAT forwards ports to this router, or \"Use STUN\" (use_stun) to find \
                 the public address and test the path."
            ),
            Closed::Filtered(_) => "New port mappings are refused: STUN found that the Internet \
                 cannot reach them (see the reachability above). Turn on \"Keep mappings when \
                 filtered\" (stun_allow_filtered) if the NAT in front forwards some ports to this \
                 router anyway."
                .to_string(),
            Closed::Untested(a) => format!(
                "New port mappings are refused: the WAN address {a} is private and the STUN \
                 server cannot tell whether the NAT in front lets unsolicited traffic in. Use a \
                 STUN server with RFC 5780 support, or turn on \"Allow a private external \
                 address\" (ext_allow_private_ipv4) or \"Keep mappings when filtered\" \
                 (stun_allow_filtered) to give them out anyway."
            ),
        }
    }
}

/// What changed when a new view of the WAN (or of STUN, or of the rules)
/// was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WanChange {
    /// The external address reported to clients changed: NAT-PMP and PCP
    /// start a new epoch (RFC 6886 §3.6, RFC 6887 §8.5), GENA events
    /// ExternalIPAddress.
    pub external_changed: bool,
    /// New mappings went from allowed to refused, or back, or the reason
    /// changed.
    pub closed_changed: bool,
}

impl WanChange {
    /// Both changes together.
    pub fn or(self, other: WanChange) -> WanChange {
        WanChange {
            external_changed: self.external_changed || other.external_changed,
            closed_changed: self.closed_changed || other.closed_changed,
        }
    }
}

/// Private, shared (CGNAT, RFC 6598), IETF protocol assignments (RFC
/// 6890), benchmarking (RFC 2544), reserved, loopback, link-local or
/// unspecified.
pub fn is_private(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_private()
        || a.is_loopback()
        || a.is_link_local()
        || a.is_unspecified()
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240
}

/// The WAN, the external address and whether mappings can be given out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wan {
    link: Link,
    /// `external_ip` of the configuration: reported instead of the link's
    /// address (a router behind another NAT with a known public address).
    fixed: Option<Ipv4Addr>,
    rules: Rules,
    stun: Stunned,
    /// The IPv6 prefixes the pinholes live under: the WAN's global
    /// prefixes and the LANs' (delegated) ones, sorted.
    prefixes6: Vec<(Ipv6Addr, u8)>,
}

/// `a/len` with the host bits cleared.
pub fn prefix6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Ipv6Addr::from(u128::from(a) & mask)
}

impl Wan {
    pub fn new(fixed: Option<Ipv4Addr>) -> Wan {
        Wan {
            fixed,
            ..Wan::default()
        }
    }

    /// STUN's public address, when STUN is in use (never with a fixed
    /// address: the configuration's word wins).
    fn stun_public(&self) -> Option<Ipv4Addr> {
        match (self.rules.stun, self.fixed) {
            (Some(_), None) => self.stun.public,
            _ => None,
        }
    }

    /// The address every protocol reports as the external one: the
    /// configured address, else STUN's public address, else the WAN
    /// link's; `None` if there is none, or if it is private and
    /// `ext_allow_private_ipv4` is off (miniupnpd reports nothing then).
    pub fn external_ip(&self) -> Option<Ipv4Addr> {
        let a = self.fixed.or(self.stun_public()).or(self.link.addr)?;
        (self.rules.allow_private || !is_private(a)).then_some(a)
    }

    /// The address the router's own NAT translates to (PCP PEER's source
    /// translation): the configured one, else the link's.
    pub fn nat_addr(&self) -> Option<Ipv4Addr> {
        self.fixed.or(self.link.addr)
    }

    /// STUN's public address when it is not the router's own: LAN hosts
    /// reaching a mapping through it are reflected too (hairpin).
    pub fn public_addr(&self) -> Option<Ipv4Addr> {
        self.stun_public().filter(|p| Some(*p) != self.nat_addr())
    }

    /// Whether the reported external address is private, shared (CGNAT)
    /// or otherwise not globally routable: port mappings then only reach
    /// the next NAT (reported only with `ext_allow_private_ipv4`).
    pub fn external_is_private(&self) -> bool {
        self.external_ip().is_some_and(is_private)
    }

    /// Why new mappings are refused, if they are. See the module
    /// documentation for the table.
    pub fn closed(&self) -> Option<Closed> {
        let allow_private = self.rules.allow_private;
        if let (Some(allow_filtered), Some(_)) = (self.rules.stun, self.stun_public()) {
            return match self.stun.filtering {
                Filtering::EndpointIndependent => None,
                _ if allow_filtered => None,
                Filtering::Filtered(k) => Some(Closed::Filtered(k)),
                Filtering::Unknown => self
                    .link
                    .addr
                    .filter(|a| is_private(*a) && !allow_private)
                    .map(Closed::Untested),
            };
        }
        self.nat_addr()
            .filter(|a| is_private(*a) && !allow_private)
            .map(Closed::Private)
    }

    /// The link is up with an address (ConnectionStatus "Connected").
    pub fn connected(&self) -> bool {
        self.link.up
    }

    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The WAN device's IPv4 address (what local listeners on the WAN
    /// side are bound to), whatever address is reported.
    pub fn link_addr(&self) -> Option<Ipv4Addr> {
        self.link.addr
    }

    /// Applies the IPv6 prefixes seen on the WAN and the LANs (addresses
    /// with their prefix lengths). True if they changed: PCP over IPv6
    /// starts a new epoch (RFC 6887 §8.5: its clients must learn that
    /// their pinholes' addresses may be gone) and announces it.
    pub fn update_prefixes6(&mut self, addrs: &[(Ipv6Addr, u8)]) -> bool {
        let mut p: Vec<(Ipv6Addr, u8)> = addrs.iter().map(|(a, n)| (prefix6(*a, *n), *n)).collect();
        p.sort_unstable();
        p.dedup();
        if p == self.prefixes6 {
            return false;
        }
        self.prefixes6 = p;
        true
    }

    pub fn prefixes6(&self) -> &[(Ipv6Addr, u8)] {
        &self.prefixes6
    }

    pub fn rules(&self) -> Rules {
        self.rules
    }

    pub fn stunned(&self) -> &Stunned {
        &self.stun
    }

    /// Applies `f` and says what it changed for the protocols.
    fn change(&mut self, f: impl FnOnce(&mut Wan)) -> WanChange {
        let (external, closed) = (self.external_ip(), self.closed());
        f(self);
        WanChange {
            external_changed: self.external_ip() != external,
            closed_changed: self.closed() != closed,
        }
    }

    /// Applies a new view of the link and a configured address; `None` if
    /// neither changed.
    pub fn update(&mut self, link: Link, fixed: Option<Ipv4Addr>) -> Option<WanChange> {
        if link == self.link && fixed == self.fixed {
            return None;
        }
        Some(self.change(|w| {
            w.link = link;
            w.fixed = fixed;
        }))
    }

    /// New rules from the configuration. Turning STUN off forgets what it
    /// found.
    pub fn set_rules(&mut self, rules: Rules) -> WanChange {
        self.change(|w| {
            if rules.stun.is_none() {
                w.stun = Stunned::default();
            }
            w.rules = rules;
        })
    }

    /// What STUN found now.
    pub fn set_stun(&mut self, stun: Stunned) -> WanChange {
        self.change(|w| w.stun = stun)
    }
}

/// What netifd last said about the interfaces (over ubus): their devices,
/// and the WAN's state and address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netifd {
    /// Devices of logical interfaces (the last one reported while up).
    devs: HashMap<String, String>,
    /// Interfaces netifd has reported on, up or down: such a name is
    /// never taken for a device of the same name (a DSA port called
    /// `lan` is not the interface `lan`).
    known: HashSet<String>,
    /// The WAN's logical name (found through the default route when none
    /// is configured).
    wan: Option<String>,
    wan_up: Option<bool>,
    wan_addr: Option<Ipv4Addr>,
}

/// What a netifd status means for the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetifdNews {
    /// The WAN's state is new: apply it.
    Wan,
    /// A LAN interface is now on another device.
    LanDevice {
        name: String,
        dev: String,
    },
    Nothing,
}

impl Netifd {
    /// The device of a logical interface, as netifd reported it.
    pub fn device(&self, name: &str) -> Option<&str> {
        self.devs.get(name).map(String::as_str)
    }

    /// Whether netifd has reported on interface `name`.
    pub fn knows(&self, name: &str) -> bool {
        self.known.contains(name)
    }

    /// The WAN's logical name: the configured one, else netifd's.
    pub fn wan_name<'a>(&'a self, configured: Option<&'a str>) -> Option<&'a str> {
        configured.or(self.wan.as_deref())
    }

    /// Records netifd's status of interface `name` (`wan`: it is the WAN).
    pub fn on_status(
        &mut self,
        name: &str,
        wan: bool,
        up: bool,
        l3_device: Option<&str>,
        addr: Option<Ipv4Addr>,
    ) -> NetifdNews {
        if !self.known.contains(name) {
            self.known.insert(name.to_string());
        }
        if wan {
            if let Some(dev) = l3_device {
                self.devs.insert(name.to_string(), dev.to_string());
            }
            self.wan = Some(name.to_string());
            self.wan_up = Some(up);
            self.wan_addr = addr;
            return NetifdNews::Wan;
        }
        match l3_device.filter(|_| up) {
            Some(dev) if self.device(name) != Some(dev) => {
                self.devs.insert(name.to_string(), dev.to_string());
                NetifdNews::LanDevice {
                    name: name.to_string(),
                    dev: dev.to_string(),
                }
            }
            _ => NetifdNews::Nothing,
        }
    }

    /// The kernel's view of the WAN link corrected by netifd's: a WAN
    /// netifd calls down is down, and its address is the one netifd gave.
    pub fn correct(&self, mut link: Link) -> Link {
        match self.wan_up {
            Some(false) => {
                link.up = false;
                link.addr = None;
            }
            Some(true) if self.wan_addr.is_some() => {
                link.addr = self.wan_addr;
                link.up = true;
            }
            _ => {}
        }
        link
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(addr: Option<[u8; 4]>, up: bool) -> Link {
        Link {
            dev: Some("wan0".into()),
            addr: addr.map(Ipv4Addr::from),
            up,
        }
    }

    const EXT: WanChange = WanChange {
        external_changed: true,
        closed_changed: false,
    };
    const SAME: WanChange = WanChange {
        external_changed: false,
        closed_changed: false,
    };

    #[test]
    fn the_external_address_is_the_configured_one_else_the_links() {
        let mut w = Wan::new(None);
        let c = w.update(link(Some([192, 0, 3, 1]), true), None);
        assert_eq!(c, Some(EXT));
        assert_eq!(w.external_ip(), Some(Ipv4Addr::new(192, 0, 3, 1)));
        assert_eq!(w.update(link(Some([192, 0, 3, 1]), true), None), None);
        // the link goes down: same address, no new epoch
        let c = w.update(link(Some([192, 0, 3, 1]), false), None);
        assert_eq!(c, Some(SAME));
        assert!(!w.connected());
        // a fixed address hides the link's
        let fixed = Some(Ipv4Addr::new(198, 51, 100, 7));
        w.update(link(Some([192, 0, 3, 1]), true), fixed);
        let c = w.update(link(Some([192, 0, 3, 9]), true), fixed);
        assert_eq!(c, Some(SAME));
        assert_eq!(w.external_ip(), fixed);
        assert_eq!(w.link_addr(), Some(Ipv4Addr::new(192, 0, 3, 9)));
        assert_eq!(w.closed(), None);
    }

    const CGN: [u8; 4] = [100, 64, 0, 2];
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);

    fn stunned(public: Option<Ipv4Addr>, filtering: Filtering) -> Stunned {
        Stunned { public, filtering }
    }

    /// miniupnpd's `ext_allow_private_ipv4`: a private address is neither
    /// reported nor mapped with, unless allowed.
    #[test]
    fn a_private_address_without_stun_is_ext_allow_private_ipv4s_call() {
        let mut w = Wan::new(None);
        w.update(link(Some(CGN), true), None);
        assert_eq!(w.external_ip(), None);
        assert_eq!(w.nat_addr(), Some(Ipv4Addr::from(CGN)));
        assert_eq!(w.closed(), Some(Closed::Private(Ipv4Addr::from(CGN))));
        let c = w.set_rules(Rules {
            allow_private: true,
            stun: None,
        });
        assert_eq!(
            c,
            WanChange {
                external_changed: true,
                closed_changed: true
            }
        );
        assert_eq!(w.external_ip(), Some(Ipv4Addr::from(CGN)));
        assert!(w.external_is_private());
        assert_eq!(w.closed(), None);
        // a private configured address is under the same rule
        let mut w = Wan::new(Some(Ipv4Addr::new(10, 0, 0, 1)));
        w.update(
            link(Some([192, 0, 3, 1]), true),
            Some(Ipv4Addr::new(10, 0, 0, 1)),
        );
        assert_eq!(w.external_ip(), None);
        assert_eq!(
            w.closed(),
            Some(Closed::Private(Ipv4Addr::new(10, 0, 0, 1)))
        );
    }

    /// The decision table of the module documentation, row by row.
    #[test]
    fn stun_decides_the_address_and_whether_mappings_work() {
        use FilterKind::*;
        let rules = |allow_private, allow_filtered| Rules {
            allow_private,
            stun: Some(allow_filtered),
        };
        let mut w = Wan::new(None);
        w.update(link(Some(CGN), true), None);
        w.set_rules(rules(false, false));
        // no answer yet: as without STUN
        assert_eq!(
            (w.external_ip(), w.closed()),
            (None, Some(Closed::Private(Ipv4Addr::from(CGN))))
        );
        // open
        let c = w.set_stun(stunned(Some(PUBLIC), Filtering::EndpointIndependent));
        assert_eq!(
            c,
            WanChange {
                external_changed: true,
                closed_changed: true
            }
        );
        assert_eq!((w.external_ip(), w.closed()), (Some(PUBLIC), None));
        assert_eq!(w.public_addr(), Some(PUBLIC));
        assert!(!w.external_is_private());
        // filtered, and allowed anyway
        for k in [AddressDependent, AddressAndPortDependent, PortTranslated] {
            w.set_stun(stunned(Some(PUBLIC), Filtering::Filtered(k)));
            assert_eq!(
                (w.external_ip(), w.closed()),
                (Some(PUBLIC), Some(Closed::Filtered(k)))
            );
        }
        w.set_rules(rules(true, false));
        assert_eq!(w.closed(), Some(Closed::Filtered(PortTranslated)));
        w.set_rules(rules(false, true));
        assert_eq!(w.closed(), None);
        // cannot tell: the WAN address decides, either switch allows
        w.set_rules(rules(false, false));
        w.set_stun(stunned(Some(PUBLIC), Filtering::Unknown));
        assert_eq!(w.closed(), Some(Closed::Untested(Ipv4Addr::from(CGN))));
        for (p, f) in [(true, false), (false, true)] {
            w.set_rules(rules(p, f));
            assert_eq!((w.external_ip(), w.closed()), (Some(PUBLIC), None));
        }
        // a public WAN address behind a NAT that cannot be tested
        w.set_rules(rules(false, false));
        w.update(link(Some([192, 0, 3, 1]), true), None);
        assert_eq!(w.closed(), None);
        // the configured address wins over STUN
        w.update(link(Some(CGN), true), Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!(w.external_ip(), Some(Ipv4Addr::new(198, 51, 100, 7)));
        assert_eq!((w.public_addr(), w.closed()), (None, None));
        // STUN off forgets what it found
        w.update(link(Some(CGN), true), None);
        w.set_rules(Rules::default());
        assert_eq!(w.stunned(), &Stunned::default());
        assert_eq!(w.external_ip(), None);
    }

    #[test]
    fn the_owner_is_told_which_switch_helps() {
        let a = Ipv4Addr::from(CGN);
        assert!(
            Closed::Private(a)
                .explain()
                .contains("ext_allow_private_ipv4")
        );
        assert!(
            Closed::Filtered(FilterKind::AddressDependent)
                .explain()
                .contains("stun_allow_filtered")
        );
        let u = Closed::Untested(a).explain();
        assert!(u.contains("ext_allow_private_ipv4") && u.contains("stun_allow_filtered"));
        assert_eq!(
            Closed::Filtered(FilterKind::AddressDependent).short(),
            "STUN found the NAT in front filtering by address (stun_allow_filtered is off)"
        );
    }

    #[test]
    fn ipv6_prefixes_change_only_when_a_prefix_does() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let mut w = Wan::new(None);
        assert!(w.update_prefixes6(&[(a("2001:db8:3::1"), 64), (a("fd77::1"), 64)]));
        // another address of the same prefixes, in another order: no news
        assert!(!w.update_prefixes6(&[(a("fd77::9"), 64), (a("2001:db8:3::7"), 64)]));
        assert_eq!(w.prefixes6()[0], (a("2001:db8:3::"), 64));
        // the ISP renumbers
        assert!(w.update_prefixes6(&[(a("2001:db8:4::1"), 64), (a("fd77::1"), 64)]));
        assert_eq!(prefix6(a("2001:db8::ffff"), 0), a("::"));
        assert_eq!(prefix6(a("2001:db8::ffff"), 128), a("2001:db8::ffff"));
    }

    #[test]
    fn private_and_cgnat_addresses() {
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.9",
            "198.18.0.1",
            "240.0.0.1",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["192.0.3.1", "8.8.8.8", "100.128.0.1", "203.0.114.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn netifd_corrects_the_kernels_view() {
        let mut n = Netifd::default();
        assert_eq!(
            n.correct(link(Some([1, 2, 3, 4]), true)),
            link(Some([1, 2, 3, 4]), true)
        );
        assert_eq!(n.wan_name(None), None);
        let news = n.on_status(
            "wan",
            true,
            true,
            Some("eth1"),
            Some(Ipv4Addr::new(5, 6, 7, 8)),
        );
        assert_eq!(news, NetifdNews::Wan);
        assert_eq!(n.wan_name(None), Some("wan"));
        assert_eq!(n.wan_name(Some("wwan")), Some("wwan"));
        assert_eq!(n.device("wan"), Some("eth1"));
        assert_eq!(n.correct(link(None, false)), link(Some([5, 6, 7, 8]), true));
        n.on_status("wan", true, false, None, None);
        assert_eq!(n.correct(link(Some([5, 6, 7, 8]), true)), link(None, false));
    }

    #[test]
    fn a_lan_on_a_new_device_is_news_once() {
        let mut n = Netifd::default();
        let moved = NetifdNews::LanDevice {
            name: "lan".into(),
            dev: "br-lan".into(),
        };
        assert_eq!(n.on_status("lan", false, true, Some("br-lan"), None), moved);
        assert_eq!(
            n.on_status("lan", false, true, Some("br-lan"), None),
            NetifdNews::Nothing
        );
        // a LAN that is down tells nothing about its device
        assert_eq!(
            n.on_status("lan", false, false, Some("eth9"), None),
            NetifdNews::Nothing
        );
        assert_eq!(n.device("lan"), Some("br-lan"));
        // known from its first report, up or down
        assert!(n.knows("lan") && !n.knows("guest"));
        n.on_status("guest", false, false, None, None);
        assert!(n.knows("guest"));
        assert_eq!(n.device("guest"), None);
    }
}
