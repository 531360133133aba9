//! Sans-IO state and policy: the mapping table, the rules that govern it,
//! and the protocol handlers built on it.
//!
//! Owns: [`Core`], the one place mappings are created, renewed and removed
//! by every front end (UPnP, NAT-PMP, PCP, ubus), and the [`Event`]s those
//! changes produce. Must not import `sys`, `daemon` or tokio, and never
//! reads a clock: `now` is always an argument.

pub mod firewall;
pub mod gena;
pub mod igd;
pub mod persist;
pub mod pinhole;
pub mod pmp;
pub mod policy;
pub mod ssdp;
pub mod stun;
pub mod table;

use std::net::Ipv4Addr;

use crate::proto::Proto;
use policy::{Environment, Policy, Refusal, Renewal, Want};
use table::{Key, Mapping, Millis, Origin, RemoteFilter, Table};

/// The most expiries handled in one loop turn.
pub const EXPIRE_BATCH: usize = 256;

/// What happened to a mapping, for syslog, ubus events and GENA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Add,
    Renew,
    Delete,
    Expire,
    Refuse,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Add => "add",
            EventKind::Renew => "renew",
            EventKind::Delete => "delete",
            EventKind::Expire => "expire",
            EventKind::Refuse => "refuse",
        }
    }
}

/// One change to the table (or one refusal), with the mapping concerned
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub mapping: Mapping,
    pub reason: String,
}

/// How long a mapping should live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// Until deleted (IGDv1 lease 0).
    Permanent,
    /// This many seconds from now (already clamped by the front end).
    Secs(u32),
}

/// A request for a mapping from any front end.
#[derive(Debug, Clone)]
pub struct MapRequest {
    pub want: Want,
    pub remote: Option<RemoteFilter>,
    pub desc: String,
    pub origin: Origin,
    pub lease: Lease,
    pub nonce: Option<[u8; 12]>,
    /// PCP PEER: the remote peer's port (the peer's address is `remote`).
    pub peer_port: Option<u16>,
}

/// What a granted request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub key: Key,
    /// True if an existing mapping of the same client was renewed/updated.
    pub renewed: bool,
    pub expires: Option<Millis>,
}

/// The table plus the policy that guards it and the events it produced.
#[derive(Debug, Default)]
pub struct Core {
    pub table: Table,
    pub policy: Policy,
    /// IPv6 pinholes and their policy.
    pub pinholes: pinhole::Pinholes,
    pub pin_policy: pinhole::PinPolicy,
    events: Vec<Event>,
    /// IGDv2 SystemUpdateID: changes whenever a mapping is added, removed
    /// or modified (not on a pure lease renewal).
    pub system_update_id: u32,
}

/// Longest description kept (miniupnpd keeps 64 bytes).
pub const MAX_DESC: usize = 128;

