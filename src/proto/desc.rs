//! Device and service descriptions (UDA §2), rendered from `schema.rs`.
//!
//! Owns: the root description XML for IGD:1 and IGD:2, every SCPD, and
//! the derivation of the embedded devices' UDNs. Pure.

use crate::proto::schema::{DEVICES, Device, Dir, Service, ServiceKind};
use crate::proto::xml::{element, escape_into};

/// What the description says about this router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescParams {
    /// Root device UUID, without the `uuid:` prefix.
    pub uuid: String,
    pub friendly_name: String,
    pub model_number: String,
    pub serial_number: String,
    /// `None` omits the element (UCI `presentation_url ''`).
    pub presentation_url: Option<String>,
    /// CONFIGID.UPNP.ORG and the root `configId` (UDA 1.1).
    pub config_id: u32,
    /// Include WANIPv6FirewallControl (IGD:2 only).
    pub pinholes: bool,
}

/// The UDN of a device of the tree: the root UUID with `offset` added to
/// its last hex digit (as miniupnpd derives its embedded devices).
pub fn udn(root_uuid: &str, offset: u8) -> String {
    let mut s = String::with_capacity(root_uuid.len() + 5);
    s.push_str("uuid:");
    let Some(last) = root_uuid.chars().last() else {
        return s;
    };
    let head = &root_uuid[..root_uuid.len() - last.len_utf8()];
    s.push_str(head);
    let digit = last.to_digit(16).unwrap_or(0);
    let d = (digit + u32::from(offset)) % 16;
    s.push(char::from_digit(d, 16).unwrap_or('0'));
    s
}

fn includes(p: &DescParams, s: &Service, version: u8) -> bool {
    if s.kind == ServiceKind::WanIpv6FirewallControl && !p.pinholes {
        return false;
    }
    !s.v2_only || version >= 2
}

fn device_xml(out: &mut String, p: &DescParams, version: u8, depth: usize) {
    let Some(dev) = DEVICES.get(depth) else {
        return;
    };
    out.push_str("<device>");
    element(out, "deviceType", &dev.urn(version));
    let name = match depth {
        0 => p.friendly_name.clone(),
        _ => format!("{} {}", p.friendly_name, dev.name),
    };
    element(out, "friendlyName", &name);
    element(out, "manufacturer", "rupnpd");
    element(out, "manufacturerURL", "https://openwrt.org/");
    element(out, "modelDescription", model_description(dev));
    element(out, "modelName", "rupnpd");
    element(out, "modelNumber", &p.model_number);
    element(out, "modelURL", "https://openwrt.org/");
    if depth == 0 {
        element(out, "serialNumber", &p.serial_number);
    }
    element(out, "UDN", &udn(&p.uuid, dev.udn_offset));
    out.push_str("<serviceList>");
    for kind in dev.services {
        let s = Service::by_kind(*kind);
        if !includes(p, s, version) {
            continue;
        }
        out.push_str("<service>");
        element(out, "serviceType", &s.urn(s.version_in(version)));
        element(out, "serviceId", s.service_id);
        element(out, "SCPDURL", s.scpd_path);
        element(out, "controlURL", s.control_path);
        element(out, "eventSubURL", s.event_path);
        out.push_str("</service>");
    }
    out.push_str("</serviceList>");
    if depth + 1 < DEVICES.len() {
        out.push_str("<deviceList>");
        device_xml(out, p, version, depth + 1);
        out.push_str("</deviceList>");
    }
    if depth == 0 {
        if let Some(url) = &p.presentation_url {
            element(out, "presentationURL", url);
        }
    }
    out.push_str("</device>");
}

fn model_description(dev: &Device) -> &'static str {
    match dev.kind {
        crate::proto::schema::DeviceKind::InternetGatewayDevice => "UPnP Internet Gateway Device",
        crate::proto::schema::DeviceKind::WanDevice => "WAN Device",
        crate::proto::schema::DeviceKind::WanConnectionDevice => "WAN Connection Device",
    }
}

/// The root description of an IGD of `version` (1 or 2).
pub fn root(p: &DescParams, version: u8) -> String {
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\"?>\n");
    if version >= 2 {
        out.push_str("<root xmlns=\"urn:schemas-upnp-org:device-1-0\" configId=\"");
        out.push_str(&p.config_id.to_string());
        out.push_str("\"><specVersion><major>1</major><minor>1</minor></specVersion>");
    } else {
        out.push_str("<root xmlns=\"urn:schemas-upnp-org:device-1-0\">");
        out.push_str("<specVersion><major>1</major><minor>0</minor></specVersion>");
    }
    device_xml(&mut out, p, version, 0);
    out.push_str("</root>\n");
    out
}

