//! SSDP (UDA §1): M-SEARCH requests in; search responses and NOTIFY
//! alive/byebye out; which (ST, USN) pairs an IGD answers.
//!
//! Owns: [`Search`], [`parse`], the announcement rows, and the message
//! texts. Pure: the caller supplies dates, addresses and timing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::proto::desc::udn;
use crate::proto::schema::{DEVICES, Service, ServiceKind};

/// Datagrams larger than this are not SSDP requests worth reading.
pub const MAX_DATAGRAM: usize = 2048;
/// The SSDP port (UDA §1.1.2).
pub const PORT: u16 = 1900;

/// An SSDP multicast group: 239.255.255.250 (UDA §1.1.2), and over IPv6
/// the link-local FF02::C and site-local FF05::C (UDA Annex A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    V4,
    LinkLocal,
    SiteLocal,
}

impl Group {
    /// The IPv6 groups a device joins and announces to.
    pub const V6: [Group; 2] = [Group::LinkLocal, Group::SiteLocal];

    pub fn addr(self) -> IpAddr {
        match self {
            Group::V4 => IpAddr::V4(Ipv4Addr::new(239, 255, 255, 250)),
            Group::LinkLocal => IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0xc)),
            Group::SiteLocal => IpAddr::V6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 0, 0xc)),
        }
    }

    /// The HOST header of a NOTIFY sent to the group (UDA Annex A: the
    /// IPv6 literal in brackets).
    pub fn host(self) -> &'static str {
        match self {
            Group::V4 => "239.255.255.250:1900",
            Group::LinkLocal => "[FF02::C]:1900",
            Group::SiteLocal => "[FF05::C]:1900",
        }
    }
}
/// UDA 1.1: MX above 5 is treated as 5.
pub const MAX_MX: u8 = 5;

/// A valid M-SEARCH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub st: String,
    /// Seconds to spread replies over; `None` for a unicast search (no MX).
    pub mx: Option<u8>,
    pub user_agent: Option<String>,
}

/// Parses one datagram. `None` for anything that is not a well-formed
/// M-SEARCH with `MAN: "ssdp:discover"` and an ST (NOTIFYs from other
/// devices included): those get no answer.
pub fn parse(datagram: &[u8]) -> Option<Search> {
    if datagram.len() > MAX_DATAGRAM {
        return None;
    }
    let mut headers = [httparse::EMPTY_HEADER; 24];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(datagram) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return None,
    }
    if req.method != Some("M-SEARCH") || req.path != Some("*") {
        return None;
    }
    let mut st = None;
    let mut mx = None;
    let mut man = false;
    let mut user_agent = None;
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value).ok()?.trim();
        if h.name.eq_ignore_ascii_case("st") {
            st = Some(v.to_string());
        } else if h.name.eq_ignore_ascii_case("man") {
            man = v == "\"ssdp:discover\"";
        } else if h.name.eq_ignore_ascii_case("mx") {
            // UDA 1.1 §1.3.3: an invalid MX makes the request invalid.
            let n = crate::proto::parse_u32(v)?;
            mx = Some(n.clamp(0, u32::from(MAX_MX)) as u8);
        } else if h.name.eq_ignore_ascii_case("user-agent") {
            user_agent = Some(v.to_string());
        }
    }
    let st = st.filter(|s| !s.is_empty() && s.len() <= 256)?;
    man.then_some(Search { st, mx, user_agent })
}

/// What the announcements describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Root UUID without `uuid:`.
    pub uuid: String,
    /// IGD version announced (1 or 2).
    pub version: u8,
    pub pinholes: bool,
}

/// One (NT or ST, USN) pair.
pub type Row = (String, String);

