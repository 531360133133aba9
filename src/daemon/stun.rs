//! The STUN client on the loop: its sockets follow the WAN address, its
//! timers and datagrams are carried to `core::stun::Client`, the server's
//! name is resolved off the loop, and what it finds goes to
//! `core::wan::Wan`, the one place that decides the external address and
//! whether new mappings are refused.
//!
//! Owns: [`Stun`], the client with its sockets and the state of the
//! name's resolution, and the log lines of what STUN finds (each change
//! once). Decides nothing about what an answer means.

use std::net::{Ipv4Addr, SocketAddrV4};

use tokio::sync::mpsc;

use crate::core::stun::{self as cstun, Client, Event, Filtering, Socket};
use crate::core::table::Millis;
use crate::core::wan::{Rules, Stunned, WanChange};
use crate::proto::blob::Value;
use crate::sys::facts::random_bytes;
use crate::sys::stun::{Input, Sockets, resolve};

use super::Daemon;

/// The first wait after a failed resolution, doubling up to the last.
const RESOLVE_RETRY: (Millis, Millis) = (60_000, 32 * 60_000);

/// The STUN client and what it needs from the outside.
pub(super) struct Stun {
    client: Client,
    socks: Option<Sockets>,
    tx: mpsc::Sender<Input>,
    /// `stun_host` and `stun_port` while STUN is in use.
    target: Option<(String, u16)>,
    /// The address the name resolved to.
    server: Option<SocketAddrV4>,
    resolving: bool,
    /// When to resolve the name (again).
    resolve_at: Option<Millis>,
    resolve_wait: Millis,
    /// Failed runs already answered by a new resolution.
    failures_seen: u32,
    /// What was logged last, so each change is logged once: the public
    /// address, and the verdict with the end of the run that found it.
    logged_public: Option<Ipv4Addr>,
    logged_verdict: Option<Filtering>,
    last_checked: Option<Millis>,
}

impl Stun {
    pub fn new(tx: mpsc::Sender<Input>) -> Stun {
        Stun {
            client: Client::new(cstun::Config::default()),
            socks: None,
            tx,
            target: None,
            server: None,
            resolving: false,
            resolve_at: None,
            resolve_wait: RESOLVE_RETRY.0,
            failures_seen: 0,
            logged_public: None,
            logged_verdict: None,
            last_checked: None,
        }
    }

    /// A check is under way or due now, or the server's name is being
    /// resolved for the first time: what STUN will say is not known yet.
    pub fn settling(&self, now: Millis) -> bool {
        let naming = self.server.is_none() && (self.resolving || self.resolve_at.is_some());
        self.target.is_some()
            && (naming || self.client.running() || self.client.poll_at().is_some_and(|t| t <= now))
    }

