//! The STUN client: what the carrier's NAT in front of the router does,
//! found with Binding requests (RFC 8489) and RFC 5780's behaviour tests.
//!
//! Owns: [`Client`], a sans-IO state machine. It never reads the clock
//! (`now` is an argument), never touches a socket and never resolves a
//! name: it says which datagram to send from which of its two local
//! sockets ([`Transmit`]), when it next needs a call ([`Client::poll_at`]),
//! and takes the datagrams the caller received ([`Client::handle_input`]).
//! Out come the public IPv4 address, a [`Filtering`] verdict with a reason
//! a router owner can read ([`Status`]), and [`Event`]s when either
//! changes. Must not import `sys`, `daemon` or tokio.
//!
//! # One run
//!
//! Transactions go one after another, never two at once, each with
//! RFC 8489 §6.2.1's retransmissions, and the whole run has a hard
//! deadline ([`Config::run_deadline`]):
//!
//! 1. Binding from the first socket to the server: the public address
//!    (XOR-MAPPED-ADDRESS) and the server's alternate address
//!    (OTHER-ADDRESS, RFC 5780 §7.4, or CHANGED-ADDRESS from an RFC 3489
//!    server). No answer: the run fails and is retried with backoff.
//! 2. Binding from the second socket: does the NAT keep port numbers and
//!    the public address across local ports (what miniupnpd checks with
//!    its four sockets)?
//! 3. RFC 5780 §4.4 test II from the first socket: CHANGE-REQUEST "IP and
//!    port". An answer from the alternate address means endpoint-
//!    independent filtering.
//! 4. Otherwise test III: "port" only. An answer from the server's address
//!    but the other port means address-dependent filtering, none means
//!    address-and-port-dependent filtering.
//!
//! Steps 2–4 run at start, after a change (WAN, server, operator), when
//! step 1 shows a mapping that differs from the last full run's (another
//! public address, NAT or not, ports kept or not), and once an hour
//! ([`Config::full_every`]); the runs in between are step 1 alone, one
//! datagram, which is all it takes to see the public address move.
//!
//! Tests II and III only count when the answer really comes from where
//! it was asked to come from; a server that ignores CHANGE-REQUEST (or
//! refuses it with 420) cannot test filtering, and then the verdict rests
//! on what step 1 and 2 showed: no NAT at all, a NAT that changes ports
//! (a port opened on the router is not that port on the public address),
//! or "unknown".

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::core::table::Millis;
use crate::proto::stun::{BINDING, ChangeRequest, Class, Message, TransactionId};

mod verdict;

pub use verdict::{FilterKind, Filtering};
use verdict::{Tested, verdict};

/// How many local UDP sockets the client sends from.
pub const SOCKETS: usize = 2;
const MINUTE: Millis = 60_000;

/// Timing and limits. [`Config::default`] holds the values the daemon uses
/// and why.
#[derive(Debug, Clone)]
pub struct Config {
    /// RFC 8489 §6.2.1: the first retransmission timeout (default 500 ms,
    /// the RFC's).
    pub rto: Millis,
    /// RFC 8489 §6.2.1 Rc: requests sent in step 1 before giving up
    /// (default 7, the RFC's).
    pub rc: u32,
    /// Rc of steps 2–4. No answer is their normal negative result, so they
    /// try 3 times (the RFC lets Rc be configured): three losses in a row
    /// are needed for a wrong verdict, and a filtered path costs 6
    /// packets instead of 14.
    pub rc_tests: u32,
    /// RFC 8489 §6.2.1 Rm: the last request waits Rm × RTO (default 16).
    pub rm: u32,
    /// Time between the end of one successful run and the next (default
    /// 10 min). See [`Config::default`].
    pub interval: Millis,
    /// How often the full run (steps 2–4) repeats when nothing changed
    /// (default 1 h): a carrier changes how its NAT filters with its
    /// equipment or policy, far more rarely than it moves addresses.
    pub full_every: Millis,
    /// First retry after a run without answer; doubles up to
    /// `backoff_max` (default 1 min to 32 min).
    pub backoff_min: Millis,
    pub backoff_max: Millis,
    /// A run ends by then whatever is still outstanding (default 90 s,
    /// more than the longest schedule: 39.5 + 3 × 9.5 s).
    pub run_deadline: Millis,
    /// Most datagrams in any 60 s (default 8); a send past it waits.
    pub max_per_minute: usize,
}

impl Default for Config {
    /// The interval: a CGNAT public address changes when the subscriber's
    /// session is re-established (which changes the WAN address too and
    /// starts a run at once) or when the carrier moves its NAT pool, which
    /// happens in hours or days, not minutes. Ten minutes bounds how long
    /// clients can be told a stale address after such a move, at one
    /// datagram a run, and the full run once an hour: 8 datagrams an hour
    /// on an open path, 13 on a filtered one.
    fn default() -> Config {
        Config {
            rto: 500,
            rc: 7,
            rc_tests: 3,
            rm: 16,
            interval: 10 * MINUTE,
            full_every: 60 * MINUTE,
            backoff_min: MINUTE,
            backoff_max: 32 * MINUTE,
            run_deadline: 90_000,
            max_per_minute: 8,
        }
    }
}

/// One of the client's local sockets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Socket {
    First,
    Second,
}

impl Socket {
    pub fn index(self) -> usize {
        match self {
            Socket::First => 0,
            Socket::Second => 1,
        }
    }
}

/// The router's side: its WAN address and the local ports of the two
/// sockets (bound on the WAN address or the wildcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wan {
    pub addr: Ipv4Addr,
    pub ports: [u16; SOCKETS],
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub socket: Socket,
    pub to: SocketAddrV4,
    pub bytes: Vec<u8>,
}

