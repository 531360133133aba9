//! The netlink element path against the real kernel: what `sys::nfnl`
//! writes (built by `proto::netlink::nftables`), `nft` reads back as the
//! same elements; a refused batch changes nothing; renewals keep counters
//! on both kernel paths (in place, and delete + add); a restore after a
//! firewall reload keeps elements and counters, a restore at start
//! removes leftovers.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};

use common::*;
use rupnpd::config::NftNames;
use rupnpd::core::firewall::Firewall;
use rupnpd::core::table::{Change, Key, Mapping, Origin};
use rupnpd::proto::Proto;
use rupnpd::proto::netlink::nftables::{Batch, Counter, Data, Elem};
use rupnpd::sys::nfnl;
use rupnpd::sys::nft::{Nft, Setup};

const LAN: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 2);

fn dnat_key(proto: u8, port: u16) -> Data {
    Data::new().proto(proto).service(port)
}

fn lan(port: u16) -> Data {
    Data::new().ipv4(LAN).service(port)
}

#[test]
fn nft_reads_back_what_netlink_wrote() {
    let bed = Bed::new("nlrd");
    bed.fw4_start();
    let r = bed.r.clone();
    bed.in_ns(&r, || {
        let mut s = nfnl::Socket::open().unwrap();
        let mut b = Batch::new("fw4");
        b.add(
            "upnp_dnat",
            &Elem {
                key: dnat_key(6, 18080),
                data: Some(lan(8080)),
                timeout_ms: Some(600_000),
                counter: Some(Counter {
                    packets: 7,
                    bytes: 700,
                }),
                ..Elem::default()
            },
        );
        let rh = |a: [u8; 4]| Data::new().ipv4(Ipv4Addr::from(a)).proto(17).service(19000);
        b.add(
            "upnp_dnat_rh",
            &Elem {
                key: rh([192, 0, 3, 0]),
                key_end: Some(rh([192, 0, 3, 255])),
                data: Some(lan(9000)),
                timeout_ms: Some(600_000),
                ..Elem::default()
            },
        );
        b.add(
            "upnp_fwd",
            &Elem {
                key: Data::new().ipv4(LAN).proto(6).service(8080),
                ..Elem::default()
            },
        );
        b.add(
            "upnp_snat",
            &Elem {
                key: Data::new()
                    .ipv4(LAN)
                    .proto(6)
                    .service(8080)
                    .ipv4(Ipv4Addr::new(192, 0, 3, 2))
                    .service(5000),
                data: Some(Data::new().ipv4(Ipv4Addr::new(192, 0, 3, 1)).service(18080)),
                ..Elem::default()
            },
        );
        let peer: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let host: Ipv6Addr = "fd77::2".parse().unwrap();
        b.add(
            "upnp_pin6_hp",
            &Elem {
                key: Data::new()
                    .ipv6(peer)
                    .service(5000)
                    .ipv6(host)
                    .proto(17)
                    .service(8080),
                timeout_ms: Some(60_000),
                ..Elem::default()
            },
        );
        s.commit(b).unwrap();
    });
    let dnat = bed.nft("list map inet fw4 upnp_dnat");
    assert!(
        dnat.contains("tcp . 18080 counter packets 7 bytes 700 timeout 10m expires"),
        "{dnat}"
    );
    assert!(dnat.contains(": 192.168.77.2 . 8080"), "{dnat}");
    let rh = bed.nft("list map inet fw4 upnp_dnat_rh");
    assert!(rh.contains("192.0.3.0/24 . udp . 19000 "), "{rh}");
    assert!(rh.contains(": 192.168.77.2 . 9000"), "{rh}");
    let fwd = bed.nft("list set inet fw4 upnp_fwd");
    assert!(
        fwd.contains("192.168.77.2 . tcp . 8080 counter packets 0 bytes 0"),
        "{fwd}"
    );
    let snat = bed.nft("list map inet fw4 upnp_snat");
    assert!(
        snat.contains("192.168.77.2 . tcp . 8080 . 192.0.3.2 . 5000 counter"),
        "{snat}"
    );
    assert!(snat.contains(": 192.0.3.1 . 18080"), "{snat}");
    let pin = bed.nft("list set inet fw4 upnp_pin6_hp");
    assert!(
        pin.contains(
            "2001:db8::1 . 5000 . fd77::2 . udp . 8080 counter packets 0 bytes 0 timeout 1m"
        ),
        "{pin}"
    );

    // and netlink reads them back: a dump and a get by key
    bed.in_ns(&r, || {
        let mut s = nfnl::Socket::open().unwrap();
        let mut seen = Vec::new();
        s.elements("fw4", "upnp_dnat", &mut |e| {
            seen.push((
                e.key.to_vec(),
                e.data.map(<[u8]>::to_vec),
                e.timeout_ms,
                e.counter,
            ))
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(
                dnat_key(6, 18080).as_bytes().to_vec(),
                Some(lan(8080).as_bytes().to_vec()),
                Some(600_000),
                Some(Counter {
                    packets: 7,
                    bytes: 700
                })
            )]
        );
        let got = s
            .element("fw4", "upnp_dnat", &dnat_key(6, 18080), None)
            .unwrap()
            .unwrap();
        assert_eq!(got.counter.map(|c| c.bytes), Some(700));
        assert!(got.expiration_ms.unwrap() <= 600_000);
        assert_eq!(
            s.element("fw4", "upnp_dnat", &dnat_key(17, 1), None)
                .unwrap(),
            None
        );
        let mut n = 0;
        s.elements("fw4", "upnp_dnat_rh", &mut |e| {
            assert_eq!(e.key_end.map(|k| k[3]), Some(255));
            n += 1;
        })
        .unwrap();
        assert_eq!(n, 1);
        assert!(s.table_exists("fw4").unwrap());
        assert!(!s.table_exists("nope").unwrap());
        assert!(s.chain_exists("fw4", "forward").unwrap());
        assert!(!s.chain_exists("fw4", "nope").unwrap());
        let err = s.elements("fw4", "nope", &mut |_| {}).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ENOENT), "{err}");
    });
}

