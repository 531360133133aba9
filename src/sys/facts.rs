//! The kernel facts the core asks for ([`Facts`]): local listeners, the
//! neighbour table, the WAN link's counters and speed, uptime, conntrack
//! timeouts, a pinhole's counter and the CSPRNG. Each is read on first
//! use only: most requests never ask, and those that do ask once, through
//! the netlink sockets of the daemon's [`Probe`].

use std::cell::{OnceCell, RefCell};
use std::net::{IpAddr, Ipv6Addr};

use crate::core::facts::{Facts, LinkCounters};
use crate::core::firewall::Firewall;
use crate::core::pinhole::Pinhole;
use crate::core::wan::Wan;
use crate::proto::Proto;
use crate::sys::netif::{self, Listeners, Probe};
use crate::sys::nft::Nft;

/// Resolved neighbour entries: an address and its link-layer address.
type Neighbours = Vec<(IpAddr, [u8; 6])>;

/// The router as the kernel and nftables see it, during one request.
pub struct Kernel<'a> {
    wan: &'a Wan,
    nft: RefCell<&'a mut Nft>,
    probe: RefCell<&'a mut Probe>,
    listeners: RefCell<Listeners>,
    /// The neighbour tables' resolved entries; `None` if unreadable.
    neighbours: OnceCell<Option<Neighbours>>,
}

impl<'a> Kernel<'a> {
    pub fn new(wan: &'a Wan, nft: &'a mut Nft, probe: &'a mut Probe) -> Kernel<'a> {
        Kernel {
            wan,
            nft: RefCell::new(nft),
            probe: RefCell::new(probe),
            listeners: RefCell::default(),
            neighbours: OnceCell::new(),
        }
    }

    fn wan_dev(&self) -> &str {
        self.wan.link().dev.as_deref().unwrap_or("")
    }

    fn neighbours(&self) -> Option<&[(IpAddr, [u8; 6])]> {
        self.neighbours
            .get_or_init(|| {
                self.probe
                    .borrow_mut()
                    .neighbours()
                    .inspect_err(|e| log::debug!("reading the neighbour tables: {e}"))
                    .ok()
            })
            .as_deref()
    }

    fn mac(&self, a: IpAddr) -> Option<[u8; 6]> {
        self.neighbours()?
            .iter()
            .find(|(ip, _)| *ip == a)
            .map(|(_, m)| *m)
    }
}

impl Facts for Kernel<'_> {
    fn wan_listener(&self, p: Proto, port: u16) -> bool {
        self.listeners.borrow_mut().wan_listener(
            &mut self.probe.borrow_mut(),
            p,
            port,
            self.wan.link_addr(),
        )
    }

    /// The same address, or (for a request over IPv4 about an IPv6
    /// address) the same link-layer address in the neighbour tables.
    fn same_host(&self, requester: IpAddr, addr: Ipv6Addr) -> bool {
        if requester == IpAddr::V6(addr) {
            return true;
        }
        match (self.mac(requester), self.mac(IpAddr::V6(addr))) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        }
    }

    /// `netif::neighbours` lists only entries with a link-layer address:
    /// those that resolved (REACHABLE, STALE, DELAY, PROBE, PERMANENT);
    /// INCOMPLETE and FAILED ones carry none.
    fn neighbour_present(&self, a: IpAddr) -> Option<bool> {
        Some(self.neighbours()?.iter().any(|(ip, _)| *ip == a))
    }

    fn wan_counters(&self) -> Option<LinkCounters> {
        netif::link_counters(self.wan_dev())
    }

    fn wan_speed_bps(&self) -> u32 {
        netif::link_speed_bps(self.wan_dev())
    }

    fn system_uptime(&self) -> Option<u32> {
        netif::system_uptime()
    }

    fn conntrack_timeout(&self, tcp: bool) -> Option<u32> {
        netif::conntrack_timeout(if tcp {
            "nf_conntrack_tcp_timeout_established"
        } else {
            "nf_conntrack_udp_timeout_stream"
        })
    }

    fn pinhole_packets(&self, p: &Pinhole) -> Option<u64> {
        self.nft.borrow_mut().pinhole_counters(p).map(|c| c.packets)
    }

    fn random(&self) -> [u8; 16] {
        random_bytes()
    }
}

/// 16 bytes from the kernel's CSPRNG.
pub fn random_bytes() -> [u8; 16] {
    let mut b = [0u8; 16];
    // SAFETY: getrandom writes at most `b.len()` bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Never expected on Linux ≥ 3.17; fall back to time and pid.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b.copy_from_slice(&(t ^ (u128::from(std::process::id()) << 64)).to_le_bytes());
    }
    b
}