/// What the client knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The public IPv4 address the server saw. Kept when a later run gets
    /// no answer (the server being down does not move our address);
    /// cleared when the WAN address changes.
    pub public: Option<Ipv4Addr>,
    pub filtering: Filtering,
    /// One sentence for the log, `ubus status` and LuCI.
    pub reason: String,
    /// The mapped address differs from the WAN address and port.
    pub behind_nat: Option<bool>,
    /// When the last run ended, successful or not.
    pub checked_at: Option<Millis>,
    /// Runs in a row without an answer.
    pub failures: u32,
    /// Datagrams sent since start.
    pub sent: u64,
}

/// A change worth telling the rest of the daemon (and the log, once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Public {
        old: Option<Ipv4Addr>,
        new: Option<Ipv4Addr>,
    },
    Filtering {
        old: Filtering,
        new: Filtering,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Step 1: Binding from the first socket.
    Bind,
    /// Step 2: Binding from the second socket.
    BindSecond,
    /// RFC 5780 §4.4 test II.
    ChangeIpPort,
    /// RFC 5780 §4.4 test III.
    ChangePort,
}

impl Step {
    fn socket(self) -> Socket {
        match self {
            Step::BindSecond => Socket::Second,
            _ => Socket::First,
        }
    }

    fn change(self) -> Option<ChangeRequest> {
        match self {
            Step::ChangeIpPort => Some(ChangeRequest {
                ip: true,
                port: true,
            }),
            Step::ChangePort => Some(ChangeRequest {
                ip: false,
                port: true,
            }),
            _ => None,
        }
    }
}

/// One transaction with its retransmission state (RFC 8489 §6.2.1).
#[derive(Debug)]
struct Txn {
    step: Step,
    id: TransactionId,
    bytes: Vec<u8>,
    sent: u32,
    limit: u32,
    /// When to send again, or when to give up once `sent == limit`.
    next: Millis,
    /// The wait after the next send (doubles each time).
    wait: Millis,
}

#[derive(Debug)]
struct Run {
    deadline: Millis,
    server: SocketAddrV4,
    wan: Wan,
    txn: Option<Txn>,
    /// The next step and when it may start.
    next: Option<(Step, Millis)>,
    first: Option<SocketAddrV4>,
    second: Option<SocketAddrV4>,
    /// The server's alternate address, if it has one that differs in both
    /// address and port.
    alt: Option<SocketAddrV4>,
    tested: Option<Tested>,
    /// Steps 2–4 run (else step 1 alone, if it shows nothing new).
    full: bool,
}

/// What step 1 showed in the last full run: a later step 1 that shows
/// the same needs no full run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    public: Ipv4Addr,
    behind_nat: bool,
    port_kept: bool,
}

impl Shape {
    fn of(first: SocketAddrV4, wan: Wan) -> Shape {
        Shape {
            public: *first.ip(),
            behind_nat: first != SocketAddrV4::new(wan.addr, wan.ports[0]),
            port_kept: first.port() == wan.ports[0],
        }
    }
}