fn service_kinds(id: &Identity) -> impl Iterator<Item = (usize, &'static Service)> + '_ {
    DEVICES.iter().enumerate().flat_map(move |(i, d)| {
        d.services
            .iter()
            .map(|k| Service::by_kind(*k))
            .filter(move |s| {
                (s.kind != ServiceKind::WanIpv6FirewallControl || id.pinholes)
                    && (!s.v2_only || id.version >= 2)
            })
            .map(move |s| (i, s))
    })
}

/// Every announcement row (UDA §1.1.2): the root device, each device's
/// UUID and type, and each service type. 11 rows for IGD:2 with pinholes.
pub fn rows(id: &Identity) -> Vec<Row> {
    let mut out = Vec::with_capacity(12);
    let root = udn(&id.uuid, 0);
    out.push(("upnp:rootdevice".into(), format!("{root}::upnp:rootdevice")));
    for d in &DEVICES {
        let u = udn(&id.uuid, d.udn_offset);
        out.push((u.clone(), u.clone()));
        let t = d.urn(id.version);
        out.push((t.clone(), format!("{u}::{t}")));
    }
    for (i, s) in service_kinds(id) {
        let u = udn(&id.uuid, DEVICES[i].udn_offset);
        let t = s.urn(s.version_in(id.version));
        out.push((t.clone(), format!("{u}::{t}")));
    }
    out
}

/// The rows that answer a search target. A device or service type matches
/// at any version up to ours, and the reply carries the version asked for
/// (UDA 1.1 §1.3.2).
pub fn answer(id: &Identity, st: &str) -> Vec<Row> {
    if st == "ssdp:all" {
        return rows(id);
    }
    if st == "upnp:rootdevice" {
        let root = udn(&id.uuid, 0);
        return vec![(st.into(), format!("{root}::upnp:rootdevice"))];
    }
    if st.starts_with("uuid:") {
        return DEVICES
            .iter()
            .map(|d| udn(&id.uuid, d.udn_offset))
            .filter(|u| u == st)
            .map(|u| (u.clone(), u))
            .collect();
    }
    let Some((base, v)) = st.rsplit_once(':') else {
        return Vec::new();
    };
    let Some(asked) = crate::proto::parse_u16(v).filter(|v| *v >= 1) else {
        return Vec::new();
    };
    if let Some(name) = base.strip_prefix("urn:schemas-upnp-org:device:") {
        for d in &DEVICES {
            if d.name == name && asked <= u16::from(id.version) {
                let u = udn(&id.uuid, d.udn_offset);
                return vec![(st.into(), format!("{u}::{st}"))];
            }
        }
    } else if let Some(name) = base.strip_prefix("urn:schemas-upnp-org:service:") {
        for (i, s) in service_kinds(id) {
            if s.name == name && asked <= u16::from(s.version_in(id.version)) {
                let u = udn(&id.uuid, DEVICES[i].udn_offset);
                return vec![(st.into(), format!("{u}::{st}"))];
            }
        }
    }
    Vec::new()
}

/// Per-message fields that do not depend on the row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common<'a> {
    /// `http://<lan address>:<port>/rootDesc.xml`, an IPv6 address in
    /// brackets
    pub location: &'a str,
    /// The NOTIFY's HOST: [`Group::host`] of the group it goes to.
    pub host: &'a str,
    pub server: &'a str,
    pub boot_id: u32,
    pub config_id: u32,
    /// Seconds for `CACHE-CONTROL: max-age`.
    pub max_age: u32,
}

/// A unicast search response.
pub fn search_response(c: &Common, row: &Row, date: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age={}\r\nDATE: {date}\r\nEXT:\r\nLOCATION: {}\r\n\
SERVER: {}\r\nST: {}\r\nUSN: {}\r\nBOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
        c.max_age, c.location, c.server, row.0, row.1, c.boot_id, c.config_id
    )
}

/// A multicast `ssdp:alive`.
pub fn notify_alive(c: &Common, row: &Row) -> String {
    format!(
        "NOTIFY * HTTP/1.1\r\nHOST: {}\r\nCACHE-CONTROL: max-age={}\r\n\
LOCATION: {}\r\nNT: {}\r\nNTS: ssdp:alive\r\nSERVER: {}\r\nUSN: {}\r\n\
BOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
        c.host, c.max_age, c.location, row.0, c.server, row.1, c.boot_id, c.config_id
    )
}

