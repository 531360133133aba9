//! The one declarative table of devices, services, actions, arguments and
//! state variables that rupnpd implements. Descriptions and SCPDs
//! (`desc.rs`), SOAP argument validation (`soap.rs`) and GENA property
//! sets are all generated from it.
//!
//! Owns: the static tables. Pure data.

/// The data types UPnP state variables use here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    String,
    Ui2,
    Ui4,
    Boolean,
}

impl DataType {
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Ui2 => "ui2",
            DataType::Ui4 => "ui4",
            DataType::Boolean => "boolean",
        }
    }
}

/// A state variable. `since` is the first service version that has it.
#[derive(Debug)]
pub struct StateVar {
    pub name: &'static str,
    pub dtype: DataType,
    pub evented: bool,
    pub allowed: &'static [&'static str],
    /// (minimum, maximum) for `allowedValueRange`; only for integer types.
    pub range: Option<(u32, u32)>,
    pub since: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

/// An action argument and the state variable that gives its type.
#[derive(Debug)]
pub struct Arg {
    pub name: &'static str,
    pub dir: Dir,
    pub var: &'static str,
}

#[derive(Debug)]
pub struct Action {
    pub name: &'static str,
    pub since: u8,
    pub args: &'static [Arg],
}

impl Action {
    pub fn inputs(&self) -> impl Iterator<Item = &Arg> {
        self.args.iter().filter(|a| a.dir == Dir::In)
    }
}

/// The services rupnpd implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    WanIpConnection,
    WanCommonInterfaceConfig,
    Layer3Forwarding,
    WanIpv6FirewallControl,
}

#[derive(Debug)]
pub struct Service {
    pub kind: ServiceKind,
    /// `WANIPConnection` in `urn:schemas-upnp-org:service:WANIPConnection:2`.
    pub name: &'static str,
    /// Highest version implemented; `None` means "the device's version"
    /// (WANIPConnection follows the IGD version: :1 in IGDv1 mode, :2 otherwise).
    pub version: Option<u8>,
    pub service_id: &'static str,
    pub scpd_path: &'static str,
    pub control_path: &'static str,
    pub event_path: &'static str,
    /// Only present in IGD:2 descriptions.
    pub v2_only: bool,
    pub actions: &'static [Action],
    pub vars: &'static [StateVar],
}

impl Service {
    /// The version this service is described with in an IGD of `igd_version`.
    pub fn version_in(&self, igd_version: u8) -> u8 {
        self.version.unwrap_or(igd_version)
    }

    /// `urn:schemas-upnp-org:service:<name>:<version>`.
    pub fn urn(&self, version: u8) -> String {
        format!("urn:schemas-upnp-org:service:{}:{version}", self.name)
    }

    pub fn action(&self, name: &str) -> Option<&'static Action> {
        self.actions.iter().find(|a| a.name == name)
    }

    pub fn var(&self, name: &str) -> Option<&'static StateVar> {
        self.vars.iter().find(|v| v.name == name)
    }

    pub fn by_kind(kind: ServiceKind) -> &'static Service {
        match kind {
            ServiceKind::WanIpConnection => &WAN_IP_CONNECTION,
            ServiceKind::WanCommonInterfaceConfig => &WAN_COMMON_IFC,
            ServiceKind::Layer3Forwarding => &LAYER3_FORWARDING,
            ServiceKind::WanIpv6FirewallControl => &WAN_IPV6_FIREWALL_CONTROL,
        }
    }

    pub fn by_control_path(path: &str) -> Option<&'static Service> {
        SERVICES.iter().copied().find(|s| s.control_path == path)
    }

    pub fn by_event_path(path: &str) -> Option<&'static Service> {
        SERVICES.iter().copied().find(|s| s.event_path == path)
    }

    pub fn by_scpd_path(path: &str) -> Option<&'static Service> {
        SERVICES.iter().copied().find(|s| s.scpd_path == path)
    }
}

/// The devices of the IGD tree, root first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    InternetGatewayDevice,
    WanDevice,
    WanConnectionDevice,
}

#[derive(Debug)]
pub struct Device {
    pub kind: DeviceKind,
    pub name: &'static str,
    pub services: &'static [ServiceKind],
    /// Added to the root UUID's last hex digit to derive this device's UDN.
    pub udn_offset: u8,
}