/// The STUN client. See the module documentation.
#[derive(Debug)]
pub struct Client {
    cfg: Config,
    server: Option<SocketAddrV4>,
    wan: Option<Wan>,
    status: Status,
    run: Option<Run>,
    next_run: Option<Millis>,
    /// The last full run: when, and what step 1 showed.
    last_full: Option<(Millis, Shape)>,
    backoff: Millis,
    /// Send times within the last minute, oldest first.
    recent: VecDeque<Millis>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

impl Client {
    pub fn new(cfg: Config) -> Client {
        let backoff = cfg.backoff_min;
        Client {
            cfg,
            server: None,
            wan: None,
            status: Status {
                public: None,
                filtering: Filtering::Unknown,
                reason: "STUN has not run yet".into(),
                behind_nat: None,
                checked_at: None,
                failures: 0,
                sent: 0,
            },
            run: None,
            next_run: None,
            last_full: None,
            backoff,
            recent: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Whether a run is in progress.
    pub fn running(&self) -> bool {
        self.run.is_some()
    }

    /// The server's address, as the daemon resolved `stun_host`. A new
    /// one starts a run at once.
    pub fn set_server(&mut self, now: Millis, server: Option<SocketAddrV4>) {
        if server == self.server {
            return;
        }
        self.server = server;
        self.restart(now);
    }

    /// The WAN address and the sockets' ports: at start, and whenever the
    /// WAN changes (a new lease, the link back). A change starts a run at
    /// once; a new WAN address forgets the public address, which was
    /// learnt through the old one.
    pub fn set_wan(&mut self, now: Millis, wan: Option<Wan>) {
        if wan == self.wan {
            return;
        }
        let moved = wan.map(|w| w.addr) != self.wan.map(|w| w.addr);
        self.wan = wan;
        if moved {
            self.set_public(None);
        }
        self.restart(now);
    }

    /// Starts a full run now (an operator's request), within the packet
    /// cap.
    pub fn check_now(&mut self, now: Millis) {
        self.last_full = None;
        if self.run.is_none() {
            self.next_run = Some(now);
        }
    }

    fn restart(&mut self, now: Millis) {
        self.run = None;
        self.last_full = None;
        self.backoff = self.cfg.backoff_min;
        let reason = match (self.server, self.wan) {
            (None, _) => "no STUN server address".to_string(),
            (_, None) => "no WAN address".to_string(),
            _ => "checking the path to the STUN server".to_string(),
        };
        self.next_run = (self.server.is_some() && self.wan.is_some()).then_some(now);
        self.set_filtering(Filtering::Unknown, reason);
    }

    /// When the client next needs [`Client::handle_timeout`]; `None`: only
    /// an input can change anything. May be in the past: call at once.
    pub fn poll_at(&self) -> Option<Millis> {
        let Some(run) = &self.run else {
            return self.next_run;
        };
        let step = run.next.map(|(_, at)| at);
        let txn = run.txn.as_ref().map(|t| t.next);
        [Some(run.deadline), step, txn].into_iter().flatten().min()
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next change, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Advances timers: starts runs and transactions, retransmits, gives
    /// up. `fresh` must be 12 unpredictable bytes (RFC 8489 §5: the
    /// transaction ID is random); it is used when a transaction starts.
    pub fn handle_timeout(&mut self, now: Millis, fresh: TransactionId) {
        if self.run.is_none() {
            match (self.next_run, self.server, self.wan) {
                (Some(at), Some(server), Some(wan)) if at <= now => self.start(now, server, wan),
                _ => return,
            }
        }
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if now >= run.deadline {
            return self.deadline(now);
        }
        if run.txn.is_none()
            && let Some((step, at)) = run.next
            && at <= now
        {
            run.next = None;
            let limit = if step == Step::Bind {
                self.cfg.rc
            } else {
                self.cfg.rc_tests
            };
            run.txn = Some(Txn {
                step,
                id: fresh,
                bytes: Message::binding_request(fresh, step.change()).emit(),
                sent: 0,
                limit: limit.max(1),
                next: now,
                wait: self.cfg.rto,
            });
        }
        self.retransmit(now);
    }

    fn start(&mut self, now: Millis, server: SocketAddrV4, wan: Wan) {
        self.next_run = None;
        let full = self
            .last_full
            .is_none_or(|(at, _)| now >= at.saturating_add(self.cfg.full_every));
        self.run = Some(Run {
            deadline: now.saturating_add(self.cfg.run_deadline),
            server,
            wan,
            txn: None,
            next: Some((Step::Bind, now)),
            first: None,
            second: None,
            alt: None,
            tested: None,
            full,
        });
    }

    /// Sends or gives up on the current transaction when its time came.
    fn retransmit(&mut self, now: Millis) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let Some(txn) = run.txn.as_mut().filter(|t| t.next <= now) else {
            return;
        };
        if txn.sent >= txn.limit {
            let step = txn.step;
            run.txn = None;
            return self.timed_out(now, step);
        }
        // The packet cap: at most `max_per_minute` in any 60 s.
        while self
            .recent
            .front()
            .is_some_and(|&t| t.saturating_add(MINUTE) <= now)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.cfg.max_per_minute.max(1) {
            txn.next = self
                .recent
                .front()
                .map_or(now, |&t| t.saturating_add(MINUTE));
            return;
        }
        self.recent.push_back(now);
        self.status.sent = self.status.sent.saturating_add(1);
        self.transmits.push_back(Transmit {
            socket: txn.step.socket(),
            to: run.server,
            bytes: txn.bytes.clone(),
        });
        txn.sent += 1;
        // RFC 8489 §6.2.1: RTO, 2×RTO, 4×RTO… between sends; after the
        // last, Rm × RTO before the transaction fails.
        txn.next = if txn.sent < txn.limit {
            let w = txn.wait;
            txn.wait = w.saturating_mul(2);
            now.saturating_add(w)
        } else {
            now.saturating_add(self.cfg.rto.saturating_mul(u64::from(self.cfg.rm)))
        };
    }

    /// A received datagram on `socket` from `from`. Anything that is not
    /// the answer to the current transaction is ignored.
    pub fn handle_input(&mut self, now: Millis, socket: Socket, from: SocketAddr, bytes: &[u8]) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        let Some(txn) = &run.txn else {
            return;
        };
        let (Ok(m), SocketAddr::V4(from)) = (Message::parse(bytes), from) else {
            return;
        };
        if m.transaction != txn.id || m.method != BINDING || txn.step.socket() != socket {
            return;
        }
        let (step, server) = (txn.step, run.server);
        let answer = match m.class {
            // RFC 8489 §6.3.3: unknown comprehension-required attributes
            // fail the transaction.
            Some(Class::Success) if m.unknown_required.is_empty() => match m.mapped_address() {
                Some(SocketAddr::V4(mapped)) => Ok(mapped),
                _ => Err("the STUN server sent no IPv4 mapped address".to_string()),
            },
            Some(Class::Success) => Err(format!(
                "the STUN server's answer has an attribute we must understand and do not ({:#06x})",
                m.unknown_required[0]
            )),
            Some(Class::Error) => Err(match &m.error {
                Some(e) => format!("the STUN server answered error {} {}", e.code, e.reason),
                None => "the STUN server answered an error without a code".to_string(),
            }),
            _ => return,
        };
        // Binding answers count only from the server itself; anything
        // else leaves the transaction waiting for the real one.
        if matches!(step, Step::Bind | Step::BindSecond) && from != server {
            return;
        }
        run.txn = None;
        let tested = match (step, answer) {
            (Step::Bind, Ok(mapped)) => {
                run.first = Some(mapped);
                run.alt = [m.other_address, m.changed_address]
                    .into_iter()
                    .flatten()
                    .find_map(|a| match a {
                        SocketAddr::V4(a) if a.ip() != server.ip() && a.port() != server.port() => {
                            Some(a)
                        }
                        _ => None,
                    });
                let unchanged = self
                    .last_full
                    .is_some_and(|(_, shape)| shape == Shape::of(mapped, run.wan));
                if !run.full && unchanged {
                    return self.finish(now);
                }
                run.full = true;
                run.next = Some((Step::BindSecond, now));
                return;
            }
            (Step::Bind, Err(why)) => return self.failed(now, why),
            (Step::BindSecond, answer) => {
                run.second = answer.ok();
                return self.after_binds(now);
            }
            // RFC 5780 §4.4: the answers to tests II and III count only
            // from where they were asked to come from.
            (Step::ChangeIpPort, Ok(_))
                if from.ip() != server.ip() && from.port() != server.port() =>
            {
                Tested::Filtering(Filtering::EndpointIndependent)
            }
            (Step::ChangePort, Ok(_))
                if from.ip() == server.ip() && from.port() != server.port() =>
            {
                Tested::Filtering(Filtering::Filtered(FilterKind::AddressDependent))
            }
            (_, Ok(_)) => {
                Tested::Cannot("it ignores CHANGE-REQUEST (it answered from its own address)")
            }
            (_, Err(_)) => Tested::Cannot("it refuses CHANGE-REQUEST (no RFC 5780 support)"),
        };
        run.tested = Some(tested);
        self.finish(now);
    }

    /// After step 2: the filtering tests if the server has an alternate
    /// address, else the verdict from what steps 1 and 2 showed.
    fn after_binds(&mut self, now: Millis) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if run.alt.is_some() {
            run.next = Some((Step::ChangeIpPort, now));
        } else {
            run.tested = Some(Tested::Cannot(
                "it has no second address (neither OTHER-ADDRESS nor CHANGED-ADDRESS)",
            ));
            self.finish(now);
        }
    }

