//! IPv6 pinholes (WANIPv6FirewallControl:1) through real IPv6 packets: no
//! translation, only an accepted element lets WAN traffic reach the LAN.

mod common;

use std::time::Duration;

use common::*;

const SVC: &str = "WANIPv6FirewallControl";

fn started(name: &str, extra: &str) -> Bed {
    let mut bed = Bed::new(name);
    bed.fw4_start();
    let dir = bed.config(&format!(
        "config upnpd 'config'\n\toption upnp_lease_file '{}'\n\toption upnp_lease_file6 '{}'\n{extra}\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n",
        bed.dir.join("leases").display(),
        bed.dir.join("leases6").display()
    ));
    let d = dir.to_str().unwrap().to_string();
    bed.start(&["--config-dir", &d]);
    bed
}

#[allow(clippy::too_many_arguments)]
fn add_pinhole(
    bed: &Bed,
    from: &str,
    remote: &str,
    rport: &str,
    client: &str,
    port: &str,
    proto: &str,
    lease: &str,
) -> (u16, String) {
    bed.soap6(
        from,
        SVC,
        "AddPinhole",
        &[
            ("RemoteHost", remote),
            ("RemotePort", rport),
            ("InternalClient", client),
            ("InternalPort", port),
            ("Protocol", proto),
            ("LeaseTime", lease),
        ],
    )
}

#[test]
fn a_pinhole_lets_ipv6_through_until_deleted() {
    let bed = started("pin", "");
    let d = bed.http_get("/rootDesc.xml").unwrap();
    assert!(
        d.contains("urn:schemas-upnp-org:service:WANIPv6FirewallControl:1"),
        "{d}"
    );
    let (_, st) = bed.soap6(CLIENT6, SVC, "GetFirewallStatus", &[]);
    assert_eq!(element(&st, "FirewallEnabled"), Some("1"), "{st}");
    assert_eq!(element(&st, "InboundPinholeAllowed"), Some("1"), "{st}");

    assert!(
        !bed.tcp6_through(PEER6, CLIENT6, 8080),
        "closed before any pinhole"
    );
    let (code, text) = add_pinhole(&bed, CLIENT6, "", "0", CLIENT6, "8080", "6", "3600");
    assert_eq!(code, 200, "{text}");
    let id = element(&text, "UniqueID").unwrap().to_string();
    // CheckPinholeWorking before any traffic: 709
    let (_, t) = bed.soap6(CLIENT6, SVC, "CheckPinholeWorking", &[("UniqueID", &id)]);
    assert_eq!(fault_code(&t), Some(709), "{t}");
    assert!(
        bed.tcp6_through(PEER6, CLIENT6, 8080),
        "open through the pinhole"
    );
    let (_, t) = bed.soap6(CLIENT6, SVC, "GetPinholePackets", &[("UniqueID", &id)]);
    let packets: u32 = element(&t, "PinholePackets").unwrap().parse().unwrap();
    assert!(packets > 0, "{t}");
    let (_, t) = bed.soap6(CLIENT6, SVC, "CheckPinholeWorking", &[("UniqueID", &id)]);
    assert_eq!(element(&t, "IsWorking"), Some("1"), "{t}");
    // the same pinhole again is extended, same UniqueID
    let (_, t) = add_pinhole(&bed, CLIENT6, "", "0", CLIENT6, "8080", "6", "7200");
    assert_eq!(element(&t, "UniqueID"), Some(id.as_str()), "{t}");
    let (code, _) = bed.soap6(
        CLIENT6,
        SVC,
        "UpdatePinhole",
        &[("UniqueID", &id), ("NewLeaseTime", "600")],
    );
    assert_eq!(code, 200);
    let six = std::fs::read_to_string(bed.dir.join("leases6")).unwrap();
    assert!(six.contains(&format!("TCP;fd77::2;8080;;0;{id};")), "{six}");
    let (code, _) = bed.soap6(CLIENT6, SVC, "DeletePinhole", &[("UniqueID", &id)]);
    assert_eq!(code, 200);
    assert!(
        !bed.tcp6_through(PEER6, CLIENT6, 8080),
        "closed after delete"
    );
    let (_, t) = bed.soap6(CLIENT6, SVC, "DeletePinhole", &[("UniqueID", &id)]);
    assert_eq!(fault_code(&t), Some(704), "{t}");
}

#[test]
fn remote_host_pinholes_admit_only_that_host() {
    let bed = started("pinrh", "");
    must_add(&bed, "2001:db8:3::99", "0", "8081");
    assert!(
        !bed.tcp6_through(PEER6, CLIENT6, 8081),
        "another remote host"
    );
    let w = bed.w.clone();
    assert!(
        bed.exec(
            &w,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "2001:db8:3::99/64",
                "dev",
                "w-eth0",
                "nodad"
            ]
        )
        .status
        .success()
    );
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        bed.tcp6_through("2001:db8:3::99", CLIENT6, 8081),
        "the remote host"
    );
}

fn must_add(bed: &Bed, remote: &str, rport: &str, port: &str) {
    let (code, text) = add_pinhole(bed, CLIENT6, remote, rport, CLIENT6, port, "6", "600");
    assert_eq!(code, 200, "{text}");
}