/// A multicast `ssdp:byebye`.
pub fn notify_byebye(c: &Common, row: &Row) -> String {
    format!(
        "NOTIFY * HTTP/1.1\r\nHOST: {}\r\nNT: {}\r\nNTS: ssdp:byebye\r\nUSN: {}\r\n\
BOOTID.UPNP.ORG: {}\r\nCONFIGID.UPNP.ORG: {}\r\n\r\n",
        c.host, row.0, row.1, c.boot_id, c.config_id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(version: u8) -> Identity {
        Identity {
            uuid: "3d3cec3a-8cf0-11e0-98ee-001a6bd2d070".into(),
            version,
            pinholes: true,
        }
    }

    const UPNPC: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n\
ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nMAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n";

    #[test]
    fn parse_msearch() {
        let s = parse(UPNPC).unwrap();
        assert_eq!(s.st, "urn:schemas-upnp-org:device:InternetGatewayDevice:1");
        assert_eq!(s.mx, Some(2));
        let big_mx =
            b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\nMX: 120\r\n\r\n";
        assert_eq!(parse(big_mx).unwrap().mx, Some(5));
        assert!(parse(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMX: 1\r\n\r\n").is_none());
        assert!(
            parse(
                b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\nMX: x\r\n\r\n"
            )
            .is_none()
        );
        assert!(parse(b"NOTIFY * HTTP/1.1\r\nNT: x\r\nNTS: ssdp:alive\r\n\r\n").is_none());
        assert!(
            parse(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\n").is_none()
        );
        assert!(parse(&[0xff; 64]).is_none());
        let unicast =
            parse(b"M-SEARCH * HTTP/1.1\r\nST: ssdp:all\r\nMAN: \"ssdp:discover\"\r\n\r\n")
                .unwrap();
        assert_eq!(unicast.mx, None);
    }

    #[test]
    fn eleven_rows_for_igd2() {
        let r = rows(&id(2));
        assert_eq!(r.len(), 11);
        assert_eq!(
            r[0].1,
            "uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d070::upnp:rootdevice"
        );
        assert!(r.iter().any(|(nt, usn)| nt
            == "urn:schemas-upnp-org:service:WANIPConnection:2"
            && usn == "uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d072::urn:schemas-upnp-org:service:WANIPConnection:2"));
        assert_eq!(rows(&id(1)).len(), 10);
    }

    #[test]
    fn versioned_answers() {
        let v1 = answer(
            &id(2),
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1",
        );
        assert_eq!(v1.len(), 1);
        assert_eq!(
            v1[0].0,
            "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
        );
        assert!(
            v1[0]
                .1
                .ends_with("d070::urn:schemas-upnp-org:device:InternetGatewayDevice:1")
        );
        assert!(
            answer(
                &id(2),
                "urn:schemas-upnp-org:device:InternetGatewayDevice:3"
            )
            .is_empty()
        );
        assert!(answer(&id(1), "urn:schemas-upnp-org:service:WANIPConnection:2").is_empty());
        assert_eq!(
            answer(&id(1), "urn:schemas-upnp-org:service:WANIPConnection:1").len(),
            1
        );
        assert!(answer(&id(2), "urn:schemas-upnp-org:service:WANPPPConnection:1").is_empty());
        assert_eq!(
            answer(&id(2), "uuid:3d3cec3a-8cf0-11e0-98ee-001a6bd2d071").len(),
            1
        );
        assert!(answer(&id(2), "uuid:nope").is_empty());
        assert_eq!(answer(&id(2), "upnp:rootdevice").len(), 1);
        assert!(answer(&id(2), "urn:schemas-upnp-org:service:Layer3Forwarding:0").is_empty());
    }

    #[test]
    fn message_texts() {
        let c = Common {
            location: "http://192.168.77.1:5000/rootDesc.xml",
            host: Group::V4.host(),
            server: "Linux/6.6 UPnP/1.1 rupnpd/0.1.0",
            boot_id: 7,
            config_id: 9,
            max_age: 1800,
        };
        let row = (
            "upnp:rootdevice".to_string(),
            "uuid:x::upnp:rootdevice".to_string(),
        );
        let r = search_response(&c, &row, "Thu, 01 Jan 1970 00:00:00 GMT");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\n"));
        assert!(r.contains("\r\nEXT:\r\n") && r.contains("\r\nBOOTID.UPNP.ORG: 7\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let a = notify_alive(&c, &row);
        assert!(a.contains("NTS: ssdp:alive\r\n") && a.contains("NT: upnp:rootdevice\r\n"));
        let b = notify_byebye(&c, &row);
        assert!(b.contains("NTS: ssdp:byebye\r\n") && !b.contains("LOCATION"));
        assert!(a.starts_with("NOTIFY * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"));
        // over IPv6 the HOST names the group in brackets (UDA Annex A)
        let c6 = Common {
            location: "http://[fd77::1]:5000/rootDesc.xml",
            host: Group::SiteLocal.host(),
            ..c
        };
        let a = notify_alive(&c6, &row);
        assert!(
            a.starts_with("NOTIFY * HTTP/1.1\r\nHOST: [FF05::C]:1900\r\n"),
            "{a}"
        );
        assert!(a.contains("\r\nLOCATION: http://[fd77::1]:5000/rootDesc.xml\r\n"));
        assert!(notify_byebye(&c6, &row).contains("HOST: [FF05::C]:1900\r\n"));
        assert_eq!(Group::LinkLocal.addr().to_string(), "ff02::c");
    }
}