    /// A transaction got no answer after all its retransmissions.
    fn timed_out(&mut self, now: Millis, step: Step) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        match step {
            Step::Bind => {
                let why = format!("the STUN server {} did not answer", run.server);
                self.failed(now, why);
            }
            Step::BindSecond => self.after_binds(now),
            Step::ChangeIpPort => run.next = Some((Step::ChangePort, now)),
            Step::ChangePort => {
                run.tested = Some(Tested::Filtering(Filtering::Filtered(
                    FilterKind::AddressAndPortDependent,
                )));
                self.finish(now);
            }
        }
    }

    /// The run's hard deadline passed with work outstanding.
    fn deadline(&mut self, now: Millis) {
        let Some(run) = self.run.as_mut() else {
            return;
        };
        if run.first.is_none() {
            let why = format!("the STUN server {} did not answer in time", run.server);
            return self.failed(now, why);
        }
        run.tested
            .get_or_insert(Tested::Cannot("its answers did not all come in time"));
        self.finish(now);
    }

    /// A run without a usable answer: verdict unknown, the public address
    /// kept, the next run after the backoff.
    fn failed(&mut self, now: Millis, why: String) {
        self.run = None;
        // the verdict is gone: the next answer gets a full run
        self.last_full = None;
        let wait = self.backoff;
        self.backoff = self.backoff.saturating_mul(2).min(self.cfg.backoff_max);
        self.next_run = Some(now.saturating_add(wait));
        self.status.failures = self.status.failures.saturating_add(1);
        self.status.checked_at = Some(now);
        let reason = format!(
            "Unknown whether the Internet can reach this router: {why}; next try in {} s.",
            wait / 1000
        );
        self.set_filtering(Filtering::Unknown, reason);
    }

    /// The end of a run that got at least the first answer: a full run's
    /// verdict, or step 1's public address.
    fn finish(&mut self, now: Millis) {
        let Some(run) = self.run.take() else {
            return;
        };
        self.next_run = Some(now.saturating_add(self.cfg.interval));
        self.backoff = self.cfg.backoff_min;
        self.status.failures = 0;
        self.status.checked_at = Some(now);
        let Some(first) = run.first else {
            return;
        };
        self.set_public(Some(*first.ip()));
        if !run.full {
            // step 1 alone, and it showed what the last full run did
            return;
        }
        let shape = Shape::of(first, run.wan);
        self.last_full = Some((now, shape));
        let behind_nat = shape.behind_nat;
        self.status.behind_nat = Some(behind_nat);
        let (filtering, mut reason) = verdict(&run, first, behind_nat);
        if let Some(s) = run.second.filter(|s| s.ip() != first.ip()) {
            reason.push_str(&format!(
                " The carrier's NAT showed another public address ({}) for a second port.",
                s.ip()
            ));
        }
        self.set_filtering(filtering, reason);
    }

    fn set_public(&mut self, new: Option<Ipv4Addr>) {
        let old = self.status.public;
        if old != new {
            self.status.public = new;
            self.events.push_back(Event::Public { old, new });
        }
    }

    fn set_filtering(&mut self, new: Filtering, reason: String) {
        let old = self.status.filtering;
        self.status.filtering = new;
        self.status.reason = reason.clone();
        if old != new {
            self.events.push_back(Event::Filtering { old, new, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::stun::{ErrorCode, attr, code};

    const P: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 2), 3478);
    const ALT: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 3), 3479);
    const PUBLIC: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
    const WAN: Wan = Wan {
        addr: Ipv4Addr::new(100, 64, 0, 2),
        ports: [40000, 40001],
    };
    const HOUR: Millis = 60 * MINUTE;

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Server {
        /// coturn: XOR-MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN.
        Rfc5780,
        /// stund: MAPPED-ADDRESS, CHANGED-ADDRESS, SOURCE-ADDRESS.
        Rfc3489,
        /// RFC 8489 only: 420 to CHANGE-REQUEST.
        Plain,
        /// Claims an OTHER-ADDRESS but answers everything from P.
        IgnoresChange,
        /// Claims an OTHER-ADDRESS but answers CHANGE-REQUEST with 420.
        RefusesChange,
        Silent,
    }

