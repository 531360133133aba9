//! The UPnP IGD control actions: WANIPConnection, WANCommonInterfaceConfig
//! and Layer3Forwarding, on top of [`Core`].
//!
//! Owns: argument validation per action, the IGDv1/IGDv2 semantic
//! differences (lease 0, error codes), and the out-arguments in SCPD
//! order. Pure: the caller passes the time, the WAN state and the link
//! counters in [`Ctx`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::prefix_contains;
use crate::core::pinhole::PinRefusal;
use crate::core::policy::{Environment, Refusal, Want};
use crate::core::table::{Key, Mapping, Millis, Origin, RemoteFilter};
use crate::core::{Core, EventKind, Lease, MapRequest};
use crate::proto::Proto;
use crate::proto::igd::{Args, UpnpError};
use crate::proto::schema::ServiceKind;
use crate::proto::xml::element;

/// IGD:2 caps every lease at 7 days and turns 0 into that maximum.
pub const IGD2_MAX_LEASE: u32 = crate::config::IGD2_MAX_LEASE;
/// GetListOfPortMappings returns at most this many entries per call.
pub const MAX_LISTING: usize = 1000;

/// Byte and packet counters of the WAN interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
}

/// What the WAN looks like right now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WanInfo {
    /// The address reported as ExternalIPAddress.
    pub external_ip: Option<Ipv4Addr>,
    /// The link is up with an address.
    pub connected: bool,
    /// Seconds for GetStatusInfo's NewUptime.
    pub uptime: u32,
    /// bit/s for GetCommonLinkProperties.
    pub up_bps: u32,
    pub down_bps: u32,
    /// Filled in by the caller for the GetTotal* actions only.
    pub counters: Option<LinkCounters>,
}

/// Everything an action needs besides the table.
pub struct Ctx<'a> {
    /// The control point's address.
    pub client: Ipv4Addr,
    /// IGD semantics to apply: 1 or 2, from the request's namespace.
    pub version: u8,
    pub now: Millis,
    pub wan: &'a WanInfo,
    pub env: &'a dyn Environment,
    /// LAN subnets: an internal client must be in one of them.
    pub lan_nets: &'a [(Ipv4Addr, u8)],
    /// Cap for IGDv1 leases (0 = none).
    pub upnp_max_lease: u32,
    /// The WANConnectionDevice UDN, for Layer3Forwarding and
    /// GetActiveConnection.
    pub conn_udn: &'a str,
    /// The requester's address as it is (IPv6 for requests over IPv6;
    /// `client` is then unspecified).
    pub requester: IpAddr,
    /// LAN IPv6 prefixes: a pinhole's internal client must be in one.
    pub lan_nets6: &'a [(Ipv6Addr, u8)],
    /// Packets counted on the pinhole a GetPinholePackets or
    /// CheckPinholeWorking names, read by the caller beforehand.
    pub pin_packets: Option<u64>,
    /// Conntrack's idle timeouts (TCP established, UDP) for
    /// GetOutboundPinholeTimeout.
    pub outbound_timeout: (u32, u32),
}

/// Out-arguments in SCPD order.
pub type Out = Vec<(&'static str, String)>;

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

/// The description as listed to control points: a PCP nonce is secret
/// (it authorises renewals) and is never shown.
fn listed_desc(m: &Mapping) -> &str {
    if m.origin == Origin::Pcp {
        if m.desc.starts_with("PCP PEER") {
            return "PCP PEER";
        }
        return "PCP MAP";
    }
    &m.desc
}

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
        Refusal::Firewall(_) => UpnpError::ActionFailed,
    }
}

/// Runs one action. Changes to the table are journalled in `core` and
/// reach the firewall when the daemon commits the loop turn.
pub fn handle(
    core: &mut Core,
    ctx: &Ctx,
    service: ServiceKind,
    action: &str,
    args: &Args,
) -> Result<Out, UpnpError> {
    match service {
        ServiceKind::WanIpConnection => wan_ip_connection(core, ctx, action, args),
        ServiceKind::WanCommonInterfaceConfig => common_ifc(core, ctx, action, args),
        ServiceKind::Layer3Forwarding => layer3(ctx, action, args),
        ServiceKind::WanIpv6FirewallControl => firewall_control(core, ctx, action, args),
    }
}