#[test]
fn a_refused_batch_changes_nothing_and_says_why() {
    let bed = Bed::new("nlrf");
    bed.fw4_start();
    let r = bed.r.clone();
    bed.in_ns(&r, || {
        let mut s = nfnl::Socket::open().unwrap();
        let a = Elem {
            key: dnat_key(6, 1000),
            data: Some(lan(1000)),
            ..Elem::default()
        };
        let missing = Elem {
            key: dnat_key(6, 2000),
            ..Elem::default()
        };
        let mut b = Batch::new("fw4");
        b.add("upnp_dnat", &a);
        b.delete("upnp_dnat", &missing);
        let err = s.commit(b).unwrap_err().to_string();
        assert!(err.starts_with("delete element from upnp_dnat"), "{err}");
        assert!(err.contains("os error 2"), "{err}");
        assert_eq!(
            s.element("fw4", "upnp_dnat", &a.key, None).unwrap(),
            None,
            "the add of the refused batch was discarded"
        );

        // an add of the same key with other data clashes
        let mut b = Batch::new("fw4");
        b.add("upnp_dnat", &a);
        s.commit(b).unwrap();
        let mut b = Batch::new("fw4");
        b.add(
            "upnp_dnat",
            &Elem {
                data: Some(lan(1001)),
                ..a
            },
        );
        let err = s.commit(b).unwrap_err().to_string();
        assert!(err.starts_with("add element to upnp_dnat"), "{err}");
        assert!(err.contains("os error 17"), "{err}");
        // the identical element again is no error
        let mut b = Batch::new("fw4");
        b.add("upnp_dnat", &a);
        s.commit(b).unwrap();
        // a wrong key length is refused, not half-applied
        let mut b = Batch::new("fw4");
        b.flush("upnp_dnat");
        b.add(
            "upnp_dnat",
            &Elem {
                key: Data::new().service(1),
                ..a
            },
        );
        assert!(s.commit(b).is_err());
        assert!(
            s.element("fw4", "upnp_dnat", &a.key, None)
                .unwrap()
                .is_some(),
            "the flush of the refused batch was discarded"
        );
    });
}

fn mapping(eport: u16, iport: u16, expires: Option<u64>) -> Mapping {
    Mapping {
        key: Key::new(Proto::Tcp, eport),
        iaddr: LAN,
        iport,
        remote: None,
        desc: "t".into(),
        origin: Origin::UpnpV2,
        client: LAN,
        expires,
        nonce: None,
        peer_port: None,
    }
}

fn setup() -> Setup {
    Setup {
        wan_dev: Some(WAN_DEV.into()),
        lan_devs: vec![LAN_DEV.into()],
        ext_addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
        hairpin: false,
        log_packets: false,
        log_connections: false,
        ..Setup::default()
    }
}

/// Runs `f` on the backend inside the router namespace (a structure
/// transaction must run there; the netlink socket stays bound to it).
fn with(bed: &Bed, nft: Nft, f: impl FnOnce(&mut Nft) + Send + 'static) -> Nft {
    let r = bed.r.clone();
    bed.in_ns(&r, move || {
        let mut nft = nft;
        f(&mut nft);
        nft
    })
}

