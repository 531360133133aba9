use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::config::Config;
use crate::core::facts::{FixedFacts, LinkCounters};
use crate::core::lan::{Lan, Lans};
use crate::core::pinhole::PinPolicy;
use crate::core::policy::Policy;
use crate::core::table::Key;
use crate::core::wan::{Link, Wan};
use crate::proto::Proto;
use crate::proto::schema::WAN_IP_CONNECTION;

fn ip(d: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 77, d)
}

fn lans() -> Lans {
    Lans::new(vec![Lan {
        dev: "br-lan".into(),
        addr: ip(1),
        nets: vec![(Ipv4Addr::new(192, 168, 77, 0), 24)],
        nets6: vec![],
        http_port: 5000,
    }])
}

fn wan() -> Wan {
    let mut w = Wan::new(None);
    w.update(
        Link {
            dev: Some("wan".into()),
            addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
            up: true,
        },
        None,
    );
    w
}

fn facts() -> FixedFacts {
    FixedFacts {
        counters: Some(LinkCounters {
            tx_bytes: (1 << 32) + 5,
            rx_bytes: 7,
            tx_packets: 1,
            rx_packets: 2,
        }),
        speed_bps: 1000,
        uptime: Some(42),
        ..FixedFacts::default()
    }
}

fn core() -> Core {
    let cfg = Config::default();
    Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    )
}

fn call(
    core: &mut Core,
    client: u8,
    version: u8,
    action: &str,
    args: &[(&str, &str)],
) -> Result<Out, UpnpError> {
    let device = Device::new(
        &Config::default(),
        "00000000-0000-4000-8000-000000000000".into(),
        1,
        "test".into(),
    );
    let (lans, wan, facts) = (lans(), wan(), facts());
    let call = Call {
        client: ip(client),
        requester: IpAddr::V4(ip(client)),
        version,
        now: 1000,
        device: &device,
        lans: &lans,
        wan: &wan,
        facts: &facts,
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
    handle(core, &call, service, action, &a)
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
    let mut c = Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    );
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
    assert_eq!(c.table().len(), 2);
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
    assert_eq!(c.table().len(), 2);
    assert!(c.table().get(&Key::new(Proto::Tcp, 6000)).is_some());
    // a mapping for one remote host lists it
    let mut a = add_args("6001", "6001", "192.168.77.3", "0");
    a[0].1 = "198.51.100.7";
    call(&mut c, 3, 2, "AddPortMapping", &a).unwrap();
    let l = [
        ("NewStartPort", "6001"),
        ("NewEndPort", "6001"),
        ("NewProtocol", "TCP"),
        ("NewManage", "1"),
        ("NewNumberOfPorts", "0"),
    ];
    let out = call(&mut c, 3, 2, "GetListOfPortMappings", &l).unwrap();
    assert!(
        out[0].1.contains(
            "<p:PortMappingEntry><p:NewRemoteHost>198.51.100.7</p:NewRemoteHost>\
<p:NewExternalPort>6001</p:NewExternalPort><p:NewProtocol>TCP</p:NewProtocol>"
        ),
        "{}",
        out[0].1
    );
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
        "uuid:00000000-0000-4000-8000-000000000002:WANConnectionDevice:2,urn:upnp-org:serviceId:WANIPConn1"
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
            .args
            .iter()
            .filter(|a| a.dir == crate::proto::schema::Dir::Out)
            .map(|a| a.name)
            .collect();
        assert_eq!(names, want, "{action}");
    }
}

/// An internal client must be a host of a served LAN even with secure
/// mode off: never the router itself, nor the subnet's network or
/// broadcast address (606 in IGD:2; IGD:1 has no 606 and answers 718,
/// as for every policy refusal).
#[test]
fn internal_client_must_be_a_lan_host() {
    let cfg = Config {
        secure_mode: false,
        ..Config::default()
    };
    let mut c = Core::new(
        Policy::from_config(&cfg, vec![]),
        PinPolicy::from_config(&cfg),
    );
    for bad in ["192.168.77.1", "192.168.77.255", "192.168.77.0", "0.0.0.0"] {
        for (version, code) in [
            (2, UpnpError::ActionNotAuthorized),
            (1, UpnpError::ConflictInMappingEntry),
        ] {
            let r = call(
                &mut c,
                2,
                version,
                "AddPortMapping",
                &add_args("18080", "8080", bad, "0"),
            );
            assert_eq!(r, Err(code), "{bad} v{version}");
        }
    }
    assert!(c.table().is_empty());
    // another LAN host is fine without secure mode
    let r = call(
        &mut c,
        2,
        2,
        "AddPortMapping",
        &add_args("18080", "8080", "192.168.77.3", "0"),
    );
    assert_eq!(r, Ok(vec![]));
}

/// While the Internet cannot reach new mappings, AddPortMapping and
/// AddAnyPortMapping answer 501 ActionFailed under both IGD versions (as
/// miniupnpd's refusal of a private address); the client's own mapping
/// is still renewed.
#[test]
fn closed_mappings_are_action_failed() {
    let mut c = core();
    let own = add_args("18080", "8080", "192.168.77.2", "3600");
    assert_eq!(call(&mut c, 2, 2, "AddPortMapping", &own), Ok(vec![]));
    c.set_closed(Some("the external address 100.64.0.2 is private".into()));
    for v in [1, 2] {
        assert_eq!(
            call(
                &mut c,
                2,
                v,
                "AddPortMapping",
                &add_args("18081", "8081", "192.168.77.2", "3600")
            ),
            Err(UpnpError::ActionFailed)
        );
    }
    let any = add_args("18082", "8082", "192.168.77.2", "3600");
    assert_eq!(
        call(&mut c, 2, 2, "AddAnyPortMapping", &any),
        Err(UpnpError::ActionFailed)
    );
    assert_eq!(call(&mut c, 2, 2, "AddPortMapping", &own), Ok(vec![]));
    assert_eq!(c.table().len(), 1);
}
