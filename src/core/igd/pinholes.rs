//! WANIPv6FirewallControl:1: IPv6 pinholes through the core (the same
//! table PCP's IPv6 MAP and PEER fill).
//!
//! Owns: the argument rules of the pinhole actions (wildcards, protocols,
//! lease range, LAN prefixes) and the 7xx codes of this service.

use std::net::Ipv6Addr;

use super::{Answer, Call, b};
use crate::core::Core;
use crate::core::pinhole::{MAX_LEASE, MIN_LEASE, PinRefusal, PinRequest};
use crate::proto::igd::{Args, UpnpError};

/// conntrack's defaults (Linux `nf_conntrack_tcp_timeout_established`
/// and `nf_conntrack_udp_timeout_stream`) when the sysctls cannot be read.
const DEFAULT_TCP_TIMEOUT: u32 = 7440;
const DEFAULT_UDP_TIMEOUT: u32 = 180;

fn pin_error(r: PinRefusal) -> UpnpError {
    match r {
        PinRefusal::NotAllowed => UpnpError::InboundPinholeNotAllowed,
        // a pinhole of the same traffic made through PCP is not the
        // control point's to extend: as a policy refusal
        PinRefusal::NotAuthorized | PinRefusal::Collision | PinRefusal::NotOwner => {
            UpnpError::ActionNotAuthorized
        }
        PinRefusal::SpaceExhausted | PinRefusal::ClientQuota => UpnpError::PinholeSpaceExhausted,
        PinRefusal::NoSuchEntry => UpnpError::NoSuchEntry,
        PinRefusal::FirewallDown => UpnpError::ActionFailed,
    }
}

/// An IPv6 address argument; empty (or `*`) is the wildcard.
fn ipv6_arg(args: &Args, name: &str) -> Result<Option<Ipv6Addr>, UpnpError> {
    let v = args.req(name)?.trim();
    if v.is_empty() || v == "*" {
        return Ok(None);
    }
    v.parse::<Ipv6Addr>()
        .map(Some)
        .map_err(|_| UpnpError::InvalidArgs)
}

/// The five arguments naming a pinhole's traffic, validated, as a request
/// for `lease` seconds.
fn pinhole_request(args: &Args, call: &Call, lease: u32) -> Result<PinRequest, UpnpError> {
    let remote = ipv6_arg(args, "RemoteHost")?;
    let rport = args.u16("RemotePort")?;
    let iaddr =
        ipv6_arg(args, "InternalClient")?.ok_or(UpnpError::WildCardNotPermittedInSrcIpv6)?;
    let iport = args.u16("InternalPort")?;
    let proto = args.u16("Protocol")?;
    if iport == 0 {
        return Err(UpnpError::InternalPortWildcardingNotAllowed);
    }
    let proto = match proto {
        65535 => return Err(UpnpError::ProtocolWildcardingNotAllowed),
        6 | 17 | 136 => proto as u8,
        _ => return Err(UpnpError::ProtocolNotSupported),
    };
    let unicast = !iaddr.is_unspecified() && !iaddr.is_loopback() && !iaddr.is_multicast();
    if !unicast || !call.lans.holds6(iaddr) {
        return Err(UpnpError::ActionNotAuthorized);
    }
    Ok(PinRequest {
        iport,
        proto,
        lease,
        ..PinRequest::upnp(call.requester, remote, rport, iaddr)
    })
}

/// LeaseTime: 1–86400 (A_ARG_TYPE_LeaseTime); outside is 402, as
/// miniupnpd answers.
fn pin_lease(args: &Args, name: &str) -> Result<u32, UpnpError> {
    let l = args.u32(name)?;
    if !(MIN_LEASE..=MAX_LEASE).contains(&l) {
        return Err(UpnpError::InvalidArgs);
    }
    Ok(l)
}

pub(super) fn handle(core: &mut Core, call: &Call, action: &str, args: &Args) -> Answer {
    match action {
        "GetFirewallStatus" => Ok(vec![
            ("FirewallEnabled", b(true)),
            ("InboundPinholeAllowed", b(core.pin_policy().allowed)),
        ]),
        "GetOutboundPinholeTimeout" => {
            let tcp = pinhole_request(args, call, 0)?.proto == 6;
            let t = call.facts.conntrack_timeout(tcp).unwrap_or(if tcp {
                DEFAULT_TCP_TIMEOUT
            } else {
                DEFAULT_UDP_TIMEOUT
            });
            Ok(vec![("OutboundPinholeTimeout", t.to_string())])
        }
        "AddPinhole" => {
            let mut req = pinhole_request(args, call, 0)?;
            req.lease = pin_lease(args, "LeaseTime")?;
            let id = core
                .add_pinhole(&req, call.now, call.facts)
                .map_err(pin_error)?;
            Ok(vec![("UniqueID", id.to_string())])
        }
        "UpdatePinhole" => {
            let id = args.u16("UniqueID")?;
            let lease = pin_lease(args, "NewLeaseTime")?;
            core.update_pinhole(call.requester, id, lease, call.now, call.facts)
                .map_err(pin_error)?;
            Ok(vec![])
        }
        "DeletePinhole" => {
            let id = args.u16("UniqueID")?;
            core.delete_pinhole(call.requester, id, call.facts)
                .map_err(pin_error)?;
            Ok(vec![])
        }
        "GetPinholePackets" | "CheckPinholeWorking" => {
            let id = args.u16("UniqueID")?;
            let p = core.pinholes().get(id).ok_or(UpnpError::NoSuchEntry)?;
            if core.pin_policy().secure_mode
                && p.client != call.requester
                && !call.facts.same_host(call.requester, p.iaddr)
            {
                return Err(UpnpError::ActionNotAuthorized);
            }
            let packets = call.facts.pinhole_packets(p).unwrap_or(0);
            if action == "GetPinholePackets" {
                // ui4: the counter wraps at 2^32.
                Ok(vec![(
                    "PinholePackets",
                    (packets & 0xffff_ffff).to_string(),
                )])
            } else if packets > 0 {
                Ok(vec![("IsWorking", b(true))])
            } else {
                Err(UpnpError::NoTrafficReceived)
            }
        }
        _ => Err(UpnpError::InvalidAction),
    }
}