impl Device {
    pub fn urn(&self, version: u8) -> String {
        format!("urn:schemas-upnp-org:device:{}:{version}", self.name)
    }
}

/// Root, then WANDevice, then WANConnectionDevice (each embeds the next).
pub static DEVICES: [Device; 3] = [
    Device {
        kind: DeviceKind::InternetGatewayDevice,
        name: "InternetGatewayDevice",
        services: &[ServiceKind::Layer3Forwarding],
        udn_offset: 0,
    },
    Device {
        kind: DeviceKind::WanDevice,
        name: "WANDevice",
        services: &[ServiceKind::WanCommonInterfaceConfig],
        udn_offset: 1,
    },
    Device {
        kind: DeviceKind::WanConnectionDevice,
        name: "WANConnectionDevice",
        services: &[
            ServiceKind::WanIpConnection,
            ServiceKind::WanIpv6FirewallControl,
        ],
        udn_offset: 2,
    },
];

pub static SERVICES: [&Service; 4] = [
    &WAN_IP_CONNECTION,
    &WAN_COMMON_IFC,
    &LAYER3_FORWARDING,
    &WAN_IPV6_FIREWALL_CONTROL,
];

const fn arg_in(name: &'static str, var: &'static str) -> Arg {
    Arg {
        name,
        dir: Dir::In,
        var,
    }
}

const fn arg_out(name: &'static str, var: &'static str) -> Arg {
    Arg {
        name,
        dir: Dir::Out,
        var,
    }
}

const fn var(name: &'static str, dtype: DataType, evented: bool, since: u8) -> StateVar {
    StateVar {
        name,
        dtype,
        evented,
        allowed: &[],
        range: None,
        since,
    }
}

use DataType::{Boolean, String as Str, Ui2, Ui4};

const MAPPING_IN: [Arg; 8] = [
    arg_in("NewRemoteHost", "RemoteHost"),
    arg_in("NewExternalPort", "ExternalPort"),
    arg_in("NewProtocol", "PortMappingProtocol"),
    arg_in("NewInternalPort", "InternalPort"),
    arg_in("NewInternalClient", "InternalClient"),
    arg_in("NewEnabled", "PortMappingEnabled"),
    arg_in("NewPortMappingDescription", "PortMappingDescription"),
    arg_in("NewLeaseDuration", "PortMappingLeaseDuration"),
];