    /// A NAT and a STUN server in memory.
    struct Fake {
        server: Server,
        /// What the NAT lets in that does not come from P.
        filter: Filtering,
        /// Added to the local port by the NAT.
        shift: u16,
        /// The second socket gets this public address instead.
        second_public: Ipv4Addr,
        public: Ipv4Addr,
        no_nat: bool,
        /// Answers to drop before delivering again.
        lose: usize,
        /// Drop every answer to the second socket.
        mute_second: bool,
        /// When each datagram was sent.
        sent: Vec<Millis>,
    }

    impl Fake {
        fn new(server: Server, filter: Filtering) -> Fake {
            Fake {
                server,
                filter,
                shift: 0,
                second_public: PUBLIC,
                public: PUBLIC,
                no_nat: false,
                lose: 0,
                mute_second: false,
                sent: Vec::new(),
            }
        }

        fn answer(&mut self, t: &Transmit) -> Option<(SocketAddr, Vec<u8>)> {
            let req = Message::parse(&t.bytes).expect("our request parses");
            assert_eq!(
                (req.class, req.method, t.to),
                (Some(Class::Request), BINDING, P)
            );
            let local = WAN.ports[t.socket.index()];
            let mapped = if self.no_nat {
                SocketAddrV4::new(WAN.addr, local)
            } else {
                let ip = match t.socket {
                    Socket::First => self.public,
                    Socket::Second => self.second_public,
                };
                SocketAddrV4::new(ip, local + self.shift)
            };
            let change = req.change_request.unwrap_or_default();
            let mut m = Message {
                class: Some(Class::Success),
                method: BINDING,
                transaction: req.transaction,
                ..Message::default()
            };
            let refuse = |m: &mut Message| {
                m.class = Some(Class::Error);
                m.error = Some(ErrorCode {
                    code: code::UNKNOWN_ATTRIBUTE,
                    reason: "Unknown Attribute".into(),
                });
                m.unknown_attributes = Some(vec![attr::CHANGE_REQUEST]);
            };
            let mut from = P;
            match self.server {
                Server::Silent => return None,
                Server::Plain | Server::RefusesChange if req.change_request.is_some() => {
                    refuse(&mut m)
                }
                Server::Plain => m.xor_mapped = Some(mapped.into()),
                Server::Rfc5780 | Server::IgnoresChange | Server::RefusesChange => {
                    if self.server == Server::Rfc5780 {
                        from = SocketAddrV4::new(
                            if change.ip { *ALT.ip() } else { *P.ip() },
                            if change.port { ALT.port() } else { P.port() },
                        );
                    }
                    m.xor_mapped = Some(mapped.into());
                    m.mapped = Some(mapped.into());
                    m.other_address = Some(ALT.into());
                    m.response_origin = Some(from.into());
                    m.fingerprint = true;
                }
                Server::Rfc3489 => {
                    from = SocketAddrV4::new(
                        if change.ip { *ALT.ip() } else { *P.ip() },
                        if change.port { ALT.port() } else { P.port() },
                    );
                    m.mapped = Some(mapped.into());
                    m.changed_address = Some(ALT.into());
                    m.source_address = Some(from.into());
                }
            }
            let passes = from == P
                || self.no_nat
                || match self.filter {
                    Filtering::EndpointIndependent => true,
                    Filtering::Filtered(FilterKind::AddressDependent) => from.ip() == P.ip(),
                    _ => false,
                };
            if !passes || (self.mute_second && t.socket == Socket::Second) {
                return None;
            }
            if self.lose > 0 {
                self.lose -= 1;
                return None;
            }
            Some((from.into(), m.emit()))
        }
    }

    fn client() -> Client {
        let mut c = Client::new(Config::default());
        c.set_server(0, Some(P));
        c.set_wan(0, Some(WAN));
        c
    }

    /// Runs the client against `f` from `now` until it next needs a call
    /// after `until`; answers arrive at once. Returns the last `now`.
    fn drive(c: &mut Client, f: &mut Fake, mut now: Millis, until: Millis) -> Millis {
        let mut ids = 0u64;
        loop {
            while let Some(t) = c.poll_transmit() {
                f.sent.push(now);
                if let Some((from, b)) = f.answer(&t) {
                    c.handle_input(now, t.socket, from, &b);
                }
            }
            let Some(at) = c.poll_at() else {
                return now;
            };
            if at > until {
                return now;
            }
            now = now.max(at);
            ids += 1;
            let mut id = [0u8; 12];
            id[..8].copy_from_slice(&(ids ^ now << 20).to_be_bytes());
            c.handle_timeout(now, id);
        }
    }

    /// One run from a fresh client (runs end within 90 s, the next
    /// starts no sooner than 10 min later).
    fn one_run(f: &mut Fake) -> Client {
        let mut c = client();
        drive(&mut c, f, 0, 200_000);
        assert!(!c.running());
        c
    }