/// The SCPD of a service as described in an IGD of `igd_version`: the
/// actions and variables of that service version, with the value ranges
/// that version defines.
pub fn scpd(s: &Service, igd_version: u8) -> String {
    let version = s.version_in(igd_version);
    // WANIPConnection:1 defines no value ranges; :2 added them.
    let ranges = s.version.is_some() || version >= 2;
    let mut out = String::with_capacity(8192);
    out.push_str("<?xml version=\"1.0\"?>\n<scpd xmlns=\"urn:schemas-upnp-org:service-1-0\">");
    out.push_str("<specVersion><major>1</major><minor>0</minor></specVersion><actionList>");
    for a in s.actions.iter().filter(|a| a.since <= version) {
        out.push_str("<action>");
        element(&mut out, "name", a.name);
        if !a.args.is_empty() {
            out.push_str("<argumentList>");
            for arg in a.args {
                out.push_str("<argument>");
                element(&mut out, "name", arg.name);
                element(
                    &mut out,
                    "direction",
                    if arg.dir == Dir::In { "in" } else { "out" },
                );
                element(&mut out, "relatedStateVariable", arg.var);
                out.push_str("</argument>");
            }
            out.push_str("</argumentList>");
        }
        out.push_str("</action>");
    }
    out.push_str("</actionList><serviceStateTable>");
    for v in s.vars.iter().filter(|v| v.since <= version) {
        out.push_str("<stateVariable sendEvents=\"");
        out.push_str(if v.evented { "yes" } else { "no" });
        out.push_str("\">");
        element(&mut out, "name", v.name);
        element(&mut out, "dataType", v.dtype.as_str());
        if !v.allowed.is_empty() {
            out.push_str("<allowedValueList>");
            for a in v.allowed {
                out.push_str("<allowedValue>");
                escape_into(&mut out, a);
                out.push_str("</allowedValue>");
            }
            out.push_str("</allowedValueList>");
        }
        if let Some((lo, hi)) = v.range.filter(|_| ranges) {
            out.push_str("<allowedValueRange>");
            element(&mut out, "minimum", &lo.to_string());
            element(&mut out, "maximum", &hi.to_string());
            out.push_str("</allowedValueRange>");
        }
        out.push_str("</stateVariable>");
    }
    out.push_str("</serviceStateTable></scpd>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::schema::{WAN_COMMON_IFC, WAN_IP_CONNECTION};

    fn params() -> DescParams {
        DescParams {
            uuid: "3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b".into(),
            friendly_name: "OpenWrt <router>".into(),
            model_number: "0.1.0".into(),
            serial_number: "00000000".into(),
            presentation_url: Some("http://192.168.77.1/".into()),
            config_id: 7,
            pinholes: true,
        }
    }

    #[test]
    fn udns_follow_the_root() {
        assert_eq!(udn("abc-0009", 0), "uuid:abc-0009");
        assert_eq!(udn("abc-0009", 1), "uuid:abc-000a");
        assert_eq!(udn("abc-000f", 2), "uuid:abc-0001");
    }

    #[test]
    fn igd2_tree() {
        let x = root(&params(), 2);
        assert!(x.contains("configId=\"7\""));
        assert!(x.contains(
            "<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:2</deviceType>"
        ));
        assert!(x.contains(
            "<deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:2</deviceType>"
        ));
        assert!(
            x.contains("<serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType>")
        );
        assert!(x.contains(
            "<serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType>"
        ));
        assert!(x.contains(
            "<serviceType>urn:schemas-upnp-org:service:WANIPv6FirewallControl:1</serviceType>"
        ));
        assert!(x.contains("<friendlyName>OpenWrt &lt;router&gt;</friendlyName>"));
        assert!(x.contains("<UDN>uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d07d</UDN>"));
        assert!(x.contains("<presentationURL>http://192.168.77.1/</presentationURL>"));
    }

    #[test]
    fn igd1_tree_has_no_v2_types() {
        let x = root(&params(), 1);
        assert!(x.contains("InternetGatewayDevice:1<"));
        assert!(x.contains("WANIPConnection:1<"));
        assert!(!x.contains(":2<"));
        assert!(!x.contains("WANIPv6FirewallControl"));
        assert!(!x.contains("configId"));
    }

    #[test]
    fn scpds_per_version() {
        let v2 = scpd(&WAN_IP_CONNECTION, 2);
        assert!(v2.contains("<name>AddAnyPortMapping</name>"));
        assert!(v2.contains(
            "<argument><name>NewReservedPort</name><direction>out</direction>\
<relatedStateVariable>ExternalPort</relatedStateVariable></argument>"
        ));
        assert!(v2.contains("<name>SystemUpdateID</name>"));
        assert!(v2.contains("<maximum>604800</maximum>"));
        let v1 = scpd(&WAN_IP_CONNECTION, 1);
        assert!(!v1.contains("AddAnyPortMapping"));
        assert!(!v1.contains("SystemUpdateID"));
        assert!(!v1.contains("allowedValueRange"));
        assert!(
            v1.contains(
                "<stateVariable sendEvents=\"yes\"><name>PortMappingNumberOfEntries</name>"
            )
        );
        let cfg = scpd(&WAN_COMMON_IFC, 2);
        assert!(cfg.contains("<name>GetTotalBytesSent</name>"));
    }
}