pub static WAN_IP_CONNECTION: Service = Service {
    kind: ServiceKind::WanIpConnection,
    name: "WANIPConnection",
    version: None,
    service_id: "urn:upnp-org:serviceId:WANIPConn1",
    scpd_path: "/WANIPCn.xml",
    control_path: "/ctl/IPConn",
    event_path: "/evt/IPConn",
    v2_only: false,
    actions: &[
        Action {
            name: "SetConnectionType",
            since: 1,
            args: &[arg_in("NewConnectionType", "ConnectionType")],
        },
        Action {
            name: "GetConnectionTypeInfo",
            since: 1,
            args: &[
                arg_out("NewConnectionType", "ConnectionType"),
                arg_out("NewPossibleConnectionTypes", "PossibleConnectionTypes"),
            ],
        },
        Action {
            name: "RequestConnection",
            since: 1,
            args: &[],
        },
        Action {
            name: "RequestTermination",
            since: 1,
            args: &[],
        },
        Action {
            name: "ForceTermination",
            since: 1,
            args: &[],
        },
        Action {
            name: "SetAutoDisconnectTime",
            since: 1,
            args: &[arg_in("NewAutoDisconnectTime", "AutoDisconnectTime")],
        },
        Action {
            name: "SetIdleDisconnectTime",
            since: 1,
            args: &[arg_in("NewIdleDisconnectTime", "IdleDisconnectTime")],
        },
        Action {
            name: "SetWarnDisconnectDelay",
            since: 1,
            args: &[arg_in("NewWarnDisconnectDelay", "WarnDisconnectDelay")],
        },
        Action {
            name: "GetAutoDisconnectTime",
            since: 1,
            args: &[arg_out("NewAutoDisconnectTime", "AutoDisconnectTime")],
        },
        Action {
            name: "GetIdleDisconnectTime",
            since: 1,
            args: &[arg_out("NewIdleDisconnectTime", "IdleDisconnectTime")],
        },
        Action {
            name: "GetWarnDisconnectDelay",
            since: 1,
            args: &[arg_out("NewWarnDisconnectDelay", "WarnDisconnectDelay")],
        },
        Action {
            name: "GetStatusInfo",
            since: 1,
            args: &[
                arg_out("NewConnectionStatus", "ConnectionStatus"),
                arg_out("NewLastConnectionError", "LastConnectionError"),
                arg_out("NewUptime", "Uptime"),
            ],
        },
        Action {
            name: "GetNATRSIPStatus",
            since: 1,
            args: &[
                arg_out("NewRSIPAvailable", "RSIPAvailable"),
                arg_out("NewNATEnabled", "NATEnabled"),
            ],
        },
        Action {
            name: "GetGenericPortMappingEntry",
            since: 1,
            args: &[
                arg_in("NewPortMappingIndex", "PortMappingNumberOfEntries"),
                arg_out("NewRemoteHost", "RemoteHost"),
                arg_out("NewExternalPort", "ExternalPort"),
                arg_out("NewProtocol", "PortMappingProtocol"),
                arg_out("NewInternalPort", "InternalPort"),
                arg_out("NewInternalClient", "InternalClient"),
                arg_out("NewEnabled", "PortMappingEnabled"),
                arg_out("NewPortMappingDescription", "PortMappingDescription"),
                arg_out("NewLeaseDuration", "PortMappingLeaseDuration"),
            ],
        },
        Action {
            name: "GetSpecificPortMappingEntry",
            since: 1,
            args: &[
                arg_in("NewRemoteHost", "RemoteHost"),
                arg_in("NewExternalPort", "ExternalPort"),
                arg_in("NewProtocol", "PortMappingProtocol"),
                arg_out("NewInternalPort", "InternalPort"),
                arg_out("NewInternalClient", "InternalClient"),
                arg_out("NewEnabled", "PortMappingEnabled"),
                arg_out("NewPortMappingDescription", "PortMappingDescription"),
                arg_out("NewLeaseDuration", "PortMappingLeaseDuration"),
            ],
        },
        Action {
            name: "AddPortMapping",
            since: 1,
            args: &MAPPING_IN,
        },
        Action {
            name: "DeletePortMapping",
            since: 1,
            args: &[
                arg_in("NewRemoteHost", "RemoteHost"),
                arg_in("NewExternalPort", "ExternalPort"),
                arg_in("NewProtocol", "PortMappingProtocol"),
            ],
        },
        Action {
            name: "GetExternalIPAddress",
            since: 1,
            args: &[arg_out("NewExternalIPAddress", "ExternalIPAddress")],
        },
        Action {
            name: "DeletePortMappingRange",
            since: 2,
            args: &[
                arg_in("NewStartPort", "ExternalPort"),
                arg_in("NewEndPort", "ExternalPort"),
                arg_in("NewProtocol", "PortMappingProtocol"),
                arg_in("NewManage", "A_ARG_TYPE_Manage"),
            ],
        },
        Action {
            name: "GetListOfPortMappings",
            since: 2,
            args: &[
                arg_in("NewStartPort", "ExternalPort"),
                arg_in("NewEndPort", "ExternalPort"),
                arg_in("NewProtocol", "PortMappingProtocol"),
                arg_in("NewManage", "A_ARG_TYPE_Manage"),
                arg_in("NewNumberOfPorts", "PortMappingNumberOfEntries"),
                arg_out("NewPortListing", "A_ARG_TYPE_PortListing"),
            ],
        },
        Action {
            name: "AddAnyPortMapping",
            since: 2,
            args: &[
                arg_in("NewRemoteHost", "RemoteHost"),
                arg_in("NewExternalPort", "ExternalPort"),
                arg_in("NewProtocol", "PortMappingProtocol"),
                arg_in("NewInternalPort", "InternalPort"),
                arg_in("NewInternalClient", "InternalClient"),
                arg_in("NewEnabled", "PortMappingEnabled"),
                arg_in("NewPortMappingDescription", "PortMappingDescription"),
                arg_in("NewLeaseDuration", "PortMappingLeaseDuration"),
                // The spec's name; miniupnpd's SCPD says NewExternalPort here
                // and breaks SCPD-driven clients.
                arg_out("NewReservedPort", "ExternalPort"),
            ],
        },
    ],
    vars: &[
        StateVar {
            allowed: &["Unconfigured", "IP_Routed", "IP_Bridged"],
            ..var("ConnectionType", Str, false, 1)
        },
        StateVar {
            allowed: &["Unconfigured", "IP_Routed", "IP_Bridged"],
            ..var("PossibleConnectionTypes", Str, true, 1)
        },
        StateVar {
            allowed: &[
                "Unconfigured",
                "Connecting",
                "Connected",
                "PendingDisconnect",
                "Disconnecting",
                "Disconnected",
            ],
            ..var("ConnectionStatus", Str, true, 1)
        },
        var("Uptime", Ui4, false, 1),
        StateVar {
            allowed: &[
                "ERROR_NONE",
                "ERROR_COMMAND_ABORTED",
                "ERROR_NOT_ENABLED_FOR_INTERNET",
                "ERROR_USER_DISCONNECT",
                "ERROR_ISP_DISCONNECT",
                "ERROR_IDLE_DISCONNECT",
                "ERROR_FORCED_DISCONNECT",
                "ERROR_NO_CARRIER",
                "ERROR_IP_CONFIGURATION",
                "ERROR_UNKNOWN",
            ],
            ..var("LastConnectionError", Str, false, 1)
        },
        var("AutoDisconnectTime", Ui4, false, 1),
        var("IdleDisconnectTime", Ui4, false, 1),
        var("WarnDisconnectDelay", Ui4, false, 1),
        var("RSIPAvailable", Boolean, false, 1),
        var("NATEnabled", Boolean, false, 1),
        var("ExternalIPAddress", Str, true, 1),
        var("PortMappingNumberOfEntries", Ui2, true, 1),
        var("PortMappingEnabled", Boolean, false, 1),
        StateVar {
            range: Some((0, 604_800)),
            ..var("PortMappingLeaseDuration", Ui4, false, 1)
        },
        var("RemoteHost", Str, false, 1),
        var("ExternalPort", Ui2, false, 1),
        StateVar {
            range: Some((1, 65535)),
            ..var("InternalPort", Ui2, false, 1)
        },
        StateVar {
            allowed: &["TCP", "UDP"],
            ..var("PortMappingProtocol", Str, false, 1)
        },
        var("InternalClient", Str, false, 1),
        var("PortMappingDescription", Str, false, 1),
        var("SystemUpdateID", Ui4, true, 2),
        var("A_ARG_TYPE_Manage", Boolean, false, 2),
        var("A_ARG_TYPE_PortListing", Str, false, 2),
    ],
};

