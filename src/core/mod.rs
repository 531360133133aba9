//! Sans-IO state, policy and protocol handling: the mapping table and the
//! rules that govern it, and every front end's request handling (HTTP
//! with descriptions, SOAP and GENA; SSDP; NAT-PMP and PCP).
//!
//! Owns: [`Core`], the one place mappings and pinholes are created,
//! renewed and removed by every front end (UPnP, NAT-PMP, PCP, ubus), the
//! [`Event`]s those changes produce, and the loop turn's commit through
//! the [`firewall::Firewall`] trait. Must not import `sys`, `daemon` or
//! tokio, and never reads a clock: `now` is always an argument, and what
//! the kernel knows is asked of [`facts::Facts`].

pub mod device;
pub mod facts;
pub mod firewall;
pub mod gena;
pub mod hairpin;
pub mod igd;
pub mod journal;
pub mod lan;
pub mod loglimit;
pub mod natpmp_pcp;
pub mod persist;
pub mod pinhole;
pub mod policy;
pub mod rng;
pub mod ssdp;
pub mod stun;
pub mod table;
pub mod wan;
pub mod web;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::proto::Proto;
use facts::Facts;
use firewall::Firewall;
use pinhole::{PinChange, PinPolicy, PinRefusal, PinRequest, Pinhole, Pinholes};
use policy::{Policy, Refusal, Renewal, Want};
use table::{Change, Key, Mapping, Millis, Origin, RemoteFilter, Table};

/// The most expiries handled in one loop turn.
pub const EXPIRE_BATCH: usize = 256;

/// What happened to a mapping or a pinhole, for syslog, ubus events and
/// GENA.
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

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Mapping(Mapping),
    Pinhole(Pinhole),
}

/// One change to the table or the pinholes (or one refused mapping), with
/// what it concerned and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub subject: Subject,
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

/// A point in the turn's journal: whether a request changed anything is
/// whether the journal moved past it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Savepoint {
    table: usize,
    pinholes: usize,
}

/// How the turn's firewall transaction went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to install.
    Unchanged,
    Installed,
    /// The transaction failed (`error`), and reinstalling the whole new
    /// table repaired the kernel (a flushed or damaged ruleset is the
    /// usual cause).
    Repaired {
        error: String,
    },
    /// The transaction failed (`error`) and so did the repair (`repair`):
    /// the turn's changes are undone and the kernel reinstalled with the
    /// old table (`resync` says how that went). The reply of every request
    /// of the turn that changed the table is its failure reply.
    Refused {
        error: String,
        repair: String,
        resync: Result<(), String>,
    },
}

/// The end of one loop turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub outcome: Outcome,
    /// The mappings' net changes now in the kernel (empty when refused).
    pub changes: Vec<Change>,
    /// Whether any pinhole changed (and is now in the kernel).
    pub pins_changed: bool,
    /// What happened, oldest first (none when refused).
    pub events: Vec<Event>,
}

impl Turn {
    pub fn refused(&self) -> bool {
        matches!(self.outcome, Outcome::Refused { .. })
    }

    /// Something reached the kernel: the lease files must follow.
    pub fn installed(&self) -> bool {
        !self.refused() && (!self.changes.is_empty() || self.pins_changed)
    }
}

/// The mappings and pinholes, the policies that guard them, and the
/// events their changes produced. Every change goes through its methods.
#[derive(Debug, Default)]
pub struct Core {
    table: Table,
    policy: Policy,
    pinholes: Pinholes,
    pin_policy: PinPolicy,
    events: Vec<Event>,
    /// IGDv2 SystemUpdateID: changes whenever a mapping is added, removed
    /// or modified (not on a pure lease renewal).
    system_update_id: u32,
    /// Internal hosts found absent from the neighbour tables, since when
    /// ([`Core::sweep_absent`]); only hosts holding a mapping or pinhole.
    absent_since: HashMap<IpAddr, Millis>,
    /// The firewall cannot take new mappings (fw4 is stopped): the leases
    /// held are kept, renewed and removed as usual and go back into the
    /// kernel when it returns; new ones are refused with the protocols'
    /// "try again later" answers.
    firewall_down: bool,
    /// Why new mappings are refused, while they are (`core::wan::Closed`).
    closed: Option<String>,
}

