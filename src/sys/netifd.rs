//! What netifd says about interfaces, read from its ubus payloads
//! (openwrt.md §6): `network.interface.<name> status`, the `interface.update`
//! notification (the same fields plus `interface`), and
//! `network.interface dump`.
//!
//! Owns: [`IfaceStatus`] and the WAN choice of `network_find_wan`. Pure
//! functions over [`Value`]; no IO. Lives in `sys` because it is knowledge
//! of one adapter's payloads; imports only `proto`.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::proto::blob::Value;

/// At most this many addresses of each family are kept per interface.
pub const MAX_ADDRS: usize = 64;
/// At most this many routes are inspected per interface.
pub const MAX_ROUTES: usize = 256;
/// At most this many interfaces of a dump are inspected.
pub const MAX_IFACES: usize = 256;

/// The parts of an interface's status the daemon acts on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IfaceStatus {
    pub up: bool,
    /// The device carrying layer 3 (`pppoe-wan`, `eth1`, …); absent while
    /// the interface is down.
    pub l3_device: Option<String>,
    /// `ipv4-address` entries: address and prefix length.
    pub ipv4: Vec<(Ipv4Addr, u8)>,
    /// `ipv6-address` entries: address and prefix length.
    pub ipv6: Vec<(Ipv6Addr, u8)>,
    /// A `route` with target `0.0.0.0` and mask 0 (what `network_find_wan`
    /// looks for).
    pub has_default_route4: bool,
}

/// Parses a status table; `None` if `v` is not a table. Malformed entries
/// (bad address, mask out of range) are skipped rather than failing the
/// whole status.
pub fn parse_status(v: &Value) -> Option<IfaceStatus> {
    v.as_table()?;
    let mut st = IfaceStatus {
        up: v.get("up").and_then(Value::as_bool).unwrap_or(false),
        l3_device: v
            .get("l3_device")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
        ..IfaceStatus::default()
    };
    for entry in list(v, "ipv4-address").take(MAX_ADDRS) {
        if let Some(a) = addr_mask::<Ipv4Addr>(entry, 32) {
            st.ipv4.push(a);
        }
    }
    for entry in list(v, "ipv6-address").take(MAX_ADDRS) {
        if let Some(a) = addr_mask::<Ipv6Addr>(entry, 128) {
            st.ipv6.push(a);
        }
    }
    st.has_default_route4 = list(v, "route").take(MAX_ROUTES).any(|r| {
        r.get("target").and_then(Value::as_str) == Some("0.0.0.0")
            && r.get("mask").and_then(Value::as_u32) == Some(0)
    });
    Some(st)
}

/// The `interface` field of a dump entry or an `interface.update` payload.
pub fn interface_name(v: &Value) -> Option<&str> {
    v.get("interface").and_then(Value::as_str)
}

/// The WAN in a `network.interface dump` reply: the first non-loopback
/// interface with an IPv4 default route (`network_find_wan`), with its name.
pub fn find_wan(dump: &Value) -> Option<(String, IfaceStatus)> {
    list(dump, "interface").take(MAX_IFACES).find_map(|entry| {
        let name = interface_name(entry)?;
        let st = parse_status(entry)?;
        let loopback = name == "loopback" || st.l3_device.as_deref() == Some("lo");
        (st.has_default_route4 && !loopback).then(|| (name.to_owned(), st))
    })
}

fn list<'a>(v: &'a Value, name: &str) -> impl Iterator<Item = &'a Value> {
    v.get(name).and_then(Value::as_array).unwrap_or(&[]).iter()
}