#[test]
fn policy_and_argument_errors() {
    let bed = started("pinerr", "");
    let e = |r: (u16, String)| fault_code(&r.1);
    // secure mode: another host's address, over IPv6
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6_2, "8080", "6", "60"
        )),
        Some(606)
    );
    // permission rules: port below 1024
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6, "22", "6", "60"
        )),
        Some(606)
    );
    // wildcards and protocols
    assert_eq!(
        e(add_pinhole(&bed, CLIENT6, "", "0", "", "8080", "6", "60")),
        Some(708)
    );
    assert_eq!(
        e(add_pinhole(&bed, CLIENT6, "", "0", CLIENT6, "0", "6", "60")),
        Some(706)
    );
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6, "8080", "65535", "60"
        )),
        Some(707)
    );
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6, "8080", "50", "60"
        )),
        Some(705)
    );
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6, "8080", "6", "0"
        )),
        Some(402)
    );
    assert_eq!(
        e(add_pinhole(
            &bed, CLIENT6, "", "0", CLIENT6, "8080", "6", "86401"
        )),
        Some(402)
    );
    assert_eq!(
        e(add_pinhole(
            &bed,
            CLIENT6,
            "not-an-ip",
            "0",
            CLIENT6,
            "8080",
            "6",
            "60"
        )),
        Some(402)
    );
    // not on the LAN
    assert_eq!(
        e(add_pinhole(
            &bed,
            CLIENT6,
            "",
            "0",
            "2001:db8:3::2",
            "8080",
            "6",
            "60"
        )),
        Some(606)
    );
    // GetOutboundPinholeTimeout reports conntrack's idle timeouts
    let (_, t) = bed.soap6(
        CLIENT6,
        SVC,
        "GetOutboundPinholeTimeout",
        &[
            ("RemoteHost", ""),
            ("RemotePort", "0"),
            ("InternalClient", CLIENT6),
            ("InternalPort", "8080"),
            ("Protocol", "17"),
        ],
    );
    assert!(
        element(&t, "OutboundPinholeTimeout").is_some_and(|v| v.parse::<u32>().is_ok()),
        "{t}"
    );
}

#[test]
fn an_ipv4_control_point_may_open_its_own_ipv6_address() {
    let bed = started("pin4", "");
    // the router learns the LAN host's link-layer address for both
    // families once the host has talked to it over each
    let (code, _) = bed.soap6(CLIENT6, SVC, "GetFirewallStatus", &[]);
    assert_eq!(code, 200);
    let (code, text) = bed.soap(
        CLIENT_IP,
        SVC,
        "AddPinhole",
        &[
            ("RemoteHost", ""),
            ("RemotePort", "0"),
            ("InternalClient", CLIENT6),
            ("InternalPort", "9090"),
            ("Protocol", "6"),
            ("LeaseTime", "600"),
        ],
    );
    assert_eq!(code, 200, "{text}");
    assert!(bed.tcp6_through(PEER6, CLIENT6, 9090));
}

#[test]
fn pinholes_can_be_switched_off() {
    let bed = started("pinoff", "\toption ipv6_pinholes '0'\n");
    let d = bed.http_get("/rootDesc.xml").unwrap();
    assert!(!d.contains("WANIPv6FirewallControl"), "{d}");
    let (code, _) = add_pinhole(&bed, CLIENT6, "", "0", CLIENT6, "8080", "6", "60");
    assert_eq!(code, 404);
}

#[test]
fn pinholes_survive_a_restart() {
    let mut bed = started("pinrs", "");
    must_add(&bed, "", "0", "8082");
    bed.stop();
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 8082));
    let dir = bed.dir.join("config");
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    assert!(bed.tcp6_through(PEER6, CLIENT6, 8082));
}

/// Pinholes read back from the lease file at start get the checks a new
/// request gets: the permission rules (which deny ports below 1024), and
/// none at all with `ipv6_pinholes '0'`.
#[test]
fn restored_pinholes_follow_the_policy() {
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let lines = format!(
        "6;{CLIENT6};22;;0;1;{expiry};IGD2 pinhole\n6;{CLIENT6};8080;;0;2;{expiry};IGD2 pinhole\n"
    );
    let mut bed = Bed::new("pinpol");
    bed.fw4_start();
    let leases6 = bed.dir.join("leases6");
    let leases = bed.dir.join("leases");
    let config = |extra: &str| {
        format!(
            "config upnpd 'config'\n\toption upnp_lease_file '{}'\n\toption upnp_lease_file6 '{}'\n{extra}\n\
config perm_rule\n\toption action allow\n\toption ext_ports 1024-65535\n\toption int_addr 0.0.0.0/0\n\toption int_ports 1024-65535\n",
            leases.display(),
            leases6.display()
        )
    };
    std::fs::write(&leases6, &lines).unwrap();
    let dir = bed.config(&config(""));
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    // the path from the WAN host is settled (neighbours resolved; fw4
    // forwards echo requests) before the first connection crosses it
    let o = bed.exec(&bed.w, &["ping", "-6", "-c", "1", "-W", "3", CLIENT6]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let set = bed.nft("list set inet fw4 upnp_pin6");
    assert!(set.contains("fd77::2 . tcp . 8080"), "{set}");
    assert!(!set.contains(". 22 "), "{set}");
    assert!(bed.tcp6_through(PEER6, CLIENT6, 8080));
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 22));
    bed.stop();

    std::fs::write(&leases6, &lines).unwrap();
    let dir = bed.config(&config("\toption ipv6_pinholes '0'\n"));
    bed.start(&["--config-dir", dir.to_str().unwrap()]);
    let set = bed.nft("list set inet fw4 upnp_pin6");
    assert!(!set.contains("fd77::2"), "{set}");
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 8080));
    assert!(!bed.tcp6_through(PEER6, CLIENT6, 22));
}