impl Core {
    pub fn new(policy: Policy) -> Core {
        Core {
            table: Table::new(),
            policy,
            pinholes: pinhole::Pinholes::new(),
            pin_policy: pinhole::PinPolicy::default(),
            events: Vec::new(),
            system_update_id: 1,
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Events buffered so far (for savepoints).
    pub fn event_mark(&self) -> usize {
        self.events.len()
    }

    /// Rolls the table and the events back to a savepoint.
    pub fn rollback(&mut self, table_sp: usize, event_mark: usize) {
        self.table.rollback(table_sp);
        self.events.truncate(event_mark);
    }

    /// Undoes every uncommitted change, mappings and pinholes.
    pub fn rollback_all(&mut self) {
        self.table.rollback(0);
        self.pinholes.rollback(0);
        self.events.clear();
    }

    /// Makes the turn's changes final.
    pub fn commit(&mut self) {
        self.table.commit();
        self.pinholes.commit();
    }

    /// Expires pinholes whose lease has ended; returns them.
    pub fn expire_pinholes(&mut self, now: Millis) -> Vec<pinhole::Pinhole> {
        let ids = self.pinholes.expired(now, EXPIRE_BATCH);
        ids.iter()
            .filter_map(|id| self.pinholes.remove(*id))
            .collect()
    }

    fn push(&mut self, kind: EventKind, mapping: Mapping, reason: impl Into<String>) {
        self.events.push(Event {
            kind,
            mapping,
            reason: reason.into(),
        });
    }

    /// Records a refusal (for logs and the ubus `refuse` event).
    pub fn refused(&mut self, req: &MapRequest, refusal: &Refusal, now: Millis) {
        let m = self.build(req, Key::new(req.want.proto, req.want.eport), now);
        self.push(EventKind::Refuse, m, refusal.reason());
    }

    fn build(&self, req: &MapRequest, key: Key, now: Millis) -> Mapping {
        Mapping {
            key,
            iaddr: req.want.iaddr,
            iport: req.want.iport,
            remote: req.remote,
            desc: crate::proto::sanitize_text(&req.desc, MAX_DESC),
            origin: req.origin,
            client: req.want.client,
            expires: match req.lease {
                Lease::Permanent => None,
                Lease::Secs(s) => Some(now.saturating_add(u64::from(s) * 1000)),
            },
            nonce: req.nonce,
            peer_port: req.peer_port,
        }
    }

    /// Creates or renews a mapping under the policy. A refusal is
    /// recorded as an event and returned.
    pub fn map(
        &mut self,
        req: &MapRequest,
        now: Millis,
        env: &dyn Environment,
    ) -> Result<Granted, Refusal> {
        let renewal = if req.origin.is_pmp() {
            Renewal::SameEndpoint
        } else {
            Renewal::SameHost
        };
        let chosen = self
            .policy
            .choose_with(&self.table, env, &req.want, renewal);
        let (key, renewed) = match chosen {
            Ok(k) => k,
            Err(r) => {
                self.refused(req, &r, now);
                return Err(r);
            }
        };
        let m = self.build(req, key, now);
        let expires = m.expires;
        match self.table.put(m.clone()) {
            Some(old) => {
                if !old.same_rule(&m) || old.desc != m.desc {
                    self.system_update_id = self.system_update_id.wrapping_add(1).max(1);
                }
                self.push(EventKind::Renew, m, "renewed by its client");
            }
            None => {
                self.system_update_id = self.system_update_id.wrapping_add(1).max(1);
                self.push(EventKind::Add, m, "requested");
            }
        }
        Ok(Granted {
            key,
            renewed,
            expires,
        })
    }

    /// Removes one mapping; `reason` goes to the logs.
    pub fn remove(&mut self, key: &Key, kind: EventKind, reason: &str) -> Option<Mapping> {
        let m = self.table.remove(key)?;
        self.system_update_id = self.system_update_id.wrapping_add(1).max(1);
        self.push(kind, m.clone(), reason);
        Some(m)
    }

    /// Whether `requester` may delete or change mapping `m`: in secure
    /// mode only the internal client or the client that created it.
    pub fn may_manage(&self, requester: Ipv4Addr, m: &Mapping) -> bool {
        !self.policy.secure_mode || m.iaddr == requester || m.client == requester
    }

    /// Expires up to [`EXPIRE_BATCH`] mappings whose lease has ended.
    /// Returns how many were removed.
    pub fn expire(&mut self, now: Millis) -> usize {
        let keys = self.table.expired(now, EXPIRE_BATCH);
        for k in &keys {
            self.remove(k, EventKind::Expire, "lease expired");
        }
        keys.len()
    }

    /// Removes every mapping (ubus `flush`, disabling the service).
    pub fn flush(&mut self, reason: &str) -> usize {
        let keys: Vec<Key> = self.table.iter().map(|m| m.key).collect();
        for k in &keys {
            self.remove(k, EventKind::Delete, reason);
        }
        keys.len()
    }

    /// Re-checks every mapping against a new policy (after a reload) and
    /// removes those it forbids, each with its reason. Returns how many.
    pub fn enforce(&mut self, env: &dyn Environment) -> usize {
        let mut doomed: Vec<(Key, String)> = Vec::new();
        let mut kept_per_client: std::collections::HashMap<Ipv4Addr, u32> = Default::default();
        let mut kept = 0u32;
        for m in self.table.iter() {
            let why = if self.policy.secure_mode && m.iaddr != m.client {
                Some(Refusal::SecureMode.reason())
            } else if !self.policy.permitted(m.key.eport, m.iaddr, m.iport) {
                Some(Refusal::NotAllowed.reason())
            } else if let Some(c) = self.policy.claimed_by(m.key.proto, m.key.eport) {
                Some(Refusal::OtherMechanism(c.source.clone()).reason())
            } else if env.wan_listener(m.key.proto, m.key.eport) {
                Some(format!(
                    "port held by a local service listening on {}/{}",
                    m.key.proto.as_lower(),
                    m.key.eport
                ))
            } else {
                let n = kept_per_client.entry(m.client).or_insert(0);
                if *n >= self.policy.max_per_client {
                    Some(Refusal::ClientQuota.reason())
                } else if kept >= self.policy.max_mappings {
                    Some(Refusal::TableFull.reason())
                } else {
                    *n += 1;
                    kept += 1;
                    None
                }
            };
            if let Some(why) = why {
                doomed.push((m.key, format!("no longer allowed after reload: {why}")));
            }
        }
        for (k, why) in &doomed {
            self.remove(k, EventKind::Delete, why);
        }
        doomed.len()
    }

    /// Restores a mapping read back from the lease file: re-validated
    /// against the current policy like a new request.
    pub fn restore(
        &mut self,
        m: Mapping,
        now: Millis,
        env: &dyn Environment,
    ) -> Result<(), Refusal> {
        if m.expires.is_some_and(|e| e <= now) {
            return Ok(());
        }
        let req = MapRequest {
            want: Want {
                client: m.client,
                proto: m.key.proto,
                eport: m.key.eport,
                iaddr: m.iaddr,
                iport: m.iport,
                search: false,
                companion: false,
            },
            remote: m.remote,
            desc: m.desc.clone(),
            origin: m.origin,
            lease: Lease::Permanent,
            nonce: m.nonce,
            peer_port: m.peer_port,
        };
        let (key, _) = match self.policy.choose(&self.table, env, &req.want) {
            Ok(k) => k,
            Err(r) => {
                self.refused(&req, &r, now);
                return Err(r);
            }
        };
        let mut restored = self.build(&req, key, now);
        restored.expires = m.expires;
        self.push(
            EventKind::Add,
            restored.clone(),
            "restored from the lease file",
        );
        self.table.put(restored);
        Ok(())
    }

    /// Number of mappings of `proto`.
    pub fn count_proto(&self, proto: Proto) -> usize {
        self.table.range(proto, 0, u16::MAX).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::firewall::{Firewall, Recording};
    use policy::NoListeners;

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 1, d)
    }

    fn core() -> Core {
        let cfg = Config {
            max_mappings_per_client: 10,
            ..Config::default()
        };
        Core::new(Policy::from_config(&cfg, vec![]))
    }

    fn req(client: u8, eport: u16, lease: Lease) -> MapRequest {
        MapRequest {
            want: Want {
                client: ip(client),
                proto: Proto::Tcp,
                eport,
                iaddr: ip(client),
                iport: eport,
                search: false,
                companion: false,
            },
            remote: None,
            desc: "game\r\nTCP:1:1.2.3.4:1:0:x".into(),
            origin: Origin::UpnpV2,
            lease,
            nonce: None,
            peer_port: None,
        }
    }

    #[test]
    fn add_renew_expire_with_events() {
        let mut c = core();
        let g = c.map(&req(2, 5000, Lease::Secs(60)), 0, &NoListeners);
        assert_eq!(
            g,
            Ok(Granted {
                key: Key::new(Proto::Tcp, 5000),
                renewed: false,
                expires: Some(60_000)
            })
        );
        assert_eq!(
            c.table
                .get(&Key::new(Proto::Tcp, 5000))
                .map(|m| m.desc.as_str()),
            Some("gameTCP:1:1.2.3.4:1:0:x")
        );
        let g = c
            .map(&req(2, 5000, Lease::Secs(120)), 30_000, &NoListeners)
            .unwrap();
        assert!(g.renewed);
        assert_eq!(c.table.next_deadline(), Some(150_000));
        assert_eq!(c.expire(149_999), 0);
        assert_eq!(c.expire(150_000), 1);
        let kinds: Vec<_> = c.take_events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Add, EventKind::Renew, EventKind::Expire]
        );
    }

    #[test]
    fn conflicts_are_refused_and_recorded() {
        let mut c = core();
        c.map(&req(2, 5000, Lease::Permanent), 0, &NoListeners)
            .unwrap();
        assert_eq!(
            c.map(&req(3, 5000, Lease::Permanent), 0, &NoListeners),
            Err(Refusal::Conflict)
        );
        let ev = c.take_events();
        assert_eq!(ev.last().map(|e| e.kind), Some(EventKind::Refuse));
    }

    #[test]
    fn firewall_sees_net_changes_and_rollback_restores() {
        let mut c = core();
        let mut fw = Recording::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &NoListeners)
            .unwrap();
        c.map(&req(2, 5001, Lease::Permanent), 0, &NoListeners)
            .unwrap();
        fw.apply(&c.table.take_changes(), &[], 0).unwrap();
        assert_eq!(fw.installed.len(), 2);
        assert_eq!(fw.transactions, 1);

        let sp = c.table.savepoint();
        let mark = c.event_mark();
        c.remove(&Key::new(Proto::Tcp, 5000), EventKind::Delete, "test");
        fw.fail_next = Some("boom".into());
        let changes = c.table.pending_changes();
        assert!(fw.apply(&changes, &[], 0).is_err());
        // the failed batch is undone in the table, as in the kernel
        c.rollback(sp, mark);
        assert_eq!(c.table.len(), 2);
        assert_eq!(fw.installed.len(), 2);
    }

    #[test]
    fn enforce_after_tighter_rules() {
        let mut c = core();
        c.map(&req(2, 5000, Lease::Permanent), 0, &NoListeners)
            .unwrap();
        c.map(&req(2, 6000, Lease::Permanent), 0, &NoListeners)
            .unwrap();
        c.policy.rules.insert(
            0,
            crate::config::PermRule {
                allow: false,
                ext_ports: (6000, 6000),
                int_addr: Ipv4Addr::UNSPECIFIED,
                int_prefix: 0,
                int_ports: (0, 65535),
                comment: String::new(),
            },
        );
        assert_eq!(c.enforce(&NoListeners), 1);
        assert!(c.table.get(&Key::new(Proto::Tcp, 6000)).is_none());
        let last = c.take_events().pop().unwrap();
        assert!(last.reason.contains("permission rules"), "{}", last.reason);
    }

    #[test]
    fn descriptions_are_sanitised_and_bounded() {
        assert_eq!(crate::proto::sanitize_text("a\nb\0c\u{7f}", 10), "abc");
        assert_eq!(crate::proto::sanitize_text("ééé", 5), "éé");
    }
}
