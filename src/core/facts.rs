//! What the core asks of the router that it cannot see itself: sockets
//! listening on the WAN side, the neighbour tables, the WAN link's counters
//! and speed, the system uptime, conntrack's idle timeouts, a pinhole's
//! packet counter, and fresh randomness.
//!
//! Owns: the [`Facts`] trait and [`FixedFacts`], the router of tests.
//! Every method is a read, asked only by the request that reports it: the
//! daemon's implementation reads the kernel on first use, so a request
//! that needs none of these costs no system call.

use std::net::{IpAddr, Ipv6Addr};

use crate::core::pinhole::Pinhole;
use crate::proto::Proto;

/// Byte and packet counters of the WAN interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// A read-only view of the kernel, for the request handlers.
pub trait Facts {
    /// True if a local socket listens on `port` on the WAN side (or on all
    /// addresses), so a mapping there would hide it or be hidden by it.
    fn wan_listener(&self, proto: Proto, port: u16) -> bool;

    /// True if IPv6 address `addr` belongs to the host that sent a request
    /// from `requester` (secure mode for pinholes). By default only the
    /// address itself; the daemon also matches an IPv4 requester whose
    /// neighbour entry has the same link-layer address.
    fn same_host(&self, requester: IpAddr, addr: Ipv6Addr) -> bool {
        requester == IpAddr::V6(addr)
    }

    /// Whether `addr` has a resolved entry in the router's neighbour
    /// tables (ARP, NDP): a host that answers there. An entry that never
    /// resolved or failed (a forged source nobody answers for, a host
    /// that left) is absent. `None` when the tables cannot be read.
    fn neighbour_present(&self, addr: IpAddr) -> Option<bool>;

    /// The WAN interface's counters (GetTotalBytesSent and friends).
    fn wan_counters(&self) -> Option<LinkCounters>;

    /// The WAN link's speed in bit/s, 0 if the driver does not say.
    fn wan_speed_bps(&self) -> u32;

    /// Seconds since the system booted.
    fn system_uptime(&self) -> Option<u32>;

    /// conntrack's idle timeout in seconds for established TCP (`tcp`) or
    /// for UDP streams.
    fn conntrack_timeout(&self, tcp: bool) -> Option<u32>;

    /// Packets counted on a pinhole's firewall element.
    fn pinhole_packets(&self, p: &Pinhole) -> Option<u64>;

    /// 16 bytes from a CSPRNG: a GENA SID must not be guessable, or a
    /// guessed SID could cancel someone else's subscription.
    fn random(&self) -> [u8; 16];
}

/// A router whose facts are fixed values: for tests and fuzzing, where
/// every answer must be the same on every run. The default has no
/// listeners, no counters and no neighbours, and its "random" bytes count
/// up from 1.
#[derive(Debug, Default)]
pub struct FixedFacts {
    /// Ports with a local listener on the WAN side.
    pub listeners: Vec<(Proto, u16)>,
    pub counters: Option<LinkCounters>,
    pub speed_bps: u32,
    pub uptime: Option<u32>,
    /// (TCP established, UDP stream) idle timeouts.
    pub conntrack: Option<(u32, u32)>,
    /// Packets counted on every pinhole.
    pub pinhole_packets: Option<u64>,
    /// IPv4 requesters and the IPv6 addresses of the same host.
    pub same_hosts: Vec<(IpAddr, Ipv6Addr)>,
    /// Hosts missing from the neighbour tables (every other one is there).
    pub absent: Vec<IpAddr>,
    /// Random draws so far: the next "random" bytes are zeros ending in
    /// this number plus one.
    pub drawn: std::sync::atomic::AtomicU8,
}

impl FixedFacts {
    /// No listeners, counters or neighbours (`const`, so tests can keep
    /// one in a `static`).
    pub const fn new() -> FixedFacts {
        FixedFacts {
            listeners: Vec::new(),
            counters: None,
            speed_bps: 0,
            uptime: None,
            conntrack: None,
            pinhole_packets: None,
            same_hosts: Vec::new(),
            absent: Vec::new(),
            drawn: std::sync::atomic::AtomicU8::new(0),
        }
    }
}

impl Facts for FixedFacts {
    fn wan_listener(&self, proto: Proto, port: u16) -> bool {
        self.listeners.contains(&(proto, port))
    }
    fn same_host(&self, requester: IpAddr, addr: Ipv6Addr) -> bool {
        requester == IpAddr::V6(addr) || self.same_hosts.contains(&(requester, addr))
    }
    fn neighbour_present(&self, addr: IpAddr) -> Option<bool> {
        Some(!self.absent.contains(&addr))
    }
    fn wan_counters(&self) -> Option<LinkCounters> {
        self.counters
    }
    fn wan_speed_bps(&self) -> u32 {
        self.speed_bps
    }
    fn system_uptime(&self) -> Option<u32> {
        self.uptime
    }
    fn conntrack_timeout(&self, tcp: bool) -> Option<u32> {
        self.conntrack.map(|(t, u)| if tcp { t } else { u })
    }
    fn pinhole_packets(&self, _: &Pinhole) -> Option<u64> {
        self.pinhole_packets
    }
    fn random(&self) -> [u8; 16] {
        let n = self
            .drawn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .wrapping_add(1);
        let mut b = [0u8; 16];
        b[15] = n;
        b
    }
}
