//! The UPnP IGD control actions of every service, on top of [`Core`]:
//! WANIPConnection ([`connection`]), WANCommonInterfaceConfig and
//! Layer3Forwarding ([`link`]), WANIPv6FirewallControl ([`pinholes`]).
//!
//! Owns: argument validation per action, the IGDv1/IGDv2 semantic
//! differences (lease 0, error codes), and the out-arguments in SCPD
//! order. Pure: the caller passes the time and the device in [`Call`];
//! kernel facts (counters, link speed, conntrack timeouts, a pinhole's
//! packets) are asked of [`Facts`] by the one action that reports each.

mod connection;
mod link;
mod pinholes;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

pub use connection::query_state_variable;
pub use link::default_connection_service;

use crate::core::Core;
use crate::core::device::Device;
use crate::core::facts::Facts;
use crate::core::lan::Lans;
use crate::core::policy::Refusal;
use crate::core::table::Millis;
use crate::core::wan::Wan;
use crate::proto::igd::{Args, UpnpError};
use crate::proto::schema::ServiceKind;

/// IGD:2 caps every lease at 7 days and turns 0 into that maximum.
pub const IGD2_MAX_LEASE: u32 = crate::config::IGD2_MAX_LEASE;
/// GetListOfPortMappings returns at most this many entries per call.
pub const MAX_LISTING: usize = 1000;

/// One action call: who asks, under which IGD version, and what the
/// action may read besides the table.
pub struct Call<'a> {
    /// The control point's IPv4 address (unspecified for a request over
    /// IPv6).
    pub client: Ipv4Addr,
    /// The requester's address as it is (IPv6 for requests over IPv6).
    pub requester: IpAddr,
    /// IGD semantics to apply: 1 or 2.
    pub version: u8,
    pub now: Millis,
    pub device: &'a Device,
    /// An internal client must be on one of their subnets.
    pub lans: &'a Lans,
    pub wan: &'a Wan,
    pub facts: &'a dyn Facts,
}

/// Out-arguments in SCPD order.
pub type Out = Vec<(&'static str, String)>;

/// What an action answers: its out-arguments or its error.
pub type Answer = Result<Out, UpnpError>;

fn b(v: bool) -> String {
    if v { "1".into() } else { "0".into() }
}

/// Maps a policy refusal to the UPnP error for this IGD version
/// (miniupnpd's mapping: its IGDv1 build answers 718 for most refusals).
pub fn refusal_error(r: &Refusal, version: u8) -> UpnpError {
    let v2 = version >= 2;
    match r {
        Refusal::Conflict => UpnpError::ConflictInMappingEntry,
        Refusal::NotAllowed | Refusal::SecureMode | Refusal::NotOwner => {
            if v2 {
                UpnpError::ActionNotAuthorized
            } else {
                UpnpError::ConflictInMappingEntry
            }
        }
        Refusal::OtherMechanism(_) => {
            if v2 {
                UpnpError::ConflictWithOtherMechanisms
            } else {
                UpnpError::ConflictInMappingEntry
            }
        }
        Refusal::ClientQuota | Refusal::TableFull | Refusal::NoFreePort => {
            if v2 {
                UpnpError::NoPortMapsAvailable
            } else {
                UpnpError::ActionFailed
            }
        }
        // Not the client's fault and not for good: 501, as a failed
        // firewall transaction answers.
        Refusal::FirewallDown => UpnpError::ActionFailed,
        // UDA 1.1 §3.2.2: 501 "may be returned if current state of
        // service prevents invoking that action"; the IGD specs have no
        // code of their own for a path the Internet cannot use (miniupnpd
        // answers 501 too).
        Refusal::Unreachable(_) => UpnpError::ActionFailed,
    }
}

/// Runs one action. Changes to the core are journalled there and reach
/// the firewall when the daemon commits the loop turn.
pub fn handle(
    core: &mut Core,
    call: &Call,
    service: ServiceKind,
    action: &str,
    args: &Args,
) -> Answer {
    match service {
        ServiceKind::WanIpConnection => connection::handle(core, call, action, args),
        ServiceKind::WanCommonInterfaceConfig => link::common_interface(call, action, args),
        ServiceKind::Layer3Forwarding => link::layer3(call, action, args),
        ServiceKind::WanIpv6FirewallControl => pinholes::handle(core, call, action, args),
    }
}