fn open(bed: &Bed) -> Nft {
    let r = bed.r.clone();
    bed.in_ns(&r, || Nft::open(NftNames::default(), setup()).unwrap())
}

fn packets(bed: &Bed, nft: Nft, key: Key) -> (Nft, u64) {
    let r = bed.r.clone();
    bed.in_ns(&r, move || {
        let mut nft = nft;
        let c = nft.counters().get(&key).copied().unwrap_or_default();
        (nft, c.packets)
    })
}

/// The element's timeout as the kernel holds it.
fn kernel_timeout(bed: &Bed, eport: u16) -> Option<u64> {
    let r = bed.r.clone();
    bed.in_ns(&r, move || {
        let mut s = nfnl::Socket::open().unwrap();
        s.element("fw4", "upnp_dnat", &dnat_key(6, eport), None)
            .unwrap()
            .and_then(|f| f.timeout_ms)
    })
}

#[test]
fn renewals_keep_counters_in_place_and_by_replacement() {
    let bed = Bed::new("nlrn");
    bed.fw4_start();
    let mut nft = open(&bed);
    nft = with(&bed, nft, |n| n.restore(&[], &[], 0).unwrap());
    for (eport, in_place) in [(18080u16, true), (18081, false)] {
        let iport = eport - 10000;
        let m = mapping(eport, iport, Some(600_000));
        nft = with(&bed, nft, move |n| {
            // Linux ≥ 6.12 renews in place; older kernels must replace.
            if in_place && n.renews_in_place() != Some(true) {
                return;
            }
            n.force_renewals_in_place(in_place);
            let add = Change {
                key: m.key,
                old: None,
                new: Some(m),
            };
            n.apply(&[add], &[], 0).unwrap();
        });
        if kernel_timeout(&bed, eport).is_none() {
            eprintln!("this kernel cannot renew in place; skipped");
            continue;
        }
        assert!(bed.tcp_through(eport, iport));
        let (n, before) = packets(&bed, nft, Key::new(Proto::Tcp, eport));
        nft = n;
        assert!(before > 0);
        let old = mapping(eport, iport, Some(600_000));
        let new = mapping(eport, iport, Some(1_200_000));
        nft = with(&bed, nft, move |n| {
            let renew = Change {
                key: old.key,
                old: Some(old),
                new: Some(new),
            };
            n.apply(&[renew], &[], 0).unwrap();
        });
        let (n, after) = packets(&bed, nft, Key::new(Proto::Tcp, eport));
        nft = n;
        assert_eq!(after, before, "in place: {in_place}");
        assert_eq!(kernel_timeout(&bed, eport), Some(1_210_000));
        assert!(bed.tcp_through(eport, iport));
    }
}

#[test]
fn a_reload_keeps_elements_and_a_start_removes_leftovers() {
    let bed = Bed::new("nlrl");
    bed.fw4_start();
    let mut nft = open(&bed);
    let m = mapping(18080, 8080, Some(600_000));
    let m2 = m.clone();
    nft = with(&bed, nft, move |n| {
        n.restore(&[&m2], &[], 0).unwrap();
        assert!(n.intact());
    });
    assert!(bed.tcp_through(18080, 8080));
    let (n, before) = packets(&bed, nft, m.key);
    nft = n;
    assert!(before > 0);
    // fw4 reload: rules gone, elements kept
    bed.fw4_reload();
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080"]);
    let m2 = m.clone();
    nft = with(&bed, nft, move |n| {
        assert!(!n.intact());
        n.restore(&[&m2], &[], 0).unwrap();
        assert!(n.intact());
    });
    let (n, after) = packets(&bed, nft, m.key);
    assert_eq!(after, before, "counters survive the reload");
    assert!(bed.tcp_through(18080, 8080));
    drop(n);

    // a new instance installs exactly its own table
    must_ok(bed.exec(
        &bed.r,
        &[
            "nft",
            "add element inet fw4 upnp_dnat { tcp . 4444 : 192.168.77.2 . 4444 }",
        ],
    ));
    let nft = open(&bed);
    let m2 = m.clone();
    let nft = with(&bed, nft, move |n| n.restore(&[&m2], &[], 0).unwrap());
    assert_eq!(bed.dnat_elements(), vec!["tcp . 18080"]);
    // a clean stop removes rules and elements
    with(&bed, nft, |n| n.teardown());
    assert!(bed.dnat_elements().is_empty());
    assert!(
        !bed.nft("list chain inet fw4 upnp_prerouting")
            .contains("dnat")
    );
}

fn must_ok(o: std::process::Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
