//! WANIPConnection (:1 and :2): the connection's status and the port
//! mapping actions, and QueryStateVariable of its evented variables.
//!
//! Owns: the argument rules and error codes of each action, and the
//! IGD:2 port listing document.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::{Answer, Call, IGD2_MAX_LEASE, MAX_LISTING, Out, refusal_error};
use crate::core::policy::{Refusal, Want};
use crate::core::table::{Key, Mapping, Millis, Origin, RemoteFilter};
use crate::core::{Core, EventKind, Lease, MapRequest};
use crate::proto::Proto;
use crate::proto::igd::{Args, UpnpError};
use crate::proto::xml::element;

fn parse_proto(args: &Args, name: &str) -> Result<Proto, UpnpError> {
    Proto::from_upnp(args.req(name)?.trim()).ok_or(UpnpError::InvalidArgs)
}

/// RemoteHost: empty is the wildcard; otherwise an IPv4 literal (names are
/// never resolved: miniupnpd's blocking lookup stalled its loop).
fn parse_remote(args: &Args) -> Result<Option<Ipv4Addr>, UpnpError> {
    let v = args.get("NewRemoteHost").unwrap_or("").trim();
    if v.is_empty() || v == "*" {
        return Ok(None);
    }
    v.parse::<Ipv4Addr>()
        .map(Some)
        .map_err(|_| UpnpError::InvalidArgs)
}

fn remote_text(r: Option<RemoteFilter>) -> String {
    r.map(|r| r.addr.to_string()).unwrap_or_default()
}

/// What GetSpecificPortMappingEntry says of a mapping (and
/// GetGenericPortMappingEntry after its key).
fn entry(m: &Mapping, now: Millis) -> Out {
    vec![
        ("NewInternalPort", m.iport.to_string()),
        ("NewInternalClient", m.iaddr.to_string()),
        ("NewEnabled", "1".into()),
        ("NewPortMappingDescription", m.public_desc().into()),
        (
            "NewLeaseDuration",
            m.remaining_secs(now).unwrap_or(0).to_string(),
        ),
    ]
}

pub(super) fn handle(core: &mut Core, call: &Call, action: &str, args: &Args) -> Answer {
    let status = if call.wan.connected() {
        "Connected"
    } else {
        "Disconnected"
    };
    match action {
        "GetExternalIPAddress" => Ok(vec![(
            "NewExternalIPAddress",
            call.wan
                .external_ip()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        )]),
        "GetStatusInfo" => Ok(vec![
            ("NewConnectionStatus", status.into()),
            ("NewLastConnectionError", "ERROR_NONE".into()),
            (
                "NewUptime",
                call.device.uptime(call.now, call.facts).to_string(),
            ),
        ]),
        "GetConnectionTypeInfo" => Ok(vec![
            ("NewConnectionType", "IP_Routed".into()),
            ("NewPossibleConnectionTypes", "IP_Routed".into()),
        ]),
        "SetConnectionType" => {
            args.req("NewConnectionType")?;
            Err(UpnpError::ReadOnly)
        }
        // The WAN link is the router's, not the LAN's: a control point may
        // not bring it down. Bringing it "up" while up is a no-op.
        "RequestConnection" if call.wan.connected() => Ok(vec![]),
        "RequestConnection" | "RequestTermination" | "ForceTermination" => {
            Err(UpnpError::ActionNotAuthorized)
        }
        "SetAutoDisconnectTime" | "SetIdleDisconnectTime" | "SetWarnDisconnectDelay" => {
            let name = match action {
                "SetAutoDisconnectTime" => "NewAutoDisconnectTime",
                "SetIdleDisconnectTime" => "NewIdleDisconnectTime",
                _ => "NewWarnDisconnectDelay",
            };
            // Only the current value (0: never) is accepted.
            match args.u32(name)? {
                0 => Ok(vec![]),
                _ => Err(UpnpError::ActionNotAuthorized),
            }
        }
        "GetAutoDisconnectTime" => Ok(vec![("NewAutoDisconnectTime", "0".into())]),
        "GetIdleDisconnectTime" => Ok(vec![("NewIdleDisconnectTime", "0".into())]),
        "GetWarnDisconnectDelay" => Ok(vec![("NewWarnDisconnectDelay", "0".into())]),
        "GetNATRSIPStatus" => Ok(vec![
            ("NewRSIPAvailable", "0".into()),
            ("NewNATEnabled", "1".into()),
        ]),
        "GetGenericPortMappingEntry" => {
            let i = args.u16("NewPortMappingIndex")?;
            let m = core
                .table()
                .nth(usize::from(i))
                .ok_or(UpnpError::SpecifiedArrayIndexInvalid)?;
            let mut out = vec![
                ("NewRemoteHost", remote_text(m.remote)),
                ("NewExternalPort", m.key.eport.to_string()),
                ("NewProtocol", m.key.proto.as_str().into()),
            ];
            out.extend(entry(m, call.now));
            Ok(out)
        }
        "GetSpecificPortMappingEntry" => Ok(entry(find(core, args)?, call.now)),
        "AddPortMapping" => add(core, call, args, false).map(|_| vec![]),
        "AddAnyPortMapping" => {
            let key = add(core, call, args, true)?;
            Ok(vec![("NewReservedPort", key.eport.to_string())])
        }
        "DeletePortMapping" => {
            let m = find(core, args)?;
            let key = m.key;
            if !core.may_manage(call.client, m) {
                return Err(if call.version >= 2 {
                    UpnpError::ActionNotAuthorized
                } else {
                    UpnpError::NoSuchEntryInArray
                });
            }
            core.remove(
                &key,
                EventKind::Delete,
                &format!("deleted by {}", call.client),
            );
            Ok(vec![])
        }
        "DeletePortMappingRange" => delete_range(core, call, args).map(|_| vec![]),
        "GetListOfPortMappings" => list(core, call, args).map(|l| vec![("NewPortListing", l)]),
        // Not in the spec, but clients call it (miniupnpd answers 401).
        "GetPortMappingNumberOfEntries" => Ok(vec![(
            "NewPortMappingNumberOfEntries",
            core.table().len().to_string(),
        )]),
        _ => Err(UpnpError::InvalidAction),
    }
}

