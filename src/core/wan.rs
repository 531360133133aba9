//! The WAN as the protocols see it: its device, its address, whether it is
//! up, and the one decision of which external address every protocol
//! reports (UPnP, NAT-PMP, PCP, GENA, the firewall's SNAT, ubus).
//!
//! Owns: [`Wan`], [`Link`] and [`Netifd`], netifd's view of the
//! interfaces, which corrects what the kernel shows (netifd knows of an
//! address or a link going down first). Pure: the daemon reads the kernel
//! and netifd and hands the results in.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

/// The WAN link as read from the kernel (and corrected by netifd).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Link {
    pub dev: Option<String>,
    pub addr: Option<Ipv4Addr>,
    /// Up, with an address.
    pub up: bool,
}

/// What changed when a new view of the WAN was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WanChange {
    /// The external address reported to clients changed: NAT-PMP and PCP
    /// start a new epoch (RFC 6886 §3.6, RFC 6887 §8.5).
    pub external_changed: bool,
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

/// The WAN and the external address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wan {
    link: Link,
    /// `external_ip` of the configuration: reported instead of the link's
    /// address (a router behind another NAT with a known public address).
    fixed: Option<Ipv4Addr>,
}

impl Wan {
    pub fn new(fixed: Option<Ipv4Addr>) -> Wan {
        Wan {
            link: Link::default(),
            fixed,
        }
    }

    /// The address every protocol reports as the external one: the
    /// configured address, else the WAN link's.
    pub fn external_ip(&self) -> Option<Ipv4Addr> {
        self.fixed.or(self.link.addr)
    }

    /// Whether the external address is private, shared (CGNAT) or
    /// otherwise not globally routable: port mappings then only reach the
    /// next NAT (miniupnpd's `ext_allow_private_ipv4` case).
    pub fn external_is_private(&self) -> bool {
        self.external_ip().is_some_and(is_private)
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

    /// Applies a new view of the link and a configured address; `None` if
    /// nothing changed.
    pub fn update(&mut self, link: Link, fixed: Option<Ipv4Addr>) -> Option<WanChange> {
        if link == self.link && fixed == self.fixed {
            return None;
        }
        let before = self.external_ip();
        self.link = link;
        self.fixed = fixed;
        Some(WanChange {
            external_changed: self.external_ip() != before,
        })
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

    #[test]
    fn the_external_address_is_the_configured_one_else_the_links() {
        let mut w = Wan::new(None);
        let c = w.update(link(Some([192, 0, 3, 1]), true), None);
        assert_eq!(
            c,
            Some(WanChange {
                external_changed: true
            })
        );
        assert_eq!(w.external_ip(), Some(Ipv4Addr::new(192, 0, 3, 1)));
        assert_eq!(w.update(link(Some([192, 0, 3, 1]), true), None), None);
        // the link goes down: same address, no new epoch
        let c = w.update(link(Some([192, 0, 3, 1]), false), None);
        assert_eq!(
            c,
            Some(WanChange {
                external_changed: false
            })
        );
        assert!(!w.connected());
        // a fixed address hides the link's
        let fixed = Some(Ipv4Addr::new(198, 51, 100, 7));
        w.update(link(Some([192, 0, 3, 1]), true), fixed);
        let c = w.update(link(Some([192, 0, 3, 9]), true), fixed);
        assert_eq!(
            c,
            Some(WanChange {
                external_changed: false
            })
        );
        assert_eq!(w.external_ip(), fixed);
        assert_eq!(w.link_addr(), Some(Ipv4Addr::new(192, 0, 3, 9)));
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