    fn events(c: &mut Client) -> Vec<Event> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn endpoint_independent_with_an_rfc5780_server() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        let mut c = one_run(&mut f);
        let s = c.status().clone();
        assert_eq!(s.public, Some(PUBLIC));
        assert_eq!(s.filtering, Filtering::EndpointIndependent);
        assert_eq!(s.behind_nat, Some(true));
        assert!(s.reason.contains("endpoint-independent"), "{}", s.reason);
        assert_eq!(s.filtering.as_str(), "endpoint-independent");
        // Bind, second socket's Bind, test II: three datagrams at once.
        assert_eq!(f.sent, vec![0, 0, 0]);
        assert_eq!(c.poll_at(), Some(10 * MINUTE));
        let ev = events(&mut c);
        assert!(ev.contains(&Event::Public {
            old: None,
            new: Some(PUBLIC)
        }));
        assert!(matches!(
            ev.last(),
            Some(Event::Filtering {
                old: Filtering::Unknown,
                new: Filtering::EndpointIndependent,
                ..
            })
        ));
    }

    #[test]
    fn address_dependent_filtering() {
        let mut f = Fake::new(
            Server::Rfc5780,
            Filtering::Filtered(FilterKind::AddressDependent),
        );
        let c = one_run(&mut f);
        assert_eq!(
            c.status().filtering,
            Filtering::Filtered(FilterKind::AddressDependent)
        );
        assert!(c.status().reason.contains("cannot be reached"));
        // test II: 3 tries over 0.5 + 1 s, then 8 s; test III answered.
        assert_eq!(f.sent, vec![0, 0, 0, 500, 1500, 9500]);
    }

    #[test]
    fn address_and_port_dependent_filtering() {
        let mut f = Fake::new(
            Server::Rfc5780,
            Filtering::Filtered(FilterKind::AddressAndPortDependent),
        );
        let c = one_run(&mut f);
        assert_eq!(
            c.status().filtering,
            Filtering::Filtered(FilterKind::AddressAndPortDependent)
        );
        assert_eq!(f.sent, vec![0, 0, 0, 500, 1500, 9500, 10000, 11000]);
        assert_eq!(c.status().checked_at, Some(19_000));
        assert_eq!(c.status().filtering.as_str(), "address-and-port-dependent");
        assert_eq!(c.poll_at(), Some(19_000 + 10 * MINUTE));
    }

    #[test]
    fn rfc3489_server_tests_filtering_too() {
        let mut f = Fake::new(Server::Rfc3489, Filtering::EndpointIndependent);
        let c = one_run(&mut f);
        assert_eq!(c.status().filtering, Filtering::EndpointIndependent);
        assert_eq!(c.status().public, Some(PUBLIC));
        let mut f = Fake::new(
            Server::Rfc3489,
            Filtering::Filtered(FilterKind::AddressAndPortDependent),
        );
        let c = one_run(&mut f);
        assert_eq!(
            c.status().filtering,
            Filtering::Filtered(FilterKind::AddressAndPortDependent)
        );
    }

    #[test]
    fn plain_server_behind_a_port_keeping_nat_is_unknown() {
        let mut f = Fake::new(Server::Plain, Filtering::EndpointIndependent);
        let c = one_run(&mut f);
        let s = c.status();
        assert_eq!((s.public, s.filtering), (Some(PUBLIC), Filtering::Unknown));
        assert!(s.reason.contains("no second address"), "{}", s.reason);
        assert_eq!(f.sent.len(), 2);
        // a finished run, not a failure: the normal interval follows
        assert_eq!((s.failures, c.poll_at()), (0, Some(10 * MINUTE)));
    }

    #[test]
    fn a_nat_that_changes_ports_is_reported_whatever_the_server() {
        for server in [Server::Plain, Server::Rfc5780] {
            let mut f = Fake::new(server, Filtering::EndpointIndependent);
            f.shift = 1000;
            let c = one_run(&mut f);
            assert_eq!(
                c.status().filtering,
                Filtering::Filtered(FilterKind::PortTranslated),
                "{server:?}"
            );
            assert!(
                c.status()
                    .reason
                    .contains("router port 40000 appeared as public port 41000")
            );
        }
    }

    #[test]
    fn no_nat_in_front() {
        for (server, sent) in [(Server::Plain, 2), (Server::Rfc5780, 3)] {
            let mut f = Fake::new(server, Filtering::Unknown);
            f.no_nat = true;
            let c = one_run(&mut f);
            let s = c.status();
            assert_eq!(s.public, Some(WAN.addr));
            assert_eq!(s.behind_nat, Some(false));
            assert_eq!(s.filtering, Filtering::EndpointIndependent);
            assert!(s.reason.starts_with("No NAT"), "{}", s.reason);
            assert_eq!(f.sent.len(), sent);
        }
    }

    #[test]
    fn servers_that_cannot_test_filtering() {
        for (server, words) in [
            (Server::IgnoresChange, "ignores CHANGE-REQUEST"),
            (Server::RefusesChange, "refuses CHANGE-REQUEST"),
        ] {
            let mut f = Fake::new(server, Filtering::EndpointIndependent);
            let c = one_run(&mut f);
            assert_eq!(c.status().filtering, Filtering::Unknown, "{server:?}");
            assert!(c.status().reason.contains(words), "{}", c.status().reason);
            assert_eq!(c.status().public, Some(PUBLIC));
        }
    }

    #[test]
    fn silent_server_retransmits_as_rfc8489_says_then_backs_off() {
        let mut f = Fake::new(Server::Silent, Filtering::Unknown);
        let mut c = client();
        drive(&mut c, &mut f, 0, 39_499);
        // RFC 8489 §6.2.1 with RTO 500 ms, Rc 7: 0, 500, 1500, …, 31500.
        assert_eq!(f.sent, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert!(c.running());
        // Rm × RTO = 8 s after the last: the transaction fails at 39.5 s.
        assert_eq!(c.poll_at(), Some(39_500));
        drive(&mut c, &mut f, 39_499, 39_500);
        let s = c.status().clone();
        assert_eq!(
            (s.filtering, s.public, s.failures),
            (Filtering::Unknown, None, 1)
        );
        assert!(
            s.reason.contains("did not answer; next try in 60 s"),
            "{}",
            s.reason
        );
        // then 1, 2, 4 … 32 minutes between runs
        let mut starts = vec![];
        let mut now = 39_500;
        for _ in 0..8 {
            let at = c.poll_at().unwrap();
            starts.push(at - now);
            now = drive(&mut c, &mut f, now, at + 39_500);
        }
        let m = MINUTE;
        assert_eq!(
            starts,
            [m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m, 32 * m, 32 * m]
        );
        assert_eq!(c.status().failures, 9);
    }

    #[test]
    fn step_one_alone_between_full_runs() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        let mut c = client();
        let now = drive(&mut c, &mut f, 0, 1000);
        events(&mut c);
        let verdict = c.status().clone();
        // five runs of one datagram each, nothing changes
        let now = drive(&mut c, &mut f, now, 50 * MINUTE + 1000);
        let m = MINUTE;
        assert_eq!(f.sent[3..], [10 * m, 20 * m, 30 * m, 40 * m, 50 * m]);
        assert_eq!(events(&mut c), vec![]);
        assert_eq!(
            (&c.status().reason, c.status().filtering),
            (&verdict.reason, verdict.filtering)
        );
        assert_eq!(c.status().checked_at, Some(50 * m));
        // an hour after the last full run, the full run again
        drive(&mut c, &mut f, now, 60 * MINUTE + 1000);
        assert_eq!(f.sent[8..], [60 * m, 60 * m, 60 * m]);
        // an operator's check is a full one
        c.check_now(61 * m);
        drive(&mut c, &mut f, 61 * m, 61 * m);
        assert_eq!(f.sent.len(), 14);
    }

    #[test]
    fn a_changed_mapping_makes_step_one_a_full_run() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        let mut c = client();
        let now = drive(&mut c, &mut f, 0, 1000);
        f.shift = 7;
        drive(&mut c, &mut f, now, 10 * MINUTE);
        assert_eq!(f.sent.len(), 6);
        assert_eq!(
            c.status().filtering,
            Filtering::Filtered(FilterKind::PortTranslated)
        );
    }

    #[test]
    fn the_second_socket_may_stay_unanswered() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        f.mute_second = true;
        let c = one_run(&mut f);
        assert_eq!(c.status().filtering, Filtering::EndpointIndependent);
        // 3 tries for the second socket, 8 s after the last, then test II
        assert_eq!(f.sent, vec![0, 0, 500, 1500, 9500]);
    }

    #[test]
    fn a_lost_answer_is_retransmitted() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        f.lose = 1;
        let c = one_run(&mut f);
        assert_eq!(c.status().filtering, Filtering::EndpointIndependent);
        assert_eq!(f.sent, vec![0, 500, 500, 500]);
    }

    /// The closing note's number: datagrams in steady state, counted over
    /// ten hours after four to settle (the backoff reaches its cap).
    #[test]
    fn packets_per_hour() {
        let apdf = Filtering::Filtered(FilterKind::AddressAndPortDependent);
        let cases = [
            // a full run (3) and five of step 1 alone (1) an hour
            (Server::Rfc5780, Filtering::EndpointIndependent, 80..=80),
            // a full run (6, over 9.5 s) and five of step 1 alone an hour
            (
                Server::Rfc5780,
                Filtering::Filtered(FilterKind::AddressDependent),
                109..=110,
            ),
            // a full run (8, over 19 s) and five of step 1 alone an hour
            (Server::Rfc5780, apdf, 129..=130),
            // a full run of 2 (no tests possible) and five of 1 an hour
            (Server::Plain, Filtering::EndpointIndependent, 70..=70),
            // 7 a run, one every 32 min 39.5 s: 12.9 an hour
            (Server::Silent, Filtering::Unknown, 126..=133),
        ];
        for (server, filter, want) in cases {
            let mut f = Fake::new(server, filter);
            let mut c = client();
            let end = drive(&mut c, &mut f, 0, 4 * HOUR - 1);
            let before = f.sent.len();
            drive(&mut c, &mut f, end, 14 * HOUR - 1);
            let n = f.sent.len() - before;
            assert!(want.contains(&n), "{server:?} {filter:?}: {n} in 10 h");
        }
    }

    #[test]
    fn never_more_than_the_cap_in_a_minute() {
        let mut c = Client::new(Config {
            max_per_minute: 3,
            ..Config::default()
        });
        c.set_server(0, Some(P));
        c.set_wan(0, Some(WAN));
        let mut f = Fake::new(Server::Silent, Filtering::Unknown);
        // a WAN that flaps every 5 s restarts the run each time
        let mut now = 0;
        for i in 0..40u16 {
            now = drive(&mut c, &mut f, now, now + 5000);
            let ports = [40000 + i, 41000 + i];
            c.set_wan(now, Some(Wan { ports, ..WAN }));
        }
        drive(&mut c, &mut f, now, now + HOUR);
        for (i, &t) in f.sent.iter().enumerate() {
            let in_minute = f.sent[i..].iter().take_while(|&&u| u < t + MINUTE).count();
            assert!(
                in_minute <= 3,
                "{in_minute} datagrams in the minute from {t}"
            );
        }
        assert!(f.sent.len() > 10);
    }

    #[test]
    fn the_public_address_changes_between_runs() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        let mut c = client();
        let now = drive(&mut c, &mut f, 0, 1000);
        events(&mut c);
        f.public = Ipv4Addr::new(198, 51, 100, 99);
        drive(&mut c, &mut f, now, 10 * MINUTE + 1000);
        assert_eq!(
            events(&mut c),
            vec![Event::Public {
                old: Some(PUBLIC),
                new: Some(f.public)
            }]
        );
        assert_eq!(c.status().filtering, Filtering::EndpointIndependent);
    }

    #[test]
    fn a_wan_change_restarts_at_once_and_forgets_the_public_address() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        let mut c = client();
        drive(&mut c, &mut f, 0, 1000);
        events(&mut c);
        let sent = f.sent.len();
        let new = Wan {
            addr: Ipv4Addr::new(100, 64, 9, 9),
            ..WAN
        };
        c.set_wan(5000, Some(new));
        assert_eq!(c.status().public, None);
        assert_eq!(c.poll_at(), Some(5000));
        assert_eq!(
            events(&mut c)[0],
            Event::Public {
                old: Some(PUBLIC),
                new: None
            }
        );
        drive(&mut c, &mut f, 5000, 5000);
        assert_eq!(f.sent.len(), sent + 3);
        assert_eq!(c.status().public, Some(PUBLIC));
        // the same WAN again changes nothing; no WAN stops the runs
        c.set_wan(6000, Some(new));
        assert_eq!(c.poll_at(), Some(5000 + 10 * MINUTE));
        c.set_wan(7000, None);
        assert_eq!(c.poll_at(), None);
        assert_eq!(c.status().reason, "no WAN address");
        c.set_server(8000, None);
        c.set_wan(8000, Some(WAN));
        assert_eq!(
            (c.poll_at(), c.status().reason.as_str()),
            (None, "no STUN server address")
        );
    }

    /// An answer to a request: on which socket, from where, what.
    type Reply = fn(&Message) -> (Socket, SocketAddr, Vec<u8>);

    /// Runs until the first transaction is out, then offers `reply`.
    fn offer(reply: Reply) -> Client {
        let mut c = client();
        c.handle_timeout(0, [1; 12]);
        let t = c.poll_transmit().unwrap();
        let req = Message::parse(&t.bytes).unwrap();
        let (socket, from, b) = reply(&req);
        c.handle_input(10, socket, from, &b);
        c
    }

    fn success(req: &Message) -> Message {
        Message {
            class: Some(Class::Success),
            transaction: req.transaction,
            method: BINDING,
            xor_mapped: Some(SocketAddrV4::new(PUBLIC, 40000).into()),
            ..Message::default()
        }
    }

    #[test]
    fn answers_that_do_not_count() {
        let ignored: [(&str, Reply); 6] = [
            ("another transaction", |r| {
                let mut m = success(r);
                m.transaction[0] ^= 1;
                (Socket::First, P.into(), m.emit())
            }),
            ("another socket", |r| {
                (Socket::Second, P.into(), success(r).emit())
            }),
            ("another source", |r| {
                (Socket::First, ALT.into(), success(r).emit())
            }),
            ("a bad FINGERPRINT", |r| {
                let mut m = success(r);
                m.fingerprint = true;
                let mut b = m.emit();
                let n = b.len();
                b[n - 1] ^= 1;
                (Socket::First, P.into(), b)
            }),
            ("a request", |r| (Socket::First, P.into(), r.emit())),
            ("not STUN", |_| (Socket::First, P.into(), b"hello".to_vec())),
        ];
        for (what, reply) in ignored {
            let c = offer(reply);
            assert!(c.running(), "{what}");
            assert_eq!(c.status().public, None, "{what}");
            assert_eq!(c.poll_at(), Some(500), "{what}: still waiting");
        }
    }

    #[test]
    fn answers_that_fail_the_run() {
        let failing: [(&str, Reply); 4] = [
            ("error 401", |r| {
                let mut m = success(r);
                m.class = Some(Class::Error);
                m.error = Some(ErrorCode {
                    code: code::UNAUTHORIZED,
                    reason: "Unauthorized".into(),
                });
                (Socket::First, P.into(), m.emit())
            }),
            ("attributes we must understand", |r| {
                let mut m = success(r);
                m.unknown_required = vec![0x0024];
                (Socket::First, P.into(), m.emit())
            }),
            ("no IPv4 mapped address", |r| {
                let mut m = success(r);
                m.xor_mapped = Some("[2001:db8::1]:40000".parse().unwrap());
                (Socket::First, P.into(), m.emit())
            }),
            ("no mapped address", |r| {
                let mut m = success(r);
                m.xor_mapped = None;
                (Socket::First, P.into(), m.emit())
            }),
        ];
        for (what, reply) in failing {
            let c = offer(reply);
            assert!(!c.running(), "{what}");
            let s = c.status();
            assert_eq!((s.filtering, s.failures), (Filtering::Unknown, 1), "{what}");
            assert_eq!(c.poll_at(), Some(10 + MINUTE), "{what}");
        }
        let c = offer(failing[0].1);
        assert!(c.status().reason.contains("error 401 Unauthorized"));
    }

    #[test]
    fn a_run_that_outlives_its_deadline_keeps_what_it_learnt() {
        let mut c = Client::new(Config {
            rto: 20_000,
            ..Config::default()
        });
        c.set_server(0, Some(P));
        c.set_wan(0, Some(WAN));
        let mut f = Fake::new(
            Server::Rfc5780,
            Filtering::Filtered(FilterKind::AddressAndPortDependent),
        );
        drive(&mut c, &mut f, 0, 90_000);
        let s = c.status();
        assert!(!c.running());
        assert_eq!((s.public, s.filtering), (Some(PUBLIC), Filtering::Unknown));
        assert_eq!(s.checked_at, Some(90_000));
        assert!(
            s.reason.contains("did not all come in time"),
            "{}",
            s.reason
        );
    }

    #[test]
    fn a_second_public_address_is_mentioned() {
        let mut f = Fake::new(Server::Rfc5780, Filtering::EndpointIndependent);
        f.second_public = Ipv4Addr::new(198, 51, 100, 8);
        let c = one_run(&mut f);
        assert_eq!(c.status().public, Some(PUBLIC));
        assert!(
            c.status()
                .reason
                .contains("another public address (198.51.100.8)")
        );
    }
}