/// GetSpecificPortMappingEntry / DeletePortMapping: the mapping named by
/// (RemoteHost, ExternalPort, Protocol).
fn find<'c>(core: &'c Core, args: &Args) -> Result<&'c Mapping, UpnpError> {
    let remote = parse_remote(args)?;
    let eport = args.u16("NewExternalPort")?;
    let proto = parse_proto(args, "NewProtocol")?;
    let m = core
        .table()
        .get(&Key::new(proto, eport))
        .ok_or(UpnpError::NoSuchEntryInArray)?;
    if m.remote.map(|r| r.addr) != remote {
        return Err(UpnpError::NoSuchEntryInArray);
    }
    Ok(m)
}

fn add(core: &mut Core, call: &Call, args: &Args, any: bool) -> Result<Key, UpnpError> {
    let remote = parse_remote(args)?;
    let eport = args.u16("NewExternalPort")?;
    let proto = parse_proto(args, "NewProtocol")?;
    let iport = args.u16("NewInternalPort")?;
    let client_text = args.req("NewInternalClient")?.trim();
    // An empty client means the caller (miniupnpd does the same, #236).
    let iaddr = if client_text.is_empty() {
        call.client
    } else {
        client_text
            .parse::<Ipv4Addr>()
            .map_err(|_| UpnpError::InvalidArgs)?
    };
    // NewEnabled must be a boolean; a disabled mapping is not supported
    // and is treated as enabled, as miniupnpd does.
    args.bool("NewEnabled")?;
    let desc = args.req("NewPortMappingDescription")?;
    let lease = args.u32("NewLeaseDuration")?;
    if eport == 0 && !any {
        return Err(UpnpError::WildCardNotPermittedInExtPort);
    }
    if iport == 0 {
        return Err(if call.version >= 2 {
            UpnpError::WildCardNotPermittedInIntPort
        } else {
            UpnpError::InvalidArgs
        });
    }
    let lease = if call.version >= 2 {
        // IGD:2: 0 becomes the maximum; longer leases are clamped.
        Lease::Secs(if lease == 0 {
            IGD2_MAX_LEASE
        } else {
            lease.min(IGD2_MAX_LEASE)
        })
    } else {
        match (lease, call.device.upnp_max_lease) {
            (0, 0) => Lease::Permanent,
            (0, cap) => Lease::Secs(cap),
            (l, 0) => Lease::Secs(l),
            (l, cap) => Lease::Secs(l.min(cap)),
        }
    };
    let req = MapRequest {
        want: Want {
            client: call.client,
            proto,
            eport,
            iaddr,
            iport,
            search: any,
            companion: false,
        },
        remote: remote.map(RemoteFilter::host),
        desc: desc.to_string(),
        origin: if call.version >= 2 {
            Origin::UpnpV2
        } else {
            Origin::UpnpV1
        },
        lease,
        nonce: None,
        peer_port: None,
    };
    if let Err(why) = call.lans.internal_host(iaddr.into()) {
        let r = Refusal::NotInternal(why);
        core.refused(&req, &r, call.now);
        return Err(refusal_error(&r, call.version));
    }
    // An existing mapping of the same host is renewed only if it is the
    // same UPnP mapping: another RemoteHost is another mapping, and a
    // NAT-PMP/PCP mapping belongs to another application (and its nonce).
    if let Some(existing) = core.table().get(&Key::new(proto, eport)) {
        let other_remote = existing.remote.map(|r| r.addr) != remote;
        if existing.iaddr == iaddr && !any && (other_remote || existing.origin.is_natpmp_or_pcp()) {
            core.refused(&req, &Refusal::Conflict, call.now);
            return Err(UpnpError::ConflictInMappingEntry);
        }
    }
    core.map(&req, call.now, call.facts)
        .map(|g| g.key)
        .map_err(|r| refusal_error(&r, call.version))
}