pub static WAN_COMMON_IFC: Service = Service {
    kind: ServiceKind::WanCommonInterfaceConfig,
    name: "WANCommonInterfaceConfig",
    version: Some(1),
    service_id: "urn:upnp-org:serviceId:WANCommonIFC1",
    scpd_path: "/WANCfg.xml",
    control_path: "/ctl/CmnIfCfg",
    event_path: "/evt/CmnIfCfg",
    v2_only: false,
    actions: &[
        Action {
            name: "GetCommonLinkProperties",
            since: 1,
            args: &[
                arg_out("NewWANAccessType", "WANAccessType"),
                arg_out("NewLayer1UpstreamMaxBitRate", "Layer1UpstreamMaxBitRate"),
                arg_out(
                    "NewLayer1DownstreamMaxBitRate",
                    "Layer1DownstreamMaxBitRate",
                ),
                arg_out("NewPhysicalLinkStatus", "PhysicalLinkStatus"),
            ],
        },
        Action {
            name: "GetTotalBytesSent",
            since: 1,
            args: &[arg_out("NewTotalBytesSent", "TotalBytesSent")],
        },
        Action {
            name: "GetTotalBytesReceived",
            since: 1,
            args: &[arg_out("NewTotalBytesReceived", "TotalBytesReceived")],
        },
        Action {
            name: "GetTotalPacketsSent",
            since: 1,
            args: &[arg_out("NewTotalPacketsSent", "TotalPacketsSent")],
        },
        Action {
            name: "GetTotalPacketsReceived",
            since: 1,
            args: &[arg_out("NewTotalPacketsReceived", "TotalPacketsReceived")],
        },
        Action {
            name: "GetEnabledForInternet",
            since: 1,
            args: &[arg_out("NewEnabledForInternet", "EnabledForInternet")],
        },
        Action {
            name: "GetWANAccessProvider",
            since: 1,
            args: &[arg_out("NewWANAccessProvider", "WANAccessProvider")],
        },
        Action {
            name: "GetMaximumActiveConnections",
            since: 1,
            args: &[arg_out(
                "NewMaximumActiveConnections",
                "MaximumActiveConnections",
            )],
        },
        Action {
            name: "GetActiveConnection",
            since: 1,
            args: &[
                arg_in("NewActiveConnectionIndex", "NumberOfActiveConnections"),
                arg_out(
                    "NewActiveConnDeviceContainer",
                    "ActiveConnectionDeviceContainer",
                ),
                arg_out("NewActiveConnectionServiceID", "ActiveConnectionServiceID"),
            ],
        },
    ],
    vars: &[
        StateVar {
            allowed: &["DSL", "POTS", "Cable", "Ethernet"],
            ..var("WANAccessType", Str, false, 1)
        },
        var("Layer1UpstreamMaxBitRate", Ui4, false, 1),
        var("Layer1DownstreamMaxBitRate", Ui4, false, 1),
        StateVar {
            allowed: &["Up", "Down", "Initializing", "Unavailable"],
            ..var("PhysicalLinkStatus", Str, true, 1)
        },
        var("TotalBytesSent", Ui4, false, 1),
        var("TotalBytesReceived", Ui4, false, 1),
        var("TotalPacketsSent", Ui4, false, 1),
        var("TotalPacketsReceived", Ui4, false, 1),
        var("EnabledForInternet", Boolean, false, 1),
        var("WANAccessProvider", Str, false, 1),
        var("MaximumActiveConnections", Ui2, false, 1),
        var("NumberOfActiveConnections", Ui2, false, 1),
        var("ActiveConnectionDeviceContainer", Str, false, 1),
        var("ActiveConnectionServiceID", Str, false, 1),
    ],
};

