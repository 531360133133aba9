//! The STUN client (`core::stun`) against real STUN servers (Debian's
//! coturn and stund) through a real carrier NAT (nftables in its own
//! namespace): a small harness gives the sans-IO client two real UDP
//! sockets in the router's namespace and real time, and the tests check
//! the public address and the verdict it reaches.

mod common;

use std::io::Read;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use common::carrier::{
    CARRIER_PUBLIC_IP, CARRIER_PUBLIC2_IP, CGN_WAN_IP, Carrier, CarrierBed, Server,
};
use common::in_netns;
use rupnpd::core::stun::{Client, Config, Event, FilterKind, Filtering, SOCKETS, Socket, Wan};

/// The client with its two sockets and its clock.
struct Harness {
    client: Client,
    socks: [UdpSocket; SOCKETS],
    start: Instant,
    sent: usize,
}

impl Harness {
    fn new(cb: &CarrierBed, cfg: Config) -> Harness {
        let mut h = Harness {
            client: Client::new(cfg),
            socks: Self::sockets(cb),
            start: Instant::now(),
            sent: 0,
        };
        let now = h.now();
        h.client.set_server(now, Some(cb.stun_server()));
        let wan = h.wan();
        h.client.set_wan(now, Some(wan));
        h
    }

    /// Two UDP sockets on the router's WAN address, as the daemon binds.
    fn sockets(cb: &CarrierBed) -> [UdpSocket; SOCKETS] {
        let wan: Ipv4Addr = CGN_WAN_IP.parse().unwrap();
        let bind = move || UdpSocket::bind((wan, 0)).unwrap();
        let a = in_netns(&cb.bed.r, bind);
        let b = in_netns(&cb.bed.r, bind);
        [a, b]
    }