fn pin_error(r: PinRefusal) -> UpnpError {
    match r {
        PinRefusal::NotAllowed => UpnpError::InboundPinholeNotAllowed,
        PinRefusal::NotAuthorized => UpnpError::ActionNotAuthorized,
        PinRefusal::SpaceExhausted => UpnpError::PinholeSpaceExhausted,
        PinRefusal::NoSuchEntry => UpnpError::NoSuchEntry,
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

/// The five arguments naming a pinhole's traffic, validated.
fn pinhole_tuple(
    args: &Args,
    ctx: &Ctx,
) -> Result<(Option<Ipv6Addr>, u16, Ipv6Addr, u16, u8), UpnpError> {
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
    let on_lan = ctx
        .lan_nets6
        .iter()
        .any(|(n, p)| prefix6_contains(*n, *p, iaddr));
    if !unicast || !on_lan {
        return Err(UpnpError::ActionNotAuthorized);
    }
    Ok((remote, rport, iaddr, iport, proto))
}

/// True if `addr` lies in `net/prefix`.
pub fn prefix6_contains(net: Ipv6Addr, prefix: u8, addr: Ipv6Addr) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = 128 - u32::from(prefix.min(128));
    u128::from(net).checked_shr(shift) == u128::from(addr).checked_shr(shift)
}

/// LeaseTime: 1–86400 (A_ARG_TYPE_LeaseTime); outside is 402, as
/// miniupnpd answers.
fn pin_lease(args: &Args, name: &str) -> Result<u32, UpnpError> {
    let l = args.u32(name)?;
    if !(crate::core::pinhole::MIN_LEASE..=crate::core::pinhole::MAX_LEASE).contains(&l) {
        return Err(UpnpError::InvalidArgs);
    }
    Ok(l)
}

fn firewall_control(
    core: &mut Core,
    ctx: &Ctx,
    action: &str,
    args: &Args,
) -> Result<Out, UpnpError> {
    let allowed = core.pin_policy.allowed;
    match action {
        "GetFirewallStatus" => Ok(vec![
            ("FirewallEnabled", b(true)),
            ("InboundPinholeAllowed", b(allowed)),
        ]),
        "GetOutboundPinholeTimeout" => {
            let (_, _, _, _, proto) = pinhole_tuple(args, ctx)?;
            let t = if proto == 6 {
                ctx.outbound_timeout.0
            } else {
                ctx.outbound_timeout.1
            };
            Ok(vec![("OutboundPinholeTimeout", t.to_string())])
        }
        "AddPinhole" => {
            let (remote, rport, iaddr, iport, proto) = pinhole_tuple(args, ctx)?;
            let lease = pin_lease(args, "LeaseTime")?;
            let policy = core.pin_policy.clone();
            let id = core
                .pinholes
                .add(
                    &policy,
                    ctx.env,
                    ctx.requester,
                    remote,
                    rport,
                    iaddr,
                    iport,
                    proto,
                    lease,
                    ctx.now,
                )
                .map_err(pin_error)?;
            Ok(vec![("UniqueID", id.to_string())])
        }
        "UpdatePinhole" => {
            let id = args.u16("UniqueID")?;
            let lease = pin_lease(args, "NewLeaseTime")?;
            let policy = core.pin_policy.clone();
            core.pinholes
                .update(&policy, ctx.env, ctx.requester, id, lease, ctx.now)
                .map_err(pin_error)?;
            Ok(vec![])
        }
        "DeletePinhole" => {
            let id = args.u16("UniqueID")?;
            let policy = core.pin_policy.clone();
            core.pinholes
                .delete(&policy, ctx.env, ctx.requester, id)
                .map_err(pin_error)?;
            Ok(vec![])
        }
        "GetPinholePackets" | "CheckPinholeWorking" => {
            let id = args.u16("UniqueID")?;
            let p = core.pinholes.get(id).ok_or(UpnpError::NoSuchEntry)?;
            if core.pin_policy.secure_mode
                && p.client != ctx.requester
                && !ctx.env.same_host(ctx.requester, p.iaddr)
            {
                return Err(UpnpError::ActionNotAuthorized);
            }
            let packets = ctx.pin_packets.unwrap_or(0);
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

fn wan_ip_connection(
    core: &mut Core,
    ctx: &Ctx,
    action: &str,
    args: &Args,
) -> Result<Out, UpnpError> {
    let status = if ctx.wan.connected {
        "Connected"
    } else {
        "Disconnected"
    };
    match action {
        "GetExternalIPAddress" => Ok(vec![(
            "NewExternalIPAddress",
            ctx.wan
                .external_ip
                .map(|a| a.to_string())
                .unwrap_or_default(),
        )]),
        "GetStatusInfo" => Ok(vec![
            ("NewConnectionStatus", status.into()),
            ("NewLastConnectionError", "ERROR_NONE".into()),
            ("NewUptime", ctx.wan.uptime.to_string()),
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
        "RequestConnection" if ctx.wan.connected => Ok(vec![]),
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
                .table
                .nth(usize::from(i))
                .ok_or(UpnpError::SpecifiedArrayIndexInvalid)?;
            Ok(vec![
                ("NewRemoteHost", remote_text(m.remote)),
                ("NewExternalPort", m.key.eport.to_string()),
                ("NewProtocol", m.key.proto.as_str().into()),
                ("NewInternalPort", m.iport.to_string()),
                ("NewInternalClient", m.iaddr.to_string()),
                ("NewEnabled", "1".into()),
                ("NewPortMappingDescription", listed_desc(m).into()),
                (
                    "NewLeaseDuration",
                    m.remaining_secs(ctx.now).unwrap_or(0).to_string(),
                ),
            ])
        }
        "GetSpecificPortMappingEntry" => {
            let m = find(core, args)?;
            Ok(vec![
                ("NewInternalPort", m.iport.to_string()),
                ("NewInternalClient", m.iaddr.to_string()),
                ("NewEnabled", "1".into()),
                ("NewPortMappingDescription", listed_desc(m).into()),
                (
                    "NewLeaseDuration",
                    m.remaining_secs(ctx.now).unwrap_or(0).to_string(),
                ),
            ])
        }
        "AddPortMapping" => add(core, ctx, args, false).map(|_| vec![]),
        "AddAnyPortMapping" => {
            let key = add(core, ctx, args, true)?;
            Ok(vec![("NewReservedPort", key.eport.to_string())])
        }
        "DeletePortMapping" => {
            let m = find(core, args)?;
            let key = m.key;
            if !core.may_manage(ctx.client, m) {
                return Err(if ctx.version >= 2 {
                    UpnpError::ActionNotAuthorized
                } else {
                    UpnpError::NoSuchEntryInArray
                });
            }
            core.remove(
                &key,
                EventKind::Delete,
                &format!("deleted by {}", ctx.client),
            );
            Ok(vec![])
        }
        "DeletePortMappingRange" => delete_range(core, ctx, args).map(|_| vec![]),
        "GetListOfPortMappings" => list(core, ctx, args).map(|l| vec![("NewPortListing", l)]),
        // Not in the spec, but clients call it (miniupnpd answers 401).
        "GetPortMappingNumberOfEntries" => Ok(vec![(
            "NewPortMappingNumberOfEntries",
            core.table.len().to_string(),
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
        .table
        .get(&Key::new(proto, eport))
        .ok_or(UpnpError::NoSuchEntryInArray)?;
    if m.remote.map(|r| r.addr) != remote {
        return Err(UpnpError::NoSuchEntryInArray);
    }
    Ok(m)
}

fn add(core: &mut Core, ctx: &Ctx, args: &Args, any: bool) -> Result<Key, UpnpError> {
    let remote = parse_remote(args)?;
    let eport = args.u16("NewExternalPort")?;
    let proto = parse_proto(args, "NewProtocol")?;
    let iport = args.u16("NewInternalPort")?;
    let client_text = args.req("NewInternalClient")?.trim();
    // An empty client means the caller (miniupnpd does the same, #236).
    let iaddr = if client_text.is_empty() {
        ctx.client
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
        return Err(if ctx.version >= 2 {
            UpnpError::WildCardNotPermittedInIntPort
        } else {
            UpnpError::InvalidArgs
        });
    }
    let lease = if ctx.version >= 2 {
        // IGD:2: 0 becomes the maximum; longer leases are clamped.
        Lease::Secs(if lease == 0 {
            IGD2_MAX_LEASE
        } else {
            lease.min(IGD2_MAX_LEASE)
        })
    } else {
        match (lease, ctx.upnp_max_lease) {
            (0, 0) => Lease::Permanent,
            (0, cap) => Lease::Secs(cap),
            (l, 0) => Lease::Secs(l),
            (l, cap) => Lease::Secs(l.min(cap)),
        }
    };
    let req = MapRequest {
        want: Want {
            client: ctx.client,
            proto,
            eport,
            iaddr,
            iport,
            search: any,
            companion: false,
        },
        remote: remote.map(RemoteFilter::host),
        desc: desc.to_string(),
        origin: if ctx.version >= 2 {
            Origin::UpnpV2
        } else {
            Origin::UpnpV1
        },
        lease,
        nonce: None,
        peer_port: None,
    };
    let on_lan = ctx
        .lan_nets
        .iter()
        .any(|(n, p)| prefix_contains(*n, *p, iaddr));
    if !on_lan || iaddr.is_unspecified() || iaddr.is_broadcast() || iaddr.is_multicast() {
        core.refused(&req, &Refusal::NotAllowed, ctx.now);
        return Err(refusal_error(&Refusal::NotAllowed, ctx.version));
    }
    // An existing mapping of the same host is renewed only if it is the
    // same UPnP mapping: another RemoteHost is another mapping, and a
    // NAT-PMP/PCP mapping belongs to another application (and its nonce).
    if let Some(existing) = core.table.get(&Key::new(proto, eport)) {
        let other_remote = existing.remote.map(|r| r.addr) != remote;
        if existing.iaddr == iaddr && !any && (other_remote || existing.origin.is_pmp()) {
            core.refused(&req, &Refusal::Conflict, ctx.now);
            return Err(UpnpError::ConflictInMappingEntry);
        }
    }
    core.map(&req, ctx.now, ctx.env)
        .map(|g| g.key)
        .map_err(|r| refusal_error(&r, ctx.version))
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

fn delete_range(core: &mut Core, ctx: &Ctx, args: &Args) -> Result<(), UpnpError> {
    let (start, end, proto, manage) = range_args(args)?;
    // NewManage=1 acts for every client: only an authorised control point
    // may do that, and in secure mode nobody is (miniupnpd checks nothing).
    if manage && core.policy.secure_mode {
        return Err(UpnpError::ActionNotAuthorized);
    }
    let keys: Vec<Key> = core
        .table
        .range(proto, start, end)
        .filter(|m| manage || m.iaddr == ctx.client)
        .map(|m| m.key)
        .collect();
    if keys.is_empty() {
        return Err(UpnpError::PortMappingNotFound);
    }
    let why = format!("deleted by {} (DeletePortMappingRange)", ctx.client);
    for k in &keys {
        core.remove(k, EventKind::Delete, &why);
    }
    Ok(())
}

fn list(core: &Core, ctx: &Ctx, args: &Args) -> Result<String, UpnpError> {
    let (start, end, proto, manage) = range_args(args)?;
    let n = args.u16("NewNumberOfPorts")?;
    let max = if n == 0 {
        MAX_LISTING
    } else {
        usize::from(n).min(MAX_LISTING)
    };
    let mut out = String::with_capacity(512);
    out.push_str("<p:PortMappingList xmlns:p=\"urn:schemas-upnp-org:gw:WANIPConnection\" \
xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
xsi:schemaLocation=\"urn:schemas-upnp-org:gw:WANIPConnection http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd\">");
    let mut count = 0;
    for m in core
        .table
        .range(proto, start, end)
        .filter(|m| manage || m.iaddr == ctx.client)
        .take(max)
    {
        count += 1;
        out.push_str("<p:PortMappingEntry>");
        element(&mut out, "p:NewRemoteHost", &remote_text(m.remote));
        element(&mut out, "p:NewExternalPort", &m.key.eport.to_string());
        element(&mut out, "p:NewProtocol", m.key.proto.as_str());
        element(&mut out, "p:NewInternalPort", &m.iport.to_string());
        element(&mut out, "p:NewInternalClient", &m.iaddr.to_string());
        element(&mut out, "p:NewEnabled", "1");
        element(&mut out, "p:NewDescription", listed_desc(m));
        element(
            &mut out,
            "p:NewLeaseTime",
            &m.remaining_secs(ctx.now).unwrap_or(0).to_string(),
        );
        out.push_str("</p:PortMappingEntry>");
    }
    if count == 0 {
        return Err(UpnpError::PortMappingNotFound);
    }
    out.push_str("</p:PortMappingList>");
    Ok(out)
}

fn common_ifc(core: &Core, ctx: &Ctx, action: &str, args: &Args) -> Result<Out, UpnpError> {
    let _ = core;
    let c = ctx.wan.counters.unwrap_or_default();
    // ui4 counters wrap at 2^32, as the variables are 32-bit.
    let ui4 = |v: u64| (v & 0xffff_ffff).to_string();
    match action {
        "GetCommonLinkProperties" => Ok(vec![
            ("NewWANAccessType", "Ethernet".into()),
            ("NewLayer1UpstreamMaxBitRate", ctx.wan.up_bps.to_string()),
            (
                "NewLayer1DownstreamMaxBitRate",
                ctx.wan.down_bps.to_string(),
            ),
            (
                "NewPhysicalLinkStatus",
                if ctx.wan.connected { "Up" } else { "Down" }.into(),
            ),
        ]),
        "GetTotalBytesSent" => Ok(vec![("NewTotalBytesSent", ui4(c.tx_bytes))]),
        "GetTotalBytesReceived" => Ok(vec![("NewTotalBytesReceived", ui4(c.rx_bytes))]),
        "GetTotalPacketsSent" => Ok(vec![("NewTotalPacketsSent", ui4(c.tx_packets))]),
        "GetTotalPacketsReceived" => Ok(vec![("NewTotalPacketsReceived", ui4(c.rx_packets))]),
        "GetEnabledForInternet" => Ok(vec![("NewEnabledForInternet", b(true))]),
        "GetWANAccessProvider" => Ok(vec![("NewWANAccessProvider", String::new())]),
        "GetMaximumActiveConnections" => Ok(vec![("NewMaximumActiveConnections", "1".into())]),
        "GetActiveConnection" => match args.u16("NewActiveConnectionIndex")? {
            0 => Ok(vec![
                ("NewActiveConnDeviceContainer", ctx.conn_udn.to_string()),
                (
                    "NewActiveConnectionServiceID",
                    "urn:upnp-org:serviceId:WANIPConn1".into(),
                ),
            ]),
            _ => Err(UpnpError::SpecifiedArrayIndexInvalid),
        },
        _ => Err(UpnpError::InvalidAction),
    }
}

/// Layer3Forwarding's one connection service, e.g.
/// `uuid:…:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1`.
pub fn default_connection_service(conn_udn: &str, version: u8) -> String {
    format!("{conn_udn}:WANConnectionDevice:{version},urn:upnp-org:serviceId:WANIPConn1")
}

fn layer3(ctx: &Ctx, action: &str, args: &Args) -> Result<Out, UpnpError> {
    match action {
        "GetDefaultConnectionService" => Ok(vec![(
            "NewDefaultConnectionService",
            default_connection_service(ctx.conn_udn, ctx.version.max(1)),
        )]),
        // There is one connection service; naming it is accepted.
        "SetDefaultConnectionService" => {
            let v = args.req("NewDefaultConnectionService")?;
            if v.contains(ctx.conn_udn) {
                Ok(vec![])
            } else {
                Err(UpnpError::ArgumentValueInvalid)
            }
        }
        _ => Err(UpnpError::InvalidAction),
    }
}

/// QueryStateVariable (UDA 1.0, deprecated in 1.1) for the evented
/// variables of WANIPConnection.
pub fn query_state_variable(core: &Core, ctx: &Ctx, var: &str) -> Result<String, UpnpError> {
    match var {
        "ConnectionStatus" => Ok(if ctx.wan.connected {
            "Connected"
        } else {
            "Disconnected"
        }
        .into()),
        "PortMappingNumberOfEntries" => Ok(core.table.len().to_string()),
        "ExternalIPAddress" => Ok(ctx
            .wan
            .external_ip
            .map(|a| a.to_string())
            .unwrap_or_default()),
        "PossibleConnectionTypes" | "ConnectionType" => Ok("IP_Routed".into()),
        "SystemUpdateID" => Ok(core.system_update_id.to_string()),
        _ => Err(UpnpError::InvalidVar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::policy::{NoListeners, Policy};
    use crate::proto::schema::WAN_IP_CONNECTION;

    const LAN: [(Ipv4Addr, u8); 1] = [(Ipv4Addr::new(192, 168, 77, 0), 24)];

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 77, d)
    }

    fn wan() -> WanInfo {
        WanInfo {
            external_ip: Some(Ipv4Addr::new(192, 0, 3, 1)),
            connected: true,
            uptime: 42,
            up_bps: 1000,
            down_bps: 2000,
            counters: Some(LinkCounters {
                tx_bytes: (1 << 32) + 5,
                rx_bytes: 7,
                tx_packets: 1,
                rx_packets: 2,
            }),
        }
    }

    fn core() -> Core {
        Core::new(Policy::from_config(&Config::default(), vec![]))
    }

    fn call(
        core: &mut Core,
        client: u8,
        version: u8,
        action: &str,
        args: &[(&str, &str)],
    ) -> Result<Out, UpnpError> {
        let w = wan();
        let ctx = Ctx {
            client: ip(client),
            version,
            now: 1000,
            wan: &w,
            env: &NoListeners,
            lan_nets: &LAN,
            upnp_max_lease: 0,
            conn_udn: "uuid:x-2",
            requester: IpAddr::V4(ip(client)),
            lan_nets6: &[],
            pin_packets: None,
            outbound_timeout: (7440, 60),
        };
        let a = Args(
            args.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        let service = if action.starts_with("GetTotal") || action == "GetCommonLinkProperties" {
            ServiceKind::WanCommonInterfaceConfig
        } else if action.ends_with("DefaultConnectionService") {
            ServiceKind::Layer3Forwarding
        } else {
            ServiceKind::WanIpConnection
        };
        handle(core, &ctx, service, action, &a)
    }

    fn add_args<'a>(
        eport: &'a str,
        iport: &'a str,
        client: &'a str,
        lease: &'a str,
    ) -> Vec<(&'a str, &'a str)> {
        vec![
            ("NewRemoteHost", ""),
            ("NewExternalPort", eport),
            ("NewProtocol", "TCP"),
            ("NewInternalPort", iport),
            ("NewInternalClient", client),
            ("NewEnabled", "1"),
            ("NewPortMappingDescription", "test"),
            ("NewLeaseDuration", lease),
        ]
    }

    #[test]
    fn add_list_delete() {
        let mut c = core();
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "192.168.77.2", "3600")
            ),
            Ok(vec![])
        );
        let e = call(
            &mut c,
            2,
            2,
            "GetGenericPortMappingEntry",
            &[("NewPortMappingIndex", "0")],
        )
        .unwrap();
        assert_eq!(e[1], ("NewExternalPort", "18080".into()));
        assert_eq!(e[4], ("NewInternalClient", "192.168.77.2".into()));
        assert_eq!(e[7], ("NewLeaseDuration", "3600".into()));
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "GetGenericPortMappingEntry",
                &[("NewPortMappingIndex", "1")]
            ),
            Err(UpnpError::SpecifiedArrayIndexInvalid)
        );
        let del = [
            ("NewRemoteHost", ""),
            ("NewExternalPort", "18080"),
            ("NewProtocol", "TCP"),
        ];
        assert_eq!(
            call(&mut c, 3, 2, "DeletePortMapping", &del),
            Err(UpnpError::ActionNotAuthorized)
        );
        assert_eq!(
            call(&mut c, 3, 1, "DeletePortMapping", &del),
            Err(UpnpError::NoSuchEntryInArray)
        );
        assert_eq!(call(&mut c, 2, 2, "DeletePortMapping", &del), Ok(vec![]));
        assert_eq!(
            call(&mut c, 2, 2, "DeletePortMapping", &del),
            Err(UpnpError::NoSuchEntryInArray)
        );
    }

    /// 728 NoPortMapsAvailable (IGDv2; IGDv1 has no such code and gets
    /// 501): a client over its quota, then a full table.
    #[test]
    fn no_port_maps_available() {
        let cfg = Config {
            max_mappings: 2,
            max_mappings_per_client: 1,
            ..Config::default()
        };
        let mut c = Core::new(Policy::from_config(&cfg, vec![]));
        let add = |c: &mut Core, host: u8, version: u8, eport: &str| {
            let client = ip(host).to_string();
            call(
                c,
                host,
                version,
                "AddPortMapping",
                &add_args(eport, eport, &client, "0"),
            )
        };
        assert!(add(&mut c, 2, 2, "18080").is_ok());
        assert_eq!(
            add(&mut c, 2, 2, "18081"),
            Err(UpnpError::NoPortMapsAvailable)
        );
        assert_eq!(add(&mut c, 2, 1, "18081"), Err(UpnpError::ActionFailed));
        // renewing the mapping it has is no new mapping
        assert!(add(&mut c, 2, 2, "18080").is_ok());
        assert!(add(&mut c, 3, 2, "18082").is_ok());
        assert_eq!(
            add(&mut c, 4, 2, "18083"),
            Err(UpnpError::NoPortMapsAvailable)
        );
        assert_eq!(c.table.len(), 2);
    }

    #[test]
    fn error_codes() {
        let mut c = core();
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("0", "8080", "192.168.77.2", "0")
            ),
            Err(UpnpError::WildCardNotPermittedInExtPort)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "0", "192.168.77.2", "0")
            ),
            Err(UpnpError::WildCardNotPermittedInIntPort)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "host.lan", "0")
            ),
            Err(UpnpError::InvalidArgs)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("70000", "8080", "192.168.77.2", "0")
            ),
            Err(UpnpError::InvalidArgs)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("80", "8080", "192.168.77.2", "0")
            ),
            Err(UpnpError::ActionNotAuthorized)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                1,
                "AddPortMapping",
                &add_args("80", "8080", "192.168.77.2", "0")
            ),
            Err(UpnpError::ConflictInMappingEntry)
        );
        // secure mode: mapping for another host
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "192.168.77.3", "0")
            ),
            Err(UpnpError::ActionNotAuthorized)
        );
        // not on the LAN
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "10.0.0.1", "0")
            ),
            Err(UpnpError::ActionNotAuthorized)
        );
        assert_eq!(
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "", "0")
            ),
            Ok(vec![])
        );
        assert_eq!(
            call(
                &mut c,
                3,
                2,
                "AddPortMapping",
                &add_args("18080", "8080", "192.168.77.3", "0")
            ),
            Err(UpnpError::ConflictInMappingEntry)
        );
        let mut missing = add_args("18081", "8080", "192.168.77.2", "0");
        missing.remove(6);
        assert_eq!(
            call(&mut c, 2, 2, "AddPortMapping", &missing),
            Err(UpnpError::InvalidArgs)
        );
        assert_eq!(
            call(&mut c, 2, 2, "NoSuchAction", &[]),
            Err(UpnpError::InvalidAction)
        );
        let r = [
            ("NewStartPort", "200"),
            ("NewEndPort", "100"),
            ("NewProtocol", "TCP"),
            ("NewManage", "0"),
        ];
        assert_eq!(
            call(&mut c, 2, 2, "DeletePortMappingRange", &r),
            Err(UpnpError::InconsistentParameters)
        );
        let r = [
            ("NewStartPort", "100"),
            ("NewEndPort", "200"),
            ("NewProtocol", "TCP"),
            ("NewManage", "0"),
        ];
        assert_eq!(
            call(&mut c, 2, 2, "DeletePortMappingRange", &r),
            Err(UpnpError::PortMappingNotFound)
        );
        let r = [
            ("NewStartPort", "0"),
            ("NewEndPort", "65535"),
            ("NewProtocol", "TCP"),
            ("NewManage", "1"),
        ];
        assert_eq!(
            call(&mut c, 2, 2, "DeletePortMappingRange", &r),
            Err(UpnpError::ActionNotAuthorized)
        );
    }

    #[test]
    fn leases_per_version() {
        let mut c = core();
        call(
            &mut c,
            2,
            1,
            "AddPortMapping",
            &add_args("5001", "5001", "192.168.77.2", "0"),
        )
        .unwrap();
        call(
            &mut c,
            2,
            2,
            "AddPortMapping",
            &add_args("5002", "5002", "192.168.77.2", "0"),
        )
        .unwrap();
        call(
            &mut c,
            2,
            2,
            "AddPortMapping",
            &add_args("5003", "5003", "192.168.77.2", "9999999"),
        )
        .unwrap();
        let lease = |c: &mut Core, port: &str| {
            call(
                c,
                2,
                2,
                "GetSpecificPortMappingEntry",
                &[
                    ("NewRemoteHost", ""),
                    ("NewExternalPort", port),
                    ("NewProtocol", "TCP"),
                ],
            )
            .unwrap()[4]
                .1
                .clone()
        };
        assert_eq!(lease(&mut c, "5001"), "0");
        assert_eq!(lease(&mut c, "5002"), "604800");
        assert_eq!(lease(&mut c, "5003"), "604800");
    }

    #[test]
    fn add_any_picks_another_port() {
        let mut c = core();
        call(
            &mut c,
            3,
            2,
            "AddPortMapping",
            &add_args("18080", "8080", "192.168.77.3", "0"),
        )
        .unwrap();
        let r = call(
            &mut c,
            2,
            2,
            "AddAnyPortMapping",
            &add_args("18080", "8080", "192.168.77.2", "0"),
        )
        .unwrap();
        assert_eq!(r, vec![("NewReservedPort", "18081".to_string())]);
        let r = call(
            &mut c,
            2,
            2,
            "AddAnyPortMapping",
            &add_args("0", "9000", "192.168.77.2", "0"),
        )
        .unwrap();
        assert_eq!(r, vec![("NewReservedPort", "9000".to_string())]);
    }

    #[test]
    fn listing_and_range_delete() {
        let mut c = core();
        for p in ["5001", "5002", "5003"] {
            call(
                &mut c,
                2,
                2,
                "AddPortMapping",
                &add_args(p, p, "192.168.77.2", "0"),
            )
            .unwrap();
        }
        call(
            &mut c,
            3,
            2,
            "AddPortMapping",
            &add_args("6000", "6000", "192.168.77.3", "0"),
        )
        .unwrap();
        let l = [
            ("NewStartPort", "0"),
            ("NewEndPort", "65535"),
            ("NewProtocol", "TCP"),
            ("NewManage", "1"),
            ("NewNumberOfPorts", "2"),
        ];
        let out = call(&mut c, 2, 2, "GetListOfPortMappings", &l).unwrap();
        assert_eq!(out[0].1.matches("<p:PortMappingEntry>").count(), 2);
        let l = [
            ("NewStartPort", "0"),
            ("NewEndPort", "65535"),
            ("NewProtocol", "TCP"),
            ("NewManage", "0"),
            ("NewNumberOfPorts", "0"),
        ];
        let out = call(&mut c, 3, 2, "GetListOfPortMappings", &l).unwrap();
        assert_eq!(out[0].1.matches("<p:PortMappingEntry>").count(), 1);
        assert!(
            out[0]
                .1
                .contains("<p:NewExternalPort>6000</p:NewExternalPort>")
        );
        let r = [
            ("NewStartPort", "5002"),
            ("NewEndPort", "6000"),
            ("NewProtocol", "TCP"),
            ("NewManage", "0"),
        ];
        call(&mut c, 2, 2, "DeletePortMappingRange", &r).unwrap();
        assert_eq!(c.table.len(), 2);
        assert!(c.table.get(&Key::new(Proto::Tcp, 6000)).is_some());
    }

    #[test]
    fn other_services() {
        let mut c = core();
        let out = call(&mut c, 2, 2, "GetTotalBytesSent", &[]).unwrap();
        assert_eq!(out, vec![("NewTotalBytesSent", "5".to_string())]);
        let out = call(&mut c, 2, 2, "GetCommonLinkProperties", &[]).unwrap();
        assert_eq!(out[3], ("NewPhysicalLinkStatus", "Up".to_string()));
        let out = call(&mut c, 2, 2, "GetDefaultConnectionService", &[]).unwrap();
        assert_eq!(
            out[0].1,
            "uuid:x-2:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1"
        );
        assert_eq!(
            call(&mut c, 2, 2, "ForceTermination", &[]),
            Err(UpnpError::ActionNotAuthorized)
        );
        assert_eq!(call(&mut c, 2, 2, "RequestConnection", &[]), Ok(vec![]));
    }

    #[test]
    fn out_arguments_follow_the_scpd() {
        let mut c = core();
        call(
            &mut c,
            2,
            2,
            "AddPortMapping",
            &add_args("5001", "5001", "192.168.77.2", "0"),
        )
        .unwrap();
        let cases: [(&str, Vec<(&str, &str)>); 6] = [
            (
                "GetGenericPortMappingEntry",
                vec![("NewPortMappingIndex", "0")],
            ),
            (
                "GetSpecificPortMappingEntry",
                vec![
                    ("NewRemoteHost", ""),
                    ("NewExternalPort", "5001"),
                    ("NewProtocol", "TCP"),
                ],
            ),
            ("GetStatusInfo", vec![]),
            ("GetConnectionTypeInfo", vec![]),
            ("GetNATRSIPStatus", vec![]),
            ("GetExternalIPAddress", vec![]),
        ];
        for (action, args) in cases {
            let out = call(&mut c, 2, 2, action, &args).unwrap();
            let names: Vec<_> = out.iter().map(|(n, _)| *n).collect();
            let want: Vec<_> = WAN_IP_CONNECTION
                .action(action)
                .unwrap()
                .outputs()
                .map(|a| a.name)
                .collect();
            assert_eq!(names, want, "{action}");
        }
    }
}