pub static LAYER3_FORWARDING: Service = Service {
    kind: ServiceKind::Layer3Forwarding,
    name: "Layer3Forwarding",
    version: Some(1),
    service_id: "urn:upnp-org:serviceId:L3Forwarding1",
    scpd_path: "/L3F.xml",
    control_path: "/ctl/L3F",
    event_path: "/evt/L3F",
    v2_only: false,
    actions: &[
        Action {
            name: "SetDefaultConnectionService",
            since: 1,
            args: &[arg_in(
                "NewDefaultConnectionService",
                "DefaultConnectionService",
            )],
        },
        Action {
            name: "GetDefaultConnectionService",
            since: 1,
            args: &[arg_out(
                "NewDefaultConnectionService",
                "DefaultConnectionService",
            )],
        },
    ],
    vars: &[var("DefaultConnectionService", Str, true, 1)],
};

pub static WAN_IPV6_FIREWALL_CONTROL: Service = Service {
    kind: ServiceKind::WanIpv6FirewallControl,
    name: "WANIPv6FirewallControl",
    version: Some(1),
    service_id: "urn:upnp-org:serviceId:WANIPv6Firewall1",
    scpd_path: "/WANIP6FC.xml",
    control_path: "/ctl/IP6FCtl",
    event_path: "/evt/IP6FCtl",
    v2_only: true,
    actions: &[
        Action {
            name: "GetFirewallStatus",
            since: 1,
            args: &[
                arg_out("FirewallEnabled", "FirewallEnabled"),
                arg_out("InboundPinholeAllowed", "InboundPinholeAllowed"),
            ],
        },
        Action {
            name: "GetOutboundPinholeTimeout",
            since: 1,
            args: &[
                arg_in("RemoteHost", "A_ARG_TYPE_IPv6Address"),
                arg_in("RemotePort", "A_ARG_TYPE_Port"),
                arg_in("InternalClient", "A_ARG_TYPE_IPv6Address"),
                arg_in("InternalPort", "A_ARG_TYPE_Port"),
                arg_in("Protocol", "A_ARG_TYPE_Protocol"),
                arg_out(
                    "OutboundPinholeTimeout",
                    "A_ARG_TYPE_OutboundPinholeTimeout",
                ),
            ],
        },
        Action {
            name: "AddPinhole",
            since: 1,
            args: &[
                arg_in("RemoteHost", "A_ARG_TYPE_IPv6Address"),
                arg_in("RemotePort", "A_ARG_TYPE_Port"),
                arg_in("InternalClient", "A_ARG_TYPE_IPv6Address"),
                arg_in("InternalPort", "A_ARG_TYPE_Port"),
                arg_in("Protocol", "A_ARG_TYPE_Protocol"),
                arg_in("LeaseTime", "A_ARG_TYPE_LeaseTime"),
                arg_out("UniqueID", "A_ARG_TYPE_UniqueID"),
            ],
        },
        Action {
            name: "UpdatePinhole",
            since: 1,
            args: &[
                arg_in("UniqueID", "A_ARG_TYPE_UniqueID"),
                arg_in("NewLeaseTime", "A_ARG_TYPE_LeaseTime"),
            ],
        },
        Action {
            name: "DeletePinhole",
            since: 1,
            args: &[arg_in("UniqueID", "A_ARG_TYPE_UniqueID")],
        },
        Action {
            name: "GetPinholePackets",
            since: 1,
            args: &[
                arg_in("UniqueID", "A_ARG_TYPE_UniqueID"),
                arg_out("PinholePackets", "A_ARG_TYPE_PinholePackets"),
            ],
        },
        Action {
            name: "CheckPinholeWorking",
            since: 1,
            args: &[
                arg_in("UniqueID", "A_ARG_TYPE_UniqueID"),
                arg_out("IsWorking", "A_ARG_TYPE_Boolean"),
            ],
        },
    ],
    vars: &[
        var("FirewallEnabled", Boolean, true, 1),
        var("InboundPinholeAllowed", Boolean, true, 1),
        var("A_ARG_TYPE_IPv6Address", Str, false, 1),
        var("A_ARG_TYPE_Port", Ui2, false, 1),
        var("A_ARG_TYPE_Protocol", Ui2, false, 1),
        StateVar {
            range: Some((1, 86400)),
            ..var("A_ARG_TYPE_LeaseTime", Ui4, false, 1)
        },
        var("A_ARG_TYPE_UniqueID", Ui2, false, 1),
        var("A_ARG_TYPE_OutboundPinholeTimeout", Ui4, false, 1),
        var("A_ARG_TYPE_PinholePackets", Ui4, false, 1),
        var("A_ARG_TYPE_Boolean", Boolean, false, 1),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_argument_names_a_state_variable_of_its_service() {
        for s in SERVICES {
            for a in s.actions {
                for arg in a.args {
                    let v = s.var(arg.var).unwrap_or_else(|| {
                        panic!(
                            "{}#{}: {} has no variable {}",
                            s.name, a.name, arg.name, arg.var
                        )
                    });
                    assert!(v.since <= a.since.max(v.since));
                    // a v1 action may not depend on a v2-only variable
                    assert!(v.since <= a.since, "{}#{} uses {}", s.name, a.name, v.name);
                }
            }
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            Service::by_control_path("/ctl/IPConn").map(|s| s.kind),
            Some(ServiceKind::WanIpConnection)
        );
        assert!(Service::by_scpd_path("/nope.xml").is_none());
        assert_eq!(
            WAN_IP_CONNECTION.urn(2),
            "urn:schemas-upnp-org:service:WANIPConnection:2"
        );
        assert_eq!(WAN_COMMON_IFC.version_in(2), 1);
        assert_eq!(WAN_IP_CONNECTION.version_in(1), 1);
        let any = WAN_IP_CONNECTION.action("AddAnyPortMapping").unwrap();
        assert_eq!(
            any.args
                .iter()
                .filter(|a| a.dir == Dir::Out)
                .map(|a| a.name)
                .collect::<Vec<_>>(),
            ["NewReservedPort"]
        );
    }
}