fn addr_mask<A: std::str::FromStr>(entry: &Value, max: u8) -> Option<(A, u8)> {
    let addr = entry.get("address")?.as_str()?.parse().ok()?;
    let mask = u8::try_from(entry.get("mask")?.as_u32()?).ok()?;
    (mask <= max).then_some((addr, mask))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(items: Vec<Value>) -> Value {
        Value::Array(items)
    }

    fn addr(a: &str, mask: u32) -> Value {
        Value::table().with("address", a).with("mask", mask)
    }

    fn route(target: &str, mask: u32, nexthop: &str) -> Value {
        Value::table()
            .with("target", target)
            .with("mask", mask)
            .with("nexthop", nexthop)
            .with("source", "0.0.0.0/0")
    }

    /// `ubus call network.interface.wan status` on a PPPoE line.
    fn pppoe_wan() -> Value {
        Value::table()
            .with("up", true)
            .with("pending", false)
            .with("available", true)
            .with("autostart", true)
            .with("dynamic", false)
            .with("uptime", 86_400u32)
            .with("l3_device", "pppoe-wan")
            .with("proto", "pppoe")
            .with("device", "eth0.2")
            .with("updated", arr(vec!["addresses".into(), "routes".into()]))
            .with("metric", 0u32)
            .with("dns_metric", 0u32)
            .with("delegation", true)
            .with(
                "ipv4-address",
                arr(vec![
                    addr("203.0.113.7", 32).with("ptpaddress", "203.0.113.1"),
                ]),
            )
            .with("ipv6-address", arr(vec![]))
            .with("ipv6-prefix", arr(vec![]))
            .with("ipv6-prefix-assignment", arr(vec![]))
            .with("route", arr(vec![route("0.0.0.0", 0, "203.0.113.1")]))
            .with("dns-server", arr(vec!["198.51.100.53".into()]))
            .with("dns-search", arr(vec![]))
            .with("neighbors", arr(vec![]))
            .with("inactive", Value::table())
            .with("data", Value::table())
    }

    /// A DHCP WAN with a global IPv6 address, as in `interface.update`.
    fn dhcp_wan() -> Value {
        Value::table()
            .with("interface", "wan")
            .with("up", true)
            .with("l3_device", "eth1")
            .with("proto", "dhcp")
            .with("device", "eth1")
            .with("ipv4-address", arr(vec![addr("192.0.2.10", 24)]))
            .with(
                "ipv6-address",
                arr(vec![
                    addr("2001:db8:1::10", 64).with("preferred", 3600u32),
                    addr("not-an-address", 64),
                    addr("2001:db8:1::11", 200),
                ]),
            )
            .with(
                "route",
                arr(vec![
                    route("192.0.2.0", 24, "0.0.0.0"),
                    route("0.0.0.0", 0, "192.0.2.1"),
                ]),
            )
            .with("data", Value::table().with("leasetime", 43_200u32))
    }

    /// An interface that is configured but down.
    fn down_wan() -> Value {
        Value::table()
            .with("interface", "wan")
            .with("up", false)
            .with("pending", false)
            .with("available", true)
            .with("autostart", true)
            .with("proto", "dhcp")
            .with("device", "eth1")
            .with("data", Value::table())
    }

    #[test]
    fn pppoe_status() {
        let st = parse_status(&pppoe_wan()).unwrap();
        assert_eq!(
            st,
            IfaceStatus {
                up: true,
                l3_device: Some("pppoe-wan".into()),
                ipv4: vec![(Ipv4Addr::new(203, 0, 113, 7), 32)],
                ipv6: vec![],
                has_default_route4: true,
            }
        );
    }

    #[test]
    fn dhcp_status_skips_bad_entries() {
        let v = dhcp_wan();
        let st = parse_status(&v).unwrap();
        assert_eq!(interface_name(&v), Some("wan"));
        assert!(st.up);
        assert_eq!(st.l3_device.as_deref(), Some("eth1"));
        assert_eq!(st.ipv4, vec![(Ipv4Addr::new(192, 0, 2, 10), 24)]);
        assert_eq!(st.ipv6, vec![("2001:db8:1::10".parse().unwrap(), 64)]);
        assert!(st.has_default_route4);
    }

    #[test]
    fn down_interface() {
        let st = parse_status(&down_wan()).unwrap();
        assert_eq!(st, IfaceStatus::default());
        assert_eq!(parse_status(&Value::Int32(1)), None);
    }

    #[test]
    fn wan_is_first_with_default_route() {
        let lan = Value::table()
            .with("interface", "lan")
            .with("up", true)
            .with("l3_device", "br-lan")
            .with("ipv4-address", arr(vec![addr("192.168.1.1", 24)]))
            .with("route", arr(vec![]));
        // A loopback with a (bogus) default route is never the WAN.
        let lo = Value::table()
            .with("interface", "loopback")
            .with("up", true)
            .with("l3_device", "lo")
            .with("route", arr(vec![route("0.0.0.0", 0, "127.0.0.1")]));
        let wan6 = Value::table()
            .with("interface", "wan6")
            .with("up", true)
            .with("l3_device", "eth1")
            .with("route", arr(vec![route("::", 0, "fe80::1")]));
        let dump = Value::table().with(
            "interface",
            arr(vec![lan, lo, down_wan(), wan6, dhcp_wan()]),
        );
        let (name, st) = find_wan(&dump).unwrap();
        assert_eq!(name, "wan");
        assert_eq!(st.ipv4, vec![(Ipv4Addr::new(192, 0, 2, 10), 24)]);
        let none = Value::table().with("interface", arr(vec![down_wan()]));
        assert_eq!(find_wan(&none), None);
        assert_eq!(find_wan(&Value::table()), None);
    }

    #[test]
    fn mask_must_be_an_integer_in_range() {
        let v = Value::table().with(
            "ipv4-address",
            arr(vec![
                Value::table()
                    .with("address", "192.0.2.1")
                    .with("mask", "24"),
                addr("192.0.2.2", 33),
                addr("192.0.2.3", 0),
            ]),
        );
        let st = parse_status(&v).unwrap();
        assert_eq!(st.ipv4, vec![(Ipv4Addr::new(192, 0, 2, 3), 0)]);
    }
}
