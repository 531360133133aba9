//! NAT-PMP (RFC 6886) and PCP (RFC 6887) request handling: one datagram
//! received on UDP 5351 from a LAN host in, at most one reply out; and
//! the epoch with its unsolicited announcements.
//!
//! Owns: version dispatch (0 → NAT-PMP in [`natpmp`], IPv4 only; 2 → PCP
//! in [`pcp`], and for IPv6 hosts `pcp6`; anything else →
//! UNSUPP_VERSION), what both protocols share ([`Settings`], [`Server`],
//! [`Reply`]), and the [`Epoch`] (the daemon keeps one per address
//! family). Every mapping goes through [`Core::map`] and every pinhole
//! through [`Core::add_pinhole`], so NAT-PMP, PCP and UPnP share one
//! table of each, one policy and one port search. Must not import `sys`,
//! `daemon` or tokio, and never reads a clock: the caller passes `now`.

mod natpmp;
mod pcp;
mod pcp6;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::Config;
use crate::core::facts::Facts;
use crate::core::lan::Lans;
use crate::core::table::Millis;
use crate::core::{Core, Savepoint};

/// The NAT-PMP/PCP part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub natpmp: bool,
    pub pcp: bool,
    /// Granted lifetimes are clamped to `min_lifetime..=max_lifetime`
    /// seconds for both protocols (RFC 6887 §15; miniupnpd does not clamp
    /// NAT-PMP, we do).
    pub min_lifetime: u32,
    pub max_lifetime: u32,
    /// Accept the PCP THIRD_PARTY option (RFC 6887 §13.1).
    pub allow_third_party: bool,
}

impl Settings {
    pub fn from_config(cfg: &Config) -> Settings {
        Settings {
            natpmp: cfg.enabled && cfg.enable_natpmp,
            pcp: cfg.enabled && cfg.enable_pcp,
            min_lifetime: cfg.min_lifetime,
            max_lifetime: cfg.max_lifetime,
            allow_third_party: cfg.pcp_allow_thirdparty,
        }
    }

    /// A requested lifetime brought within the configured bounds (a
    /// maximum below the minimum is read as the minimum).
    pub fn clamp(&self, secs: u32) -> u32 {
        secs.max(self.min_lifetime)
            .min(self.max_lifetime.max(self.min_lifetime))
    }
}

/// The server side of one exchange: what the handler needs besides the
/// core.
pub struct Server<'a> {
    pub settings: &'a Settings,
    /// The external IPv4 address; `None` while there is none (no lease,
    /// link down): new mappings then get NAT-PMP 3 / PCP NETWORK_FAILURE.
    /// IPv6 pinholes do not need it.
    pub external: Option<Ipv4Addr>,
    /// Seconds since the start of the epoch of the request's address
    /// family (RFC 6886 §3.6, RFC 6887 §8.5); it restarts at 0 when
    /// mapping state is lost or the external address (for IPv6: a prefix)
    /// changes.
    pub epoch: u32,
    /// The LANs served: a THIRD_PARTY address must be on one.
    pub lans: &'a Lans,
    pub now: Millis,
    pub facts: &'a dyn Facts,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Sent if this loop turn's firewall transaction succeeds (or if the
    /// request changed nothing).
    pub ok: Vec<u8>,
    /// Sent instead if the transaction fails; the daemon then rolls the
    /// table back. `Some` exactly when the request changed the table.
    pub on_failure: Option<Vec<u8>>,
}

impl Reply {
    fn plain(ok: Vec<u8>) -> Reply {
        Reply {
            ok,
            on_failure: None,
        }
    }

    /// `ok`, with `failure` if the request changed the core since `sp`.
    fn after(core: &Core, sp: Savepoint, ok: Vec<u8>, failure: impl FnOnce() -> Vec<u8>) -> Reply {
        Reply {
            ok,
            on_failure: core.changed_since(sp).then(failure),
        }
    }
}

/// When each of the 10 announcements after an address change or state
/// loss goes out, in ms after the event: 250 ms apart at first, the gap
/// doubling each time (RFC 6886 §3.2.1; RFC 6887 §14.1.3 for PCP).
pub const ANNOUNCE_SCHEDULE: [Millis; 10] = [
    0, 250, 750, 1_750, 3_750, 7_750, 15_750, 31_750, 63_750, 127_750,
];

/// The NAT-PMP/PCP epoch and its pending announcements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Epoch {
    start: Millis,
    announce_at: Vec<Millis>,
}

impl Epoch {
    /// Starts a new epoch at `now` (at start, and whenever the external
    /// address changes) and schedules its announcements.
    pub fn restart(&mut self, now: Millis) {
        self.start = now;
        self.announce_at = ANNOUNCE_SCHEDULE.iter().map(|d| now + d).collect();
    }

    /// Seconds since the epoch started.
    pub fn secs(&self, now: Millis) -> u32 {
        u32::try_from(now.saturating_sub(self.start) / 1000).unwrap_or(u32::MAX)
    }

    /// Whether an announcement is due at `now` (and takes it off the
    /// schedule).
    pub fn announcement_due(&mut self, now: Millis) -> bool {
        if self.announce_at.first().is_none_or(|t| *t > now) {
            return false;
        }
        self.announce_at.retain(|t| *t > now);
        true
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.announce_at.first().copied()
    }
}

/// The unsolicited messages of one announcement. Over IPv4, for
/// 224.0.0.1:5350: the gratuitous NAT-PMP public address response (RFC
/// 6886 §3.2.1, only with an external address) and the PCP ANNOUNCE
/// response (RFC 6887 §14.1.3). Over IPv6 (`v6`), for [ff02::1]:5350:
/// the PCP ANNOUNCE alone, NAT-PMP being IPv4 only.
pub fn announcements(
    settings: &Settings,
    epoch: u32,
    external: Option<Ipv4Addr>,
    v6: bool,
) -> Vec<Vec<u8>> {
    let mut msgs = Vec::new();
    if let Some(ext) = external.filter(|_| settings.natpmp && !v6) {
        msgs.push(natpmp::announcement(epoch, ext));
    }
    if settings.pcp {
        msgs.push(crate::proto::pcp::announcement(epoch));
    }
    msgs
}

/// One datagram received on LAN `lan`'s port 5351. Only a host of that
/// LAN is answered (RFC 6886 §3.1): over IPv6 a source on one of its
/// served prefixes.
pub fn on_datagram(
    core: &mut Core,
    server: &Server,
    lan: usize,
    src: SocketAddr,
    pkt: &[u8],
) -> Option<Reply> {
    if server.lans.of(src.ip()) != Some(lan) {
        return None;
    }
    handle(core, server, src.ip(), pkt)
}

/// Handles one datagram from `src` (a LAN host) received on port 5351.
/// `None` means: send nothing.
pub fn handle(core: &mut Core, server: &Server, src: IpAddr, pkt: &[u8]) -> Option<Reply> {
    if !server.settings.natpmp && !server.settings.pcp {
        // RFC 6886 §3.8: with both off the port should be closed; if a
        // packet still arrives, stay silent
        return None;
    }
    match (*pkt.first()?, src) {
        (crate::proto::natpmp::VERSION, IpAddr::V4(src)) => natpmp::handle(core, server, src, pkt),
        // RFC 6886 is IPv4 only: a version-0 datagram over IPv6 is no
        // request we know
        (crate::proto::natpmp::VERSION, IpAddr::V6(_)) => None,
        _ => pcp::handle(core, server, src, pkt),
    }
}