fn range_args(args: &Args) -> Result<(u16, u16, Proto, bool), UpnpError> {
    let start = args.u16("NewStartPort")?;
    let end = args.u16("NewEndPort")?;
    let proto = parse_proto(args, "NewProtocol")?;
    let manage = args.bool("NewManage")?;
    if start > end {
        return Err(UpnpError::InconsistentParameters);
    }
    Ok((start, end, proto, manage))
}

fn delete_range(core: &mut Core, call: &Call, args: &Args) -> Result<(), UpnpError> {
    let (start, end, proto, manage) = range_args(args)?;
    // NewManage=1 acts for every client: only an authorised control point
    // may do that, and in secure mode nobody is (miniupnpd checks nothing).
    if manage && core.policy().secure_mode {
        return Err(UpnpError::ActionNotAuthorized);
    }
    let keys: Vec<Key> = core
        .table()
        .range(proto, start, end)
        .filter(|m| manage || m.iaddr == call.client)
        .map(|m| m.key)
        .collect();
    if keys.is_empty() {
        return Err(UpnpError::PortMappingNotFound);
    }
    let why = format!("deleted by {} (DeletePortMappingRange)", call.client);
    for k in &keys {
        core.remove(k, EventKind::Delete, &why);
    }
    Ok(())
}

fn list(core: &Core, call: &Call, args: &Args) -> Result<String, UpnpError> {
    let (start, end, proto, manage) = range_args(args)?;
    let n = args.u16("NewNumberOfPorts")?;
    let max = if n == 0 {
        MAX_LISTING
    } else {
        usize::from(n).min(MAX_LISTING)
    };
    // About 400 bytes an entry: one allocation for the whole listing.
    let mut out = String::with_capacity(512 + 400 * core.table().len().min(max));
    out.push_str("<p:PortMappingList xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
xsi:schemaLocation=\"urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">");
    let mut count = 0;
    for m in core
        .table()
        .range(proto, start, end)
        .filter(|m| manage || m.iaddr == call.client)
        .take(max)
    {
        count += 1;
        // Numbers and addresses need no escaping: written in place.
        out.push_str("<p:PortMappingEntry><p:NewRemoteHost>");
        if let Some(r) = m.remote {
            let _ = write!(out, "{}", r.addr);
        }
        let _ = write!(
            out,
            "</p:NewRemoteHost><p:NewExternalPort>{}</p:NewExternalPort>\
<p:NewProtocol>{}</p:NewProtocol><p:NewInternalPort>{}</p:NewInternalPort>\
<p:NewInternalClient>{}</p:NewInternalClient><p:NewEnabled>1</p:NewEnabled>",
            m.key.eport,
            m.key.proto.as_str(),
            m.iport,
            m.iaddr
        );
        element(&mut out, "p:NewDescription", m.public_desc());
        let _ = write!(
            out,
            "<p:NewLeaseTime>{}</p:NewLeaseTime></p:PortMappingEntry>",
            m.remaining_secs(call.now).unwrap_or(0)
        );
    }
    if count == 0 {
        return Err(UpnpError::PortMappingNotFound);
    }
    out.push_str("</p:PortMappingList>");
    Ok(out)
}

/// QueryStateVariable (UDA 1.0, deprecated in 1.1) for the evented
/// variables of WANIPConnection.
pub fn query_state_variable(core: &Core, call: &Call, var: &str) -> Result<String, UpnpError> {
    match var {
        "ConnectionStatus" => Ok(if call.wan.connected() {
            "Connected"
        } else {
            "Disconnected"
        }
        .into()),
        "PortMappingNumberOfEntries" => Ok(core.table().len().to_string()),
        "ExternalIPAddress" => Ok(call
            .wan
            .external_ip()
            .map(|a| a.to_string())
            .unwrap_or_default()),
        "PossibleConnectionTypes" | "ConnectionType" => Ok("IP_Routed".into()),
        "SystemUpdateID" => Ok(core.system_update_id().to_string()),
        _ => Err(UpnpError::InvalidVar),
    }
}