    /// When the loop must call [`Daemon::stun_timers`] next.
    pub fn next_deadline(&self) -> Option<Millis> {
        [self.client.poll_at(), self.resolve_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// The WAN address and ports answers arrive at (for the firewall's
    /// `upnp_stun` set).
    pub fn listening(&self) -> Vec<(Ipv4Addr, u16)> {
        self.socks
            .iter()
            .flat_map(|s| s.ports().map(|p| (s.addr(), p)))
            .collect()
    }

    /// `status`'s `stun` table.
    pub fn status_value(&self, now: Millis) -> Value {
        let st = self.client.status();
        let secs = |ms: Millis| u32::try_from(ms / 1000).unwrap_or(u32::MAX);
        let mut v = Value::table()
            .with(
                "server",
                self.target
                    .as_ref()
                    .map(|(h, p)| format!("{h}:{p}"))
                    .unwrap_or_default(),
            )
            .with(
                "server_address",
                self.server.map(|a| a.to_string()).unwrap_or_default(),
            )
            .with(
                "public_ip",
                st.public.map(|a| a.to_string()).unwrap_or_default(),
            )
            .with("reachability", st.filtering.as_str())
            .with("reason", st.reason.as_str())
            .with("failures", st.failures)
            .with("sent", st.sent);
        if let Some(b) = st.behind_nat {
            v = v.with("behind_nat", b);
        }
        if let Some(at) = st.checked_at {
            v = v.with("last_check", secs(now.saturating_sub(at)));
        }
        if let Some(at) = self.next_deadline() {
            v = v.with("next_check", secs(at.saturating_sub(now)));
        }
        v
    }
}

impl Daemon {
    /// The configuration's STUN and private-address rules, at start and
    /// after every reload. A new server name is resolved at once; a
    /// switched-off service sends nothing.
    pub(super) fn configure_stun(&mut self) -> WanChange {
        let now = self.now();
        let cfg = &self.cfg;
        let target = match (&cfg.stun_host, cfg.use_stun && cfg.enabled) {
            (Some(h), true) => Some((h.clone(), cfg.stun_port)),
            _ => None,
        };
        let rules = Rules {
            allow_private: cfg.ext_allow_private_ipv4,
            stun: target.as_ref().map(|_| cfg.stun_allow_filtered),
        };
        if target != self.stun.target {
            self.stun.target = target;
            self.stun.server = None;
            self.stun.client.set_server(now, None);
            self.stun.resolve_wait = RESOLVE_RETRY.0;
            self.stun.resolve_at = self.stun.target.as_ref().map(|_| now);
        }
        let change = self.wan.set_rules(rules);
        change.or(self.stun_follow_wan())
    }

    /// Binds the sockets on the WAN address (again) and tells the client;
    /// with STUN off or no WAN address, closes them.
    pub(super) fn stun_follow_wan(&mut self) -> WanChange {
        let now = self.now();
        let addr = self
            .wan
            .link_addr()
            .filter(|_| self.wan.connected() && self.stun.target.is_some());
        if self.stun.socks.as_ref().map(Sockets::addr) != addr {
            self.stun.socks = None;
            if let Some(a) = addr {
                match Sockets::open(a, &self.stun.tx) {
                    Ok(s) => self.stun.socks = Some(s),
                    Err(e) => log::warn!("STUN: cannot open its sockets on {a}: {e}"),
                }
            }
        }
        let wan = self.stun.socks.as_ref().map(|s| cstun::Wan {
            addr: s.addr(),
            ports: s.ports(),
        });
        self.stun.client.set_wan(now, wan);
        if wan.is_some() && self.stun.server.is_none() && !self.stun.resolving {
            // the name may resolve now that the WAN is up
            self.stun.resolve_at = Some(now);
        }
        self.stun_events()
    }

    /// A datagram from a STUN socket, or the answer of a resolution.
    pub(super) fn on_stun(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Datagram { socket, from, data } => {
                let socket = if socket == 0 {
                    Socket::First
                } else {
                    Socket::Second
                };
                self.stun.client.handle_input(now, socket, from, &data);
            }
            Input::Resolved { host, addr } => {
                self.stun.resolving = false;
                let Some(port) = self
                    .stun
                    .target
                    .as_ref()
                    .filter(|(h, _)| *h == host)
                    .map(|(_, p)| *p)
                else {
                    // an answer for a name no longer configured
                    return;
                };
                match addr {
                    Ok(a) => {
                        // the port configured now, should it have changed
                        let a = SocketAddrV4::new(*a.ip(), port);
                        if self.stun.server != Some(a) {
                            log::info!("STUN: server {host} is {a}");
                        }
                        self.stun.server = Some(a);
                        self.stun.resolve_wait = RESOLVE_RETRY.0;
                        self.stun.client.set_server(now, Some(a));
                    }
                    Err(why) => {
                        let wait = self.stun.resolve_wait;
                        log::warn!("STUN: {why}; trying again in {} s", wait / 1000);
                        self.stun.resolve_at = Some(now.saturating_add(wait));
                        self.stun.resolve_wait = wait.saturating_mul(2).min(RESOLVE_RETRY.1);
                    }
                }
            }
        }
        self.stun_flush();
    }

    /// The client's timers and a due resolution.
    pub(super) fn stun_timers(&mut self, now: Millis) {
        if self.stun.resolve_at.is_some_and(|t| t <= now) && !self.stun.resolving {
            self.stun.resolve_at = None;
            if let Some((host, port)) = self.stun.target.clone() {
                self.stun.resolving = true;
                resolve(host, port, self.stun.tx.clone());
            }
        }
        if self.stun.client.poll_at().is_some_and(|t| t <= now) {
            let r = random_bytes();
            let mut id = [0u8; 12];
            id.copy_from_slice(&r[..12]);
            self.stun.client.handle_timeout(now, id);
            self.stun_flush();
        }
    }

    /// SIGUSR1 (the hotplug script, an operator): a full check now.
    pub(super) fn stun_check_now(&mut self) {
        if self.stun.target.is_some() {
            let now = self.now();
            log::debug!("STUN: a check was asked for");
            self.stun.client.check_now(now);
            if self.stun.server.is_none() && !self.stun.resolving {
                self.stun.resolve_at = Some(now);
            }
        }
    }

    /// Sends what the client wants sent and applies what it found.
    fn stun_flush(&mut self) {
        while let Some(t) = self.stun.client.poll_transmit() {
            if let Some(s) = &self.stun.socks {
                s.send(t.socket.index(), t.to, &t.bytes);
            }
        }
        let failures = self.stun.client.status().failures;
        if failures == 0 {
            self.stun.failures_seen = 0;
        } else if failures > self.stun.failures_seen && !self.stun.resolving {
            // no answer: the name may point elsewhere by now
            self.stun.failures_seen = failures;
            self.stun.resolve_at = Some(self.now());
        }
        let change = self.stun_events();
        self.apply_wan_change(change, true, "stun");
    }

    /// Takes the client's events into the WAN view, logging each change
    /// once: a new public address, and a run's verdict when it differs
    /// from the last one logged (not the "checking" placeholder of a run
    /// that just started).
    fn stun_events(&mut self) -> WanChange {
        while let Some(ev) = self.stun.client.poll_event() {
            let Event::Public { new: Some(p), .. } = ev else {
                continue;
            };
            if self.stun.logged_public != Some(p) {
                match self.stun.logged_public {
                    Some(old) => log::info!("STUN: public address {p} (was {old})"),
                    None => log::info!("STUN: public address {p}"),
                }
                self.stun.logged_public = Some(p);
            }
        }
        let st = self.stun.client.status();
        if st.checked_at != self.stun.last_checked {
            self.stun.last_checked = st.checked_at;
            if self.stun.logged_verdict != Some(st.filtering) {
                match st.filtering {
                    Filtering::Filtered(_) => log::warn!("STUN: {}", st.reason),
                    _ => log::info!("STUN: {}", st.reason),
                }
                self.stun.logged_verdict = Some(st.filtering);
            }
        }
        self.wan.set_stun(Stunned {
            public: st.public,
            filtering: st.filtering,
        })
    }
}