/// Longest description kept (miniupnpd keeps 64 bytes).
pub const MAX_DESC: usize = 128;

impl Core {
    pub fn new(policy: Policy, pin_policy: PinPolicy) -> Core {
        Core {
            table: Table::new(),
            policy,
            pinholes: Pinholes::new(),
            pin_policy,
            events: Vec::new(),
            system_update_id: 1,
            absent_since: HashMap::new(),
            firewall_down: false,
            closed: None,
        }
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn pinholes(&self) -> &Pinholes {
        &self.pinholes
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn pin_policy(&self) -> &PinPolicy {
        &self.pin_policy
    }

    pub fn system_update_id(&self) -> u32 {
        self.system_update_id
    }

    /// New rules (a reload, a changed firewall configuration). Existing
    /// mappings are kept until [`Core::enforce`].
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// New pinhole rules; existing pinholes are kept until
    /// [`Core::enforce_pinholes`].
    pub fn set_pin_policy(&mut self, pin_policy: PinPolicy) {
        self.pin_policy = pin_policy;
    }

    /// Whether the firewall can take new mappings and pinholes.
    pub fn set_firewall_down(&mut self, down: bool) {
        self.firewall_down = down;
    }

    pub fn firewall_down(&self) -> bool {
        self.firewall_down
    }

    /// Refuses new mappings from now on, for `why` (`None`: allows them
    /// again). Existing mappings stay, and their clients may renew them.
    pub fn set_closed(&mut self, why: Option<String>) {
        self.closed = why;
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            table: self.table.savepoint(),
            pinholes: self.pinholes.savepoint(),
        }
    }

    /// Whether anything changed since `sp`.
    pub fn changed_since(&self, sp: Savepoint) -> bool {
        self.savepoint() != sp
    }

    /// Something changed this turn that the firewall has not seen.
    pub fn is_dirty(&self) -> bool {
        self.table.is_dirty() || self.pinholes.savepoint() > 0
    }

    fn push(&mut self, kind: EventKind, subject: Subject, reason: impl Into<String>) {
        self.events.push(Event {
            kind,
            subject,
            reason: reason.into(),
        });
    }

    fn bump_update_id(&mut self) {
        self.system_update_id = self.system_update_id.wrapping_add(1).max(1);
    }

    /// Records a refusal (for logs and the ubus `refuse` event).
    pub fn refused(&mut self, req: &MapRequest, refusal: &Refusal, now: Millis) {
        let m = self.build(req, Key::new(req.want.proto, req.want.eport), now);
        self.push(EventKind::Refuse, Subject::Mapping(m), refusal.reason());
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

    fn renewal(origin: Origin) -> Renewal {
        if origin.is_natpmp_or_pcp() {
            Renewal::SameEndpoint
        } else {
            Renewal::SameHost
        }
    }

    /// The key a request would get, without changing anything (NAT-PMP
    /// names the external port in the description before mapping).
    pub fn choose(&self, req: &MapRequest, facts: &dyn Facts) -> Result<Key, Refusal> {
        self.choose_open(req, facts).map(|(k, _)| k)
    }

    /// The policy's choice, and whether it renews the requester's own
    /// mapping; a new mapping is refused while mappings are closed.
    fn choose_open(&self, req: &MapRequest, facts: &dyn Facts) -> Result<(Key, bool), Refusal> {
        let (key, renewed) =
            self.policy
                .choose_with(&self.table, facts, &req.want, Self::renewal(req.origin))?;
        // A new mapping would exist only in the table; one held is kept and
        // renewed either way.
        if self.table.get(&key).is_none() {
            if self.firewall_down {
                return Err(Refusal::FirewallDown);
            }
            if let Some(why) = &self.closed {
                return Err(Refusal::Unreachable(why.clone()));
            }
        }
        Ok((key, renewed))
    }

    /// Creates or renews a mapping under the policy. A refusal is
    /// recorded as an event and returned.
    pub fn map(
        &mut self,
        req: &MapRequest,
        now: Millis,
        facts: &dyn Facts,
    ) -> Result<Granted, Refusal> {
        let (key, renewed) = match self.choose_open(req, facts) {
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
                    self.bump_update_id();
                }
                self.push(
                    EventKind::Renew,
                    Subject::Mapping(m),
                    "renewed by its client",
                );
            }
            None => {
                self.bump_update_id();
                self.push(EventKind::Add, Subject::Mapping(m), "requested");
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
        self.bump_update_id();
        self.push(kind, Subject::Mapping(m.clone()), reason);
        Some(m)
    }

    /// Whether `requester` may delete or change mapping `m`: in secure
    /// mode only the internal client or the client that created it.
    pub fn may_manage(&self, requester: Ipv4Addr, m: &Mapping) -> bool {
        !self.policy.secure_mode || m.iaddr == requester || m.client == requester
    }

    /// Expires up to [`EXPIRE_BATCH`] mappings and as many pinholes whose
    /// lease has ended. Returns how many were removed.
    pub fn expire(&mut self, now: Millis) -> usize {
        let keys = self.table.expired(now, EXPIRE_BATCH);
        for k in &keys {
            self.remove(k, EventKind::Expire, "lease expired");
        }
        let ids = self.pinholes.expired(now, EXPIRE_BATCH);
        for id in &ids {
            self.remove_pinhole(*id, EventKind::Expire, "lease expired");
        }
        keys.len() + ids.len()
    }

    /// Removes the mappings and pinholes of every internal host that has
    /// been absent from the router's neighbour tables for at least
    /// `timeout` ms, as seen by the calls so far (the daemon calls this on
    /// a slow timer: one read of the tables per call, none on a request).
    /// A host that left, or a forged source nobody answers ARP for, thus
    /// stops holding places, even with "permanent" IGDv1 leases restored
    /// from the lease file. Nothing is decided while the tables cannot be
    /// read. Returns how many mappings and pinholes were removed.
    pub fn sweep_absent(&mut self, facts: &dyn Facts, now: Millis, timeout: Millis) -> usize {
        let mut hosts: Vec<IpAddr> = self
            .table
            .iter()
            .map(|m| IpAddr::V4(m.iaddr))
            .chain(self.pinholes.iter().map(|p| IpAddr::V6(p.iaddr)))
            .collect();
        hosts.sort_unstable();
        hosts.dedup();
        let mut absent = HashMap::new();
        let mut gone = Vec::new();
        for h in hosts {
            match facts.neighbour_present(h) {
                None => return 0,
                Some(true) => {}
                Some(false) => {
                    let since = self.absent_since.get(&h).copied().unwrap_or(now);
                    absent.insert(h, since);
                    if now.saturating_sub(since) >= timeout {
                        gone.push((h, now.saturating_sub(since) / 1000));
                    }
                }
            }
        }
        // hosts back in the tables, or holding nothing, are forgotten
        self.absent_since = absent;
        let mut removed = 0;
        for (h, secs) in gone {
            let why = format!("host absent from the neighbour tables for {secs} s");
            let keys: Vec<Key> = self
                .table
                .iter()
                .filter(|m| IpAddr::V4(m.iaddr) == h)
                .map(|m| m.key)
                .collect();
            for k in &keys {
                self.remove(k, EventKind::Delete, &why);
            }
            let ids: Vec<u16> = self
                .pinholes
                .iter()
                .filter(|p| IpAddr::V6(p.iaddr) == h)
                .map(|p| p.id)
                .collect();
            for id in &ids {
                self.remove_pinhole(*id, EventKind::Delete, &why);
            }
            removed += keys.len() + ids.len();
            self.absent_since.remove(&h);
        }
        removed
    }

    /// Removes every mapping (ubus `flush`, disabling the service).
    pub fn flush(&mut self, reason: &str) -> usize {
        let keys: Vec<Key> = self.table.iter().map(|m| m.key).collect();
        for k in &keys {
            self.remove(k, EventKind::Delete, reason);
        }
        keys.len()
    }

    /// Re-checks every mapping against the current policy (after a reload
    /// or a firewall change) and removes those it forbids, each with its
    /// reason. Returns how many.
    pub fn enforce(&mut self, facts: &dyn Facts) -> usize {
        let mut doomed: Vec<(Key, String)> = Vec::new();
        let mut kept_per_client: std::collections::HashMap<Ipv4Addr, u32> = Default::default();
        let mut kept = 0u32;
        for m in self.table.iter() {
            let why = match self.policy.recheck(facts, m) {
                Err(r) => Some(r),
                Ok(()) => {
                    let n = kept_per_client.entry(m.client).or_insert(0);
                    if *n >= self.policy.max_per_client {
                        Some(Refusal::ClientQuota)
                    } else if kept >= self.policy.max_mappings {
                        Some(Refusal::TableFull)
                    } else {
                        *n += 1;
                        kept += 1;
                        None
                    }
                }
            };
            if let Some(why) = why {
                doomed.push((
                    m.key,
                    format!("no longer allowed after reload: {}", why.reason()),
                ));
            }
        }
        for (k, why) in &doomed {
            self.remove(k, EventKind::Delete, why);
        }
        doomed.len()
    }

    /// Restores a mapping read back from the lease file: re-validated
    /// against the current policy like a new request.
    pub fn restore(&mut self, m: Mapping, now: Millis, facts: &dyn Facts) -> Result<(), Refusal> {
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
        let (key, _) = match self.policy.choose(&self.table, facts, &req.want) {
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
            Subject::Mapping(restored.clone()),
            "restored from the lease file",
        );
        self.table.put(restored);
        Ok(())
    }

    /// The earliest lease end of a mapping or a pinhole, for the loop's
    /// timer.
    pub fn next_deadline(&self) -> Option<Millis> {
        match (self.table.next_deadline(), self.pinholes.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Number of mappings of `proto`.
    pub fn count_proto(&self, proto: Proto) -> usize {
        self.table.range(proto, 0, u16::MAX).count()
    }

    // ------------------------------------------------------------ pinholes

    /// AddPinhole, PCP MAP or PEER: a new pinhole, or the identical one
    /// extended. Returns its UniqueID. A refusal is recorded as an event.
    pub fn add_pinhole(
        &mut self,
        req: &PinRequest,
        now: Millis,
        facts: &dyn Facts,
    ) -> Result<u16, PinRefusal> {
        // a new pinhole would exist only in the table; one held is kept
        // and renewed either way
        let refused = if self.firewall_down && !self.pinholes.holds(req) {
            Err(PinRefusal::FirewallDown)
        } else {
            self.pinholes.add(&self.pin_policy, facts, req, now)
        };
        let (id, renewed) = match refused {
            Ok(x) => x,
            Err(r) => {
                self.refuse_pinhole(req, r, now);
                return Err(r);
            }
        };
        let p = self.pinholes.get(id).cloned();
        if let Some(p) = p {
            let (kind, why) = if renewed {
                (EventKind::Renew, "renewed by its client")
            } else {
                (EventKind::Add, "requested")
            };
            self.push(kind, Subject::Pinhole(p), why);
        }
        Ok(id)
    }

    /// Records a refused pinhole request (for logs and the ubus event).
    pub fn refuse_pinhole(&mut self, req: &PinRequest, r: PinRefusal, now: Millis) {
        let p = Pinhole {
            id: 0,
            remote: req.remote,
            rport: req.rport,
            iaddr: req.iaddr,
            iport: req.iport,
            proto: req.proto,
            expires: now,
            client: req.client,
            origin: req.origin,
            nonce: req.nonce,
            peer: req.peer,
        };
        self.push(EventKind::Refuse, Subject::Pinhole(p), r.reason());
    }

    /// UpdatePinhole: a new lease for an existing pinhole.
    pub fn update_pinhole(
        &mut self,
        requester: IpAddr,
        id: u16,
        lease: u32,
        now: Millis,
        facts: &dyn Facts,
    ) -> Result<(), PinRefusal> {
        self.pinholes
            .update(&self.pin_policy, facts, requester, id, lease, now)?;
        if let Some(p) = self.pinholes.get(id).cloned() {
            self.push(
                EventKind::Renew,
                Subject::Pinhole(p),
                "renewed by its client",
            );
        }
        Ok(())
    }

    /// DeletePinhole.
    pub fn delete_pinhole(
        &mut self,
        requester: IpAddr,
        id: u16,
        facts: &dyn Facts,
    ) -> Result<(), PinRefusal> {
        let p = self
            .pinholes
            .delete(&self.pin_policy, facts, requester, id)?;
        self.push(
            EventKind::Delete,
            Subject::Pinhole(p),
            format!("deleted by {requester}"),
        );
        Ok(())
    }

    /// Removes one pinhole unconditionally; `reason` goes to the logs.
    pub fn remove_pinhole(&mut self, id: u16, kind: EventKind, reason: &str) -> Option<Pinhole> {
        let p = self.pinholes.remove(id)?;
        self.push(kind, Subject::Pinhole(p.clone()), reason);
        Some(p)
    }

    /// Removes every pinhole (ubus `flush`). Returns how many.
    pub fn flush_pinholes(&mut self, reason: &str) -> usize {
        let ids: Vec<u16> = self.pinholes.iter().map(|p| p.id).collect();
        for id in &ids {
            self.remove_pinhole(*id, EventKind::Delete, reason);
        }
        ids.len()
    }

    /// Removes the pinholes the current pinhole policy forbids. Returns
    /// how many.
    pub fn enforce_pinholes(&mut self, facts: &dyn Facts) -> usize {
        let ids = self.pinholes.forbidden(&self.pin_policy, facts);
        for id in &ids {
            self.remove_pinhole(*id, EventKind::Delete, "no longer allowed after reload");
        }
        ids.len()
    }

    /// Restores a pinhole read back from the lease file, under the
    /// current pinhole policy like a new request; a refusal is recorded
    /// as an event and returned.
    pub fn restore_pinhole(&mut self, p: Pinhole, facts: &dyn Facts) -> Result<(), PinRefusal> {
        match self.pinholes.restore(&self.pin_policy, facts, p.clone()) {
            Ok(()) => {
                self.push(
                    EventKind::Add,
                    Subject::Pinhole(p),
                    "restored from the lease file",
                );
                Ok(())
            }
            Err(r) => {
                self.push(EventKind::Refuse, Subject::Pinhole(p), r.reason());
                Err(r)
            }
        }
    }

    /// Whether `requester` may renew or delete pinhole `p` (secure mode:
    /// its creator or the host it admits traffic to).
    pub fn may_manage_pinhole(&self, requester: IpAddr, p: &Pinhole, facts: &dyn Facts) -> bool {
        Pinholes::may_manage(&self.pin_policy, facts, requester, p)
    }

    /// Takes what was restored at start as installed: the daemon installs
    /// the whole table next ([`Core::reinstall`]), not a transaction of
    /// changes. The events stay, for the log.
    pub fn settle(&mut self) {
        self.table.commit();
        self.pinholes.commit();
    }

    // ---------------------------------------------------------------- turn

    /// Installs everything the table and the pinholes hold (at start,
    /// after a firewall reload or a new firewall setup).
    pub fn reinstall(&self, fw: &mut dyn Firewall, now: Millis) -> Result<(), String> {
        let all: Vec<&Mapping> = self.table.iter().collect();
        let pins: Vec<&Pinhole> = self.pinholes.iter().collect();
        fw.restore(&all, &pins, now)
    }

    /// Ends a loop turn: the net changes of everything the turn did go to
    /// the firewall as one transaction. If that fails, the whole table is
    /// installed again; if that fails too, the turn is undone (table,
    /// pinholes and events) and the kernel reinstalled as it was.
    pub fn commit_turn(&mut self, fw: &mut dyn Firewall, now: Millis) -> Turn {
        let changes = self.table.pending_changes();
        let pins: Vec<PinChange> = self.pinholes.pending_changes();
        let mut outcome = Outcome::Unchanged;
        if !changes.is_empty() || !pins.is_empty() {
            outcome = match fw.apply(&changes, &pins, now) {
                Ok(()) => Outcome::Installed,
                Err(error) => match self.reinstall(fw, now) {
                    Ok(()) => Outcome::Repaired { error },
                    Err(repair) => {
                        self.table.rollback(0);
                        self.pinholes.rollback(0);
                        self.events.clear();
                        Outcome::Refused {
                            error,
                            repair,
                            resync: self.reinstall(fw, now),
                        }
                    }
                },
            };
        }
        self.table.commit();
        self.pinholes.commit();
        let refused = matches!(outcome, Outcome::Refused { .. });
        Turn {
            outcome,
            pins_changed: !refused && !pins.is_empty(),
            changes: if refused { Vec::new() } else { changes },
            events: self.take_events(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::core::facts::FixedFacts;
    use crate::core::firewall::Recording;

    fn ip(d: u8) -> Ipv4Addr {
        Ipv4Addr::new(192, 168, 1, d)
    }

    fn core() -> Core {
        let cfg = Config {
            max_mappings_per_client: 10,
            ..Config::default()
        };
        Core::new(
            Policy::from_config(&cfg, vec![]),
            PinPolicy::from_config(&cfg),
        )
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

    fn pin(port: u16) -> PinRequest {
        let me: std::net::Ipv6Addr = "fd77::2".parse().unwrap();
        PinRequest {
            iport: port,
            proto: 6,
            lease: 60,
            ..PinRequest::upnp(me.into(), None, 0, me)
        }
    }

    fn kinds(events: &[Event]) -> Vec<(EventKind, bool)> {
        events
            .iter()
            .map(|e| (e.kind, matches!(e.subject, Subject::Pinhole(_))))
            .collect()
    }

    #[test]
    fn add_renew_expire_with_events() {
        let mut c = core();
        let facts = FixedFacts::default();
        let g = c.map(&req(2, 5000, Lease::Secs(60)), 0, &facts);
        assert_eq!(
            g,
            Ok(Granted {
                key: Key::new(Proto::Tcp, 5000),
                renewed: false,
                expires: Some(60_000)
            })
        );
        assert_eq!(
            c.table()
                .get(&Key::new(Proto::Tcp, 5000))
                .map(|m| m.desc.as_str()),
            Some("gameTCP:1:1.2.3.4:1:0:x")
        );
        let g = c
            .map(&req(2, 5000, Lease::Secs(120)), 30_000, &facts)
            .unwrap();
        assert!(g.renewed);
        assert_eq!(c.table().next_deadline(), Some(150_000));
        assert_eq!(c.expire(149_999), 0);
        assert_eq!(c.expire(150_000), 1);
        let kinds: Vec<_> = c.take_events().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Add, EventKind::Renew, EventKind::Expire]
        );
    }

    #[test]
    fn while_the_firewall_is_down_leases_held_are_kept_and_new_ones_refused() {
        let mut c = core();
        let facts = FixedFacts::default();
        c.map(&req(2, 5000, Lease::Secs(60)), 0, &facts).unwrap();
        let held = c.add_pinhole(&pin(8000), 0, &facts).unwrap();
        c.set_firewall_down(true);
        assert_eq!(
            c.map(&req(2, 5001, Lease::Secs(60)), 1, &facts),
            Err(Refusal::FirewallDown)
        );
        assert_eq!(
            c.add_pinhole(&pin(8001), 1, &facts),
            Err(PinRefusal::FirewallDown)
        );
        // renewing what is held works, and so does removing it
        assert!(
            c.map(&req(2, 5000, Lease::Secs(120)), 1, &facts)
                .unwrap()
                .renewed
        );
        assert_eq!(c.add_pinhole(&pin(8000), 1, &facts), Ok(held));
        assert!(
            c.remove(&Key::new(Proto::Tcp, 5000), EventKind::Delete, "test")
                .is_some()
        );
        let ev: Vec<_> = c
            .take_events()
            .iter()
            .map(|e| (e.kind, e.reason.clone()))
            .collect();
        assert!(ev.contains(&(
            EventKind::Refuse,
            "the firewall is down (fw4 stopped)".into()
        )));
        c.set_firewall_down(false);
        assert!(c.map(&req(2, 5001, Lease::Secs(60)), 2, &facts).is_ok());
    }

    #[test]
    fn conflicts_are_refused_and_recorded() {
        let mut c = core();
        let facts = FixedFacts::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &facts).unwrap();
        assert_eq!(
            c.map(&req(3, 5000, Lease::Permanent), 0, &facts),
            Err(Refusal::Conflict)
        );
        let ev = c.take_events();
        assert_eq!(ev.last().map(|e| e.kind), Some(EventKind::Refuse));
    }

    /// Pinholes raise the same events as mappings: add, renew, delete,
    /// expire, and delete on a flush.
    #[test]
    fn every_pinhole_change_is_an_event() {
        let mut c = core();
        let facts = FixedFacts::default();
        let me: IpAddr = "fd77::2".parse().unwrap();
        assert_eq!(c.add_pinhole(&pin(8080), 0, &facts), Ok(1));
        assert_eq!(c.add_pinhole(&pin(8080), 0, &facts), Ok(1));
        assert_eq!(c.add_pinhole(&pin(9090), 0, &facts), Ok(2));
        c.update_pinhole(me, 2, 120, 0, &facts).unwrap();
        c.delete_pinhole(me, 1, &facts).unwrap();
        assert_eq!(c.expire(120_000), 1);
        assert_eq!(c.add_pinhole(&pin(7070), 0, &facts), Ok(3));
        assert_eq!(c.flush_pinholes("flushed"), 1);
        let ev = c.take_events();
        assert_eq!(
            kinds(&ev),
            vec![
                (EventKind::Add, true),
                (EventKind::Renew, true),
                (EventKind::Add, true),
                (EventKind::Renew, true),
                (EventKind::Delete, true),
                (EventKind::Expire, true),
                (EventKind::Add, true),
                (EventKind::Delete, true),
            ]
        );
        assert_eq!(ev[4].reason, "deleted by fd77::2");
        assert!(c.pinholes().is_empty());
    }

    #[test]
    fn a_turn_installs_the_net_changes_in_one_transaction() {
        let mut c = core();
        let facts = FixedFacts::default();
        let mut fw = Recording::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &facts).unwrap();
        c.map(&req(2, 5001, Lease::Permanent), 0, &facts).unwrap();
        c.add_pinhole(&pin(8080), 0, &facts).unwrap();
        let turn = c.commit_turn(&mut fw, 0);
        assert_eq!(turn.outcome, Outcome::Installed);
        assert_eq!(turn.changes.len(), 2);
        assert!(turn.pins_changed && turn.installed());
        assert_eq!(kinds(&turn.events).len(), 3);
        assert_eq!(fw.installed.len(), 2);
        assert_eq!(fw.pinholes.len(), 1);
        assert_eq!(fw.transactions, 1);
        // a turn that changed nothing asks nothing of the firewall
        let turn = c.commit_turn(&mut fw, 0);
        assert_eq!(turn.outcome, Outcome::Unchanged);
        assert_eq!(fw.transactions, 1);
    }

    #[test]
    fn a_failed_transaction_is_repaired_by_reinstalling_the_new_table() {
        let mut c = core();
        let facts = FixedFacts::default();
        let mut fw = Recording::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &facts).unwrap();
        fw.fail_next = Some("flushed".into());
        let turn = c.commit_turn(&mut fw, 0);
        assert_eq!(
            turn.outcome,
            Outcome::Repaired {
                error: "flushed".into()
            }
        );
        assert!(turn.installed());
        assert_eq!(turn.events.len(), 1);
        assert_eq!(fw.installed.len(), 1);
        assert_eq!(fw.restores, 1);
    }

    #[test]
    fn a_refused_turn_rolls_back_table_pinholes_and_events() {
        let mut c = core();
        let facts = FixedFacts::default();
        let mut fw = Recording::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &facts).unwrap();
        c.map(&req(2, 5001, Lease::Permanent), 0, &facts).unwrap();
        c.commit_turn(&mut fw, 0);

        c.remove(&Key::new(Proto::Tcp, 5000), EventKind::Delete, "test");
        c.map(&req(2, 6000, Lease::Permanent), 0, &facts).unwrap();
        c.add_pinhole(&pin(8080), 0, &facts).unwrap();
        fw.fail_next = Some("boom".into());
        fw.fail_restore = Some("still broken".into());
        let turn = c.commit_turn(&mut fw, 0);
        assert_eq!(
            turn.outcome,
            Outcome::Refused {
                error: "boom".into(),
                repair: "still broken".into(),
                resync: Ok(())
            }
        );
        assert!(turn.refused() && !turn.installed());
        assert!(turn.events.is_empty() && turn.changes.is_empty());
        // the table is as it was before the turn, and so is the kernel
        let keys: Vec<u16> = c.table().iter().map(|m| m.key.eport).collect();
        assert_eq!(keys, vec![5000, 5001]);
        assert!(c.pinholes().is_empty());
        assert_eq!(fw.installed.len(), 2);
        assert!(fw.pinholes.is_empty());
        assert!(!c.is_dirty());
    }

    /// A host absent from the neighbour tables loses its mappings and
    /// pinholes once it has been missing for the timeout; a host that
    /// comes back in time keeps them; unreadable tables decide nothing.
    #[test]
    fn hosts_absent_from_the_neighbour_tables_lose_their_leases() {
        let mut c = core();
        let present = FixedFacts::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &present).unwrap();
        c.map(&req(3, 5001, Lease::Secs(3600)), 0, &present)
            .unwrap();
        c.add_pinhole(&pin(8080), 0, &present).unwrap();
        c.take_events();
        let absent = |a: &[&str]| FixedFacts {
            absent: a.iter().map(|s| s.parse().unwrap()).collect(),
            ..FixedFacts::default()
        };
        let both = absent(&["192.168.1.2", "192.168.1.3", "fd77::2"]);
        assert_eq!(c.sweep_absent(&both, 1_000, 10_000), 0);
        // .3 answers again: its absence is forgotten
        let two = absent(&["192.168.1.2", "fd77::2"]);
        assert_eq!(c.sweep_absent(&two, 6_000, 10_000), 0);
        assert_eq!(c.sweep_absent(&both, 9_000, 10_000), 0);
        assert_eq!(c.sweep_absent(&both, 11_000, 10_000), 2);
        let keys: Vec<u16> = c.table().iter().map(|m| m.key.eport).collect();
        assert_eq!(keys, vec![5001]);
        assert!(c.pinholes().is_empty());
        let ev = c.take_events();
        assert_eq!(ev.len(), 2);
        assert_eq!(
            ev[0].reason,
            "host absent from the neighbour tables for 10 s"
        );
        struct Unreadable;
        impl Facts for Unreadable {
            fn wan_listener(&self, _: Proto, _: u16) -> bool {
                false
            }
            fn neighbour_present(&self, _: IpAddr) -> Option<bool> {
                None
            }
            fn wan_counters(&self) -> Option<facts::LinkCounters> {
                None
            }
            fn wan_speed_bps(&self) -> u32 {
                0
            }
            fn system_uptime(&self) -> Option<u32> {
                None
            }
            fn conntrack_timeout(&self, _: bool) -> Option<u32> {
                None
            }
            fn pinhole_packets(&self, _: &Pinhole) -> Option<u64> {
                None
            }
            fn random(&self) -> [u8; 16] {
                [0; 16]
            }
        }
        assert_eq!(c.sweep_absent(&Unreadable, 100_000, 10_000), 0);
        assert_eq!(c.table().len(), 1);
    }

    #[test]
    fn enforce_after_tighter_rules() {
        let mut c = core();
        let facts = FixedFacts::default();
        c.map(&req(2, 5000, Lease::Permanent), 0, &facts).unwrap();
        c.map(&req(2, 6000, Lease::Permanent), 0, &facts).unwrap();
        let mut policy = c.policy().clone();
        policy.rules.insert(
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
        c.set_policy(policy);
        assert_eq!(c.enforce(&facts), 1);
        assert!(c.table().get(&Key::new(Proto::Tcp, 6000)).is_none());
        let last = c.take_events().pop().unwrap();
        assert!(last.reason.contains("permission rules"), "{}", last.reason);
    }

    /// A port a local service now listens on is taken back, with the
    /// same reason a new request would get.
    #[test]
    fn enforce_after_a_listener_appears() {
        let mut c = core();
        c.map(&req(2, 5000, Lease::Permanent), 0, &FixedFacts::default())
            .unwrap();
        let facts = FixedFacts {
            listeners: vec![(Proto::Tcp, 5000)],
            ..FixedFacts::default()
        };
        assert_eq!(c.enforce(&facts), 1);
        let last = c.take_events().pop().unwrap();
        assert_eq!(
            last.reason,
            "no longer allowed after reload: port held by a local service listening on tcp/5000"
        );
    }

    #[test]
    fn descriptions_are_sanitised_and_bounded() {
        assert_eq!(crate::proto::sanitize_text("a\nb\0c\u{7f}", 10), "abc");
        assert_eq!(crate::proto::sanitize_text("ééé", 5), "éé");
    }
}
