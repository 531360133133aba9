//! WANCommonInterfaceConfig (the WAN link's properties and counters) and
//! Layer3Forwarding (the one connection service).
//!
//! Owns: these services' actions. The counters and the link speed are
//! read from [`crate::core::facts::Facts`] by the actions that report
//! them, and by no other.

use super::{Answer, Call, b};
use crate::proto::igd::{Args, UpnpError};

/// The WANIPConnection's service ID within its device.
const CONNECTION_SERVICE_ID: &str = "urn:upnp-org:serviceId:WANIPConn1";

pub(super) fn common_interface(call: &Call, action: &str, args: &Args) -> Answer {
    // ui4 counters wrap at 2^32, as the variables are 32-bit.
    let counter = |f: fn(&crate::core::facts::LinkCounters) -> u64| {
        let c = call.facts.wan_counters().unwrap_or_default();
        (f(&c) & 0xffff_ffff).to_string()
    };
    match action {
        "GetCommonLinkProperties" => {
            let (up, down) = call.device.link_bps(call.facts);
            Ok(vec![
                ("NewWANAccessType", "Ethernet".into()),
                ("NewLayer1UpstreamMaxBitRate", up.to_string()),
                ("NewLayer1DownstreamMaxBitRate", down.to_string()),
                (
                    "NewPhysicalLinkStatus",
                    if call.wan.connected() { "Up" } else { "Down" }.into(),
                ),
            ])
        }
        "GetTotalBytesSent" => Ok(vec![("NewTotalBytesSent", counter(|c| c.tx_bytes))]),
        "GetTotalBytesReceived" => Ok(vec![("NewTotalBytesReceived", counter(|c| c.rx_bytes))]),
        "GetTotalPacketsSent" => Ok(vec![("NewTotalPacketsSent", counter(|c| c.tx_packets))]),
        "GetTotalPacketsReceived" => {
            Ok(vec![("NewTotalPacketsReceived", counter(|c| c.rx_packets))])
        }
        "GetEnabledForInternet" => Ok(vec![("NewEnabledForInternet", b(true))]),
        "GetWANAccessProvider" => Ok(vec![("NewWANAccessProvider", String::new())]),
        "GetMaximumActiveConnections" => Ok(vec![("NewMaximumActiveConnections", "1".into())]),
        "GetActiveConnection" => match args.u16("NewActiveConnectionIndex")? {
            0 => Ok(vec![
                ("NewActiveConnDeviceContainer", call.device.conn_udn()),
                ("NewActiveConnectionServiceID", CONNECTION_SERVICE_ID.into()),
            ]),
            _ => Err(UpnpError::SpecifiedArrayIndexInvalid),
        },
        _ => Err(UpnpError::InvalidAction),
    }
}

/// Layer3Forwarding's one connection service, e.g.
/// `uuid:…:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1`.
pub fn default_connection_service(conn_udn: &str, version: u8) -> String {
    format!("{conn_udn}:WANConnectionDevice:{version},{CONNECTION_SERVICE_ID}")
}

pub(super) fn layer3(call: &Call, action: &str, args: &Args) -> Answer {
    let conn_udn = call.device.conn_udn();
    match action {
        "GetDefaultConnectionService" => Ok(vec![(
            "NewDefaultConnectionService",
            default_connection_service(&conn_udn, call.version.max(1)),
        )]),
        // There is one connection service; naming it is accepted.
        "SetDefaultConnectionService" => {
            let v = args.req("NewDefaultConnectionService")?;
            if v.contains(conn_udn.as_str()) {
                Ok(vec![])
            } else {
                Err(UpnpError::ArgumentValueInvalid)
            }
        }
        _ => Err(UpnpError::InvalidAction),
    }
}