    fn wan(&self) -> Wan {
        let port = |s: &UdpSocket| s.local_addr().unwrap().port();
        Wan {
            addr: CGN_WAN_IP.parse().unwrap(),
            ports: [port(&self.socks[0]), port(&self.socks[1])],
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Drives the client until `done` holds, at most `max`: timers at
    /// their time, datagrams out as it asks, and in as they arrive
    /// (poll(2) on both sockets until the next timer).
    fn run_until(&mut self, max: Duration, done: impl Fn(&Client) -> bool) {
        let deadline = Instant::now() + max;
        while !done(&self.client) {
            assert!(
                Instant::now() < deadline,
                "not done within {max:?}: {:?}",
                self.client.status()
            );
            let now = self.now();
            if self.client.poll_at().is_some_and(|at| at <= now) {
                self.client.handle_timeout(now, random_id());
            }
            while let Some(t) = self.client.poll_transmit() {
                self.socks[t.socket.index()]
                    .send_to(&t.bytes, t.to)
                    .unwrap();
                self.sent += 1;
            }
            let wait = self
                .client
                .poll_at()
                .map_or(100, |at| at.saturating_sub(self.now()).min(100));
            let mut fds = self.socks.each_ref().map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
            // SAFETY: `fds` is a valid array of SOCKETS pollfds.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), SOCKETS as libc::nfds_t, wait as i32) };
            if n <= 0 {
                continue;
            }
            for (i, fd) in fds.iter().enumerate() {
                if fd.revents & libc::POLLIN == 0 {
                    continue;
                }
                let mut buf = [0u8; 1500];
                if let Ok((len, from)) = self.socks[i].recv_from(&mut buf) {
                    let socket = [Socket::First, Socket::Second][i];
                    let now = self.now();
                    self.client.handle_input(now, socket, from, &buf[..len]);
                }
            }
        }
    }

    /// Runs one check to its end.
    fn one_run(&mut self, max: Duration) {
        let before = self.client.status().checked_at;
        self.run_until(max, |c| !c.running() && c.status().checked_at != before);
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }
}

fn random_id() -> [u8; 12] {
    let mut id = [0u8; 12];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .unwrap();
    id
}

fn public() -> Option<Ipv4Addr> {
    Some(CARRIER_PUBLIC_IP.parse().unwrap())
}

/// Generous: the longest schedule of a run is 39.5 + 3 × 9.5 s and the
/// client's own deadline 90 s.
const RUN: Duration = Duration::from_secs(100);

/// A bed with `carrier` and `server`, and the client's first run in it.
fn first_run(name: &str, carrier: Carrier, server: Server, cfg: Config) -> (CarrierBed, Harness) {
    let cb = CarrierBed::new(name, carrier, server);
    let mut h = Harness::new(&cb, cfg);
    h.one_run(RUN);
    (cb, h)
}

/// The public address, the verdict and how many datagrams it took.
fn expect(h: &Harness, public: Option<Ipv4Addr>, filtering: Filtering, sent: usize) {
    let s = h.client.status();
    assert_eq!((s.public, s.filtering), (public, filtering), "{s:?}");
    assert_eq!(h.sent, sent, "{s:?}");
}

const APDF: Filtering = Filtering::Filtered(FilterKind::AddressAndPortDependent);

#[test]
fn endpoint_independent_carrier_with_coturn() {
    // the next run a second later instead of ten minutes
    let cfg = Config {
        interval: 1000,
        ..Config::default()
    };
    let (_cb, mut h) = first_run(
        "stei5780",
        Carrier::EndpointIndependent,
        Server::Coturn,
        cfg,
    );
    // Binding from each socket and test II, each answered at once.
    expect(&h, public(), Filtering::EndpointIndependent, 3);
    assert_eq!(h.client.status().behind_nat, Some(true));
    let ev = h.events();
    assert!(ev.contains(&Event::Public {
        old: None,
        new: public()
    }));
    // The next run is one Binding: the same mapping, the same verdict.
    h.one_run(RUN);
    expect(&h, public(), Filtering::EndpointIndependent, 4);
    assert_eq!(h.events(), vec![]);
}

#[test]
fn endpoint_independent_carrier_with_stund() {
    let (_cb, h) = first_run(
        "steistud",
        Carrier::EndpointIndependent,
        Server::Stund,
        Config::default(),
    );
    expect(&h, public(), Filtering::EndpointIndependent, 3);
}

#[test]
fn address_restricted_carrier_with_coturn() {
    let (_cb, h) = first_run(
        "stad5780",
        Carrier::AddressRestricted,
        Server::Coturn,
        Config::default(),
    );
    // Two Bindings, test II three times, test III answered.
    let adf = Filtering::Filtered(FilterKind::AddressDependent);
    expect(&h, public(), adf, 6);
}

#[test]
fn no_nat_with_coturn() {
    let (_cb, h) = first_run(
        "strouted",
        Carrier::Routed,
        Server::Coturn,
        Config::default(),
    );
    expect(
        &h,
        CGN_WAN_IP.parse().ok(),
        Filtering::EndpointIndependent,
        3,
    );
    let s = h.client.status();
    assert_eq!(s.behind_nat, Some(false));
    assert!(s.reason.starts_with("No NAT"), "{}", s.reason);
}

#[test]
fn symmetric_carrier_with_coturn() {
    let (_cb, h) = first_run(
        "stsy5780",
        Carrier::Symmetric,
        Server::Coturn,
        Config::default(),
    );
    // Two Bindings, then tests II and III three times each.
    expect(&h, public(), APDF, 8);
    let reason = &h.client.status().reason;
    assert!(reason.contains("cannot be reached"), "{reason}");
}

#[test]
fn symmetric_carrier_with_stund() {
    let (_cb, h) = first_run(
        "stsystud",
        Carrier::Symmetric,
        Server::Stund,
        Config::default(),
    );
    expect(&h, public(), APDF, 8);
}

#[test]
fn silent_server_is_unknown_and_backs_off() {
    let cb = CarrierBed::new("stsilent", Carrier::EndpointIndependent, Server::Silent);
    // A short RTO keeps the test short; the schedule itself (RTO 500 ms)
    // is checked in core::stun's unit tests.
    let cfg = Config {
        rto: 100,
        ..Config::default()
    };
    let mut h = Harness::new(&cb, cfg);
    h.one_run(RUN);
    let s = h.client.status().clone();
    assert_eq!(
        (s.public, s.filtering, s.failures),
        (None, Filtering::Unknown, 1)
    );
    assert!(s.reason.contains("did not answer"), "{}", s.reason);
    // Rc = 7 requests reached the server's segment, no more.
    assert_eq!(h.sent, 7);
    assert_eq!(cb.silent_drops(), 7);
    // the next try after the first backoff step
    assert_eq!(h.client.poll_at(), s.checked_at.map(|t| t + 60_000));
}

#[test]
fn the_carrier_moves_the_public_address() {
    let cb = CarrierBed::new("stmove", Carrier::EndpointIndependent, Server::Coturn);
    let mut h = Harness::new(&cb, Config::default());
    h.one_run(RUN);
    assert_eq!(h.client.status().public, public());
    h.events();
    // The carrier's NAT translates to another address of its pool. New
    // sockets (new ports, so no old conntrack entry applies) tell the
    // client, which checks at once.
    cb.carrier_nat(Carrier::EndpointIndependent, CARRIER_PUBLIC2_IP);
    h.socks = Harness::sockets(&cb);
    let (now, wan) = (h.now(), h.wan());
    h.client.set_wan(now, Some(wan));
    h.one_run(RUN);
    let new: Ipv4Addr = CARRIER_PUBLIC2_IP.parse().unwrap();
    assert_eq!(h.client.status().public, Some(new));
    assert!(h.events().contains(&Event::Public {
        old: public(),
        new: Some(new)
    }));
    assert_eq!(h.client.status().filtering, Filtering::EndpointIndependent);
}

/// The router's own firewall is the first NAT-like filter on the path:
/// with fw4's input chain (policy drop, only established traffic from the
/// WAN) the answers of tests II and III, which come from addresses the
/// sockets never sent to, die on the router itself and an open carrier
/// looks filtered. The daemon must let datagrams to its STUN sockets'
/// ports in, as miniupnpd does for its STUN ports; with that accept the
/// verdict is right again.
#[test]
fn the_router_firewall_must_let_the_answers_in() {
    let cb = CarrierBed::new("stfw4", Carrier::EndpointIndependent, Server::Coturn);
    cb.bed.fw4_start();
    // Two runs back to back: a cap above the 8 + 3 datagrams they send
    // keeps the second from waiting for the first one's minute to pass.
    let cfg = Config {
        max_per_minute: 16,
        ..Config::default()
    };
    let mut h = Harness::new(&cb, cfg);
    h.one_run(RUN);
    assert_eq!(
        h.client.status().filtering,
        Filtering::Filtered(FilterKind::AddressAndPortDependent)
    );
    let [a, b] = h.wan().ports;
    let rule = format!(
        "insert rule inet fw4 input iifname {} udp dport {{ {a}, {b} }} accept",
        cb.bed.wan_dev
    );
    let o = cb.bed.exec(&cb.bed.r, &["nft", &rule]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let now = h.now();
    h.client.check_now(now);
    h.one_run(RUN);
    let s = h.client.status();
    assert_eq!(s.filtering, Filtering::EndpointIndependent, "{s:?}");
    assert_eq!(s.public, public());
}
