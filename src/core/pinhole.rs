//! IPv6 firewall pinholes, from WANIPv6FirewallControl:1 and from PCP
//! (RFC 6887 MAP and PEER for an IPv6 internal address): one table, its
//! policy (pinholes allowed, secure mode, permission rules, quotas per
//! client as [`ClientKey`] counts them, lease limits) and its journal of
//! changes for the firewall.
//!
//! Owns: [`Pinhole`], [`Pinholes`], and what a collision between the two
//! protocols is: the same traffic tuple held by a pinhole of the other
//! origin (or, between PCP pinholes, of another nonce) is refused. Pure:
//! `now` is passed in, and whether an IPv6 address belongs to the
//! requesting host is asked of the caller's [`Facts`]. Changes reach it
//! through [`crate::core::Core`], which records an event for each.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};

use crate::config::{Config, PermRule};
use crate::core::facts::Facts;
use crate::core::journal::{Change, Deadlines, Journal};
use crate::core::policy::ClientKey;
use crate::core::table::{Millis, Origin};

/// WANIPv6FirewallControl:1 A_ARG_TYPE_LeaseTime range.
pub const MIN_LEASE: u32 = 1;
pub const MAX_LEASE: u32 = 86400;

/// The traffic a pinhole admits: remote host and port (wildcards `None`,
/// 0), internal address and port, IANA protocol.
pub type Tuple = (Option<Ipv6Addr>, u16, Ipv6Addr, u16, u8);

/// One pinhole: inbound traffic from `remote:rport` (wildcards: `None`,
/// 0) to `iaddr:iport` over `proto` is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinhole {
    /// The UniqueID the control point uses (PCP clients never see it; it
    /// names the pinhole in ubus and the lease file).
    pub id: u16,
    pub remote: Option<Ipv6Addr>,
    pub rport: u16,
    pub iaddr: Ipv6Addr,
    pub iport: u16,
    /// IANA protocol number: 6, 17 or 136 (UDP-Lite).
    pub proto: u8,
    pub expires: Millis,
    /// Who asked (owner for secure mode and quotas).
    pub client: IpAddr,
    /// `UpnpV2` (WANIPv6FirewallControl, an IGD:2 service) or `Pcp`.
    pub origin: Origin,
    /// PCP mapping nonce (RFC 6887 §11.1), required to renew or delete.
    pub nonce: Option<[u8; 12]>,
    /// A PCP PEER pinhole (RFC 6887 §12): `remote:rport` is the peer.
    pub peer: bool,
}

impl Pinhole {
    /// The traffic tuple: two pinholes with the same one are the same
    /// pinhole (an AddPinhole repeating it extends the existing one).
    pub fn tuple(&self) -> Tuple {
        (self.remote, self.rport, self.iaddr, self.iport, self.proto)
    }

    pub fn remaining_secs(&self, now: Millis) -> u32 {
        u32::try_from(self.expires.saturating_sub(now).div_ceil(1000)).unwrap_or(u32::MAX)
    }
}

/// A request for a pinhole (AddPinhole, PCP MAP or PEER): the traffic to
/// let in, for how long, and who asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinRequest {
    pub client: IpAddr,
    pub remote: Option<Ipv6Addr>,
    pub rport: u16,
    pub iaddr: Ipv6Addr,
    pub iport: u16,
    /// IANA protocol number: 6, 17 or 136.
    pub proto: u8,
    /// Seconds, clamped to MIN_LEASE..=MAX_LEASE.
    pub lease: u32,
    pub origin: Origin,
    pub nonce: Option<[u8; 12]>,
    pub peer: bool,
    /// The pinhole this request renews under a new remote filter (a PCP
    /// MAP with new FILTER options): it keeps its UniqueID.
    pub replaces: Option<u16>,
}

impl PinRequest {
    /// An AddPinhole of WANIPv6FirewallControl.
    pub fn upnp(client: IpAddr, remote: Option<Ipv6Addr>, rport: u16, iaddr: Ipv6Addr) -> Self {
        PinRequest {
            client,
            remote,
            rport,
            iaddr,
            iport: 0,
            proto: 0,
            lease: 0,
            origin: Origin::UpnpV2,
            nonce: None,
            peer: false,
            replaces: None,
        }
    }

    fn tuple(&self) -> Tuple {
        (self.remote, self.rport, self.iaddr, self.iport, self.proto)
    }
}

/// What happened to one pinhole (by UniqueID) during a turn.
pub type PinChange = Change<u16, Pinhole>;

/// Why a pinhole request is refused (mapped to 6FC error codes by the
/// IGD layer, to PCP result codes by the PCP layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinRefusal {
    /// Pinholes are switched off (703 InboundPinholeNotAllowed).
    NotAllowed,
    /// Secure mode or permission rules (606).
    NotAuthorized,
    /// No room in the table (701 PinholeSpaceExhausted).
    SpaceExhausted,
    /// The client (its /64 for IPv6) holds its quota.
    ClientQuota,
    /// The same traffic is held by a pinhole of the other protocol.
    Collision,
    /// The same traffic is held by a PCP pinhole of another nonce or
    /// opcode.
    NotOwner,
    /// Unknown UniqueID (704 NoSuchEntry).
    NoSuchEntry,
    /// The firewall is down and the pinhole would be new (501).
    FirewallDown,
}

impl PinRefusal {
    /// Short reason for logs and events.
    pub fn reason(self) -> &'static str {
        match self {
            PinRefusal::NotAllowed => "IPv6 pinholes are switched off",
            PinRefusal::NotAuthorized => "denied by secure mode or permission rules",
            PinRefusal::SpaceExhausted => "pinhole table full",
            PinRefusal::ClientQuota => "client pinhole quota reached",
            PinRefusal::Collision => "the same pinhole is held by the other protocol",
            PinRefusal::NotOwner => "the same pinhole is held by another PCP mapping",
            PinRefusal::NoSuchEntry => "no such pinhole",
            PinRefusal::FirewallDown => "the firewall is down (fw4 stopped)",
        }
    }
}

/// The pinhole table.
#[derive(Debug, Default)]
pub struct Pinholes {
    by_id: BTreeMap<u16, Pinhole>,
    by_tuple: HashMap<Tuple, u16>,
    deadlines: Deadlines<u16>,
    next_id: u16,
    journal: Journal<u16, Pinhole>,
}

/// What governs pinholes.
#[derive(Debug, Clone, Default)]
pub struct PinPolicy {
    pub allowed: bool,
    pub secure_mode: bool,
    pub rules: Vec<PermRule>,
    pub max_total: u32,
    pub max_per_client: u32,
}

impl PinPolicy {
    /// The same rules, secure mode and limits as IPv4 mappings.
    pub fn from_config(cfg: &Config) -> PinPolicy {
        PinPolicy {
            allowed: cfg.enabled && cfg.ipv6_pinholes && !cfg.ipv6_disable,
            secure_mode: cfg.secure_mode,
            rules: cfg.perm_rules.clone(),
            max_total: cfg.max_mappings,
            max_per_client: cfg.max_mappings_per_client,
        }
    }

    /// Permission rules for IPv6: a rule with a wildcard internal address
    /// (0.0.0.0/0) applies by its internal port range; rules naming an
    /// IPv4 network cannot match an IPv6 host. First match wins; no match
    /// denies, as for IPv4.
    pub fn permitted(&self, iport: u16) -> bool {
        self.rules
            .iter()
            .filter(|r| r.int_prefix == 0)
            .find(|r| (r.int_ports.0..=r.int_ports.1).contains(&iport))
            .is_some_and(|r| r.allow)
    }
}

impl Pinholes {
    pub fn new() -> Pinholes {
        Pinholes {
            next_id: 1,
            ..Pinholes::default()
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: u16) -> Option<&Pinhole> {
        self.by_id.get(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pinhole> {
        self.by_id.values()
    }

    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.next()
    }

    /// Pinholes held by one client, as [`ClientKey`] counts them.
    fn count_for(&self, client: ClientKey) -> u32 {
        self.by_id
            .values()
            .filter(|p| ClientKey::of(p.client) == client)
            .count() as u32
    }

    /// The pinhole holding exactly this traffic.
    pub fn by_tuple(&self, t: &Tuple) -> Option<&Pinhole> {
        self.by_tuple.get(t).and_then(|id| self.by_id.get(id))
    }

    /// Room for one more pinhole of `client`.
    fn check_room(&self, policy: &PinPolicy, client: IpAddr) -> Result<(), PinRefusal> {
        if self.count_for(ClientKey::of(client)) >= policy.max_per_client {
            return Err(PinRefusal::ClientQuota);
        }
        if self.len() as u32 >= policy.max_total {
            return Err(PinRefusal::SpaceExhausted);
        }
        Ok(())
    }

    /// The policy checks of a pinhole for `client` to `iaddr:iport`.
    fn check_policy(
        policy: &PinPolicy,
        facts: &dyn Facts,
        client: IpAddr,
        iaddr: Ipv6Addr,
        iport: u16,
    ) -> Result<(), PinRefusal> {
        if !policy.allowed {
            return Err(PinRefusal::NotAllowed);
        }
        if policy.secure_mode && !facts.same_host(client, iaddr) {
            return Err(PinRefusal::NotAuthorized);
        }
        if !policy.permitted(iport) {
            return Err(PinRefusal::NotAuthorized);
        }
        Ok(())
    }

    fn put(&mut self, p: Pinhole) {
        let old = self.detach(p.id);
        self.journal.record(p.id, old);
        self.attach(p);
    }

    fn attach(&mut self, p: Pinhole) {
        self.by_tuple.insert(p.tuple(), p.id);
        self.deadlines.insert(p.expires, p.id);
        self.by_id.insert(p.id, p);
    }

    fn detach(&mut self, id: u16) -> Option<Pinhole> {
        let p = self.by_id.remove(&id)?;
        self.by_tuple.remove(&p.tuple());
        self.deadlines.remove(p.expires, id);
        Some(p)
    }

    /// A free UniqueID (1–65535), at most 65535 probes of a BTreeMap, and
    /// only when the table holds that many — which the caps prevent.
    fn free_id(&mut self) -> Option<u16> {
        for _ in 0..=u16::MAX {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if id != 0 && !self.by_id.contains_key(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Whether a pinhole of `req`'s traffic exists (a request for it
    /// extends it, or is refused as another's).
    pub fn holds(&self, req: &PinRequest) -> bool {
        self.by_tuple.contains_key(&req.tuple())
    }

    /// AddPinhole, PCP MAP or PEER. An identical pinhole of the same
    /// origin (and, for PCP, the same nonce and opcode) is extended and
    /// keeps its UniqueID, as is the one `req.replaces` names (with its new
    /// remote filter). Returns the UniqueID and whether it was extended.
    pub fn add(
        &mut self,
        policy: &PinPolicy,
        facts: &dyn Facts,
        req: &PinRequest,
        now: Millis,
    ) -> Result<(u16, bool), PinRefusal> {
        Self::check_policy(policy, facts, req.client, req.iaddr, req.iport)?;
        let expires = now + u64::from(req.lease.clamp(MIN_LEASE, MAX_LEASE)) * 1000;
        let held = self.by_tuple.get(&req.tuple()).copied();
        if let Some(id) = held.filter(|id| Some(*id) != req.replaces) {
            let Some(mut p) = self.by_id.get(&id).cloned() else {
                return Err(PinRefusal::NoSuchEntry);
            };
            if p.origin != req.origin {
                return Err(PinRefusal::Collision);
            }
            if p.nonce != req.nonce || p.peer != req.peer {
                return Err(PinRefusal::NotOwner);
            }
            p.expires = expires;
            self.put(p);
            return Ok((id, true));
        }
        if let Some(mut p) = req.replaces.and_then(|id| self.by_id.get(&id)).cloned() {
            p.remote = req.remote;
            p.rport = req.rport;
            p.expires = expires;
            let id = p.id;
            self.put(p);
            return Ok((id, true));
        }
        self.check_room(policy, req.client)?;
        let id = self.free_id().ok_or(PinRefusal::SpaceExhausted)?;
        self.put(Pinhole {
            id,
            remote: req.remote,
            rport: req.rport,
            iaddr: req.iaddr,
            iport: req.iport,
            proto: req.proto,
            expires,
            client: req.client,
            origin: req.origin,
            nonce: req.nonce,
            peer: req.peer,
        });
        Ok((id, false))
    }

    /// Whether `client` may renew or delete pinhole `p`: in secure mode
    /// only its creator or the host it admits traffic to.
    pub fn may_manage(policy: &PinPolicy, facts: &dyn Facts, client: IpAddr, p: &Pinhole) -> bool {
        !policy.secure_mode || p.client == client || facts.same_host(client, p.iaddr)
    }

    fn owned(
        &self,
        policy: &PinPolicy,
        facts: &dyn Facts,
        client: IpAddr,
        id: u16,
    ) -> Result<&Pinhole, PinRefusal> {
        let p = self.by_id.get(&id).ok_or(PinRefusal::NoSuchEntry)?;
        if !Self::may_manage(policy, facts, client, p) {
            return Err(PinRefusal::NotAuthorized);
        }
        Ok(p)
    }

    /// UpdatePinhole: a new lease for an existing pinhole.
    pub fn update(
        &mut self,
        policy: &PinPolicy,
        facts: &dyn Facts,
        client: IpAddr,
        id: u16,
        lease: u32,
        now: Millis,
    ) -> Result<(), PinRefusal> {
        let mut p = self.owned(policy, facts, client, id)?.clone();
        p.expires = now + u64::from(lease.clamp(MIN_LEASE, MAX_LEASE)) * 1000;
        self.put(p);
        Ok(())
    }

    /// DeletePinhole.
    pub fn delete(
        &mut self,
        policy: &PinPolicy,
        facts: &dyn Facts,
        client: IpAddr,
        id: u16,
    ) -> Result<Pinhole, PinRefusal> {
        self.owned(policy, facts, client, id)?;
        self.remove(id).ok_or(PinRefusal::NoSuchEntry)
    }

    /// Removes a pinhole unconditionally (expiry, ubus, flush).
    pub fn remove(&mut self, id: u16) -> Option<Pinhole> {
        let p = self.detach(id)?;
        self.journal.record(id, Some(p.clone()));
        Some(p)
    }

    /// Pinholes whose lease has ended, at most `limit`.
    pub fn expired(&self, now: Millis, limit: usize) -> Vec<u16> {
        self.deadlines.expired(now, limit)
    }

    /// The pinholes a new policy forbids.
    pub fn forbidden(&self, policy: &PinPolicy, facts: &dyn Facts) -> Vec<u16> {
        self.by_id
            .values()
            .filter(|p| {
                !policy.allowed
                    || (policy.secure_mode && !facts.same_host(p.client, p.iaddr))
                    || !policy.permitted(p.iport)
            })
            .map(|p| p.id)
            .collect()
    }

    /// Restores a pinhole read back from the lease file (its lease end
    /// already converted to the monotonic clock), under the current
    /// policy like a new request. Refused if its UniqueID or its traffic
    /// is taken, or the policy or a quota forbids it.
    pub fn restore(
        &mut self,
        policy: &PinPolicy,
        facts: &dyn Facts,
        p: Pinhole,
    ) -> Result<(), PinRefusal> {
        Self::check_policy(policy, facts, p.client, p.iaddr, p.iport)?;
        if self.by_id.contains_key(&p.id) || self.by_tuple.contains_key(&p.tuple()) {
            return Err(PinRefusal::Collision);
        }
        self.check_room(policy, p.client)?;
        self.next_id = self.next_id.max(p.id.wrapping_add(1)).max(1);
        self.attach(p);
        Ok(())
    }

    pub fn savepoint(&self) -> usize {
        self.journal.savepoint()
    }

    pub fn rollback(&mut self, sp: usize) {
        while let Some((id, old)) = self.journal.undo_since(sp) {
            self.detach(id);
            if let Some(p) = old {
                self.attach(p);
            }
        }
    }

    /// Net changes since the last commit, by UniqueID.
    pub fn pending_changes(&self) -> Vec<PinChange> {
        self.journal.net(|id| self.by_id.get(id))
    }

    pub fn commit(&mut self) {
        self.journal.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::facts::FixedFacts;

    fn policy() -> PinPolicy {
        PinPolicy {
            allowed: true,
            secure_mode: true,
            rules: crate::config::default_perm_rules(),
            max_total: 4,
            max_per_client: 3,
        }
    }

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn me() -> IpAddr {
        IpAddr::V6(v6("fd77::2"))
    }

    fn req(remote: Option<Ipv6Addr>, iaddr: &str, iport: u16, proto: u8, lease: u32) -> PinRequest {
        PinRequest {
            iport,
            proto,
            lease,
            ..PinRequest::upnp(me(), remote, 0, v6(iaddr))
        }
    }

    fn pcp(iaddr: &str, iport: u16, nonce: u8, lease: u32) -> PinRequest {
        PinRequest {
            origin: Origin::Pcp,
            nonce: Some([nonce; 12]),
            ..req(None, iaddr, iport, 6, lease)
        }
    }

    #[test]
    fn add_extend_update_delete() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let p = policy();
        let id = t.add(&p, &facts, &req(None, "fd77::2", 8080, 6, 3600), 0);
        assert_eq!(id, Ok((1, false)));
        // the identical pinhole is extended, same id
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::2", 8080, 6, 7200), 10),
            Ok((1, true))
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(1).unwrap().expires, 7_200_010);
        // another remote makes another pinhole
        let id2 = t.add(
            &p,
            &facts,
            &req(Some(v6("2001:db8::9")), "fd77::2", 8080, 6, 60),
            0,
        );
        assert_eq!(id2, Ok((2, false)));
        t.update(&p, &facts, me(), 2, 120, 100).unwrap();
        assert_eq!(t.get(2).unwrap().expires, 120_100);
        assert_eq!(
            t.update(&p, &facts, me(), 9, 120, 100),
            Err(PinRefusal::NoSuchEntry)
        );
        assert!(t.delete(&p, &facts, me(), 2).is_ok());
        assert_eq!(t.delete(&p, &facts, me(), 2), Err(PinRefusal::NoSuchEntry));
        let changes = t.pending_changes();
        assert_eq!(changes.len(), 1, "pinhole 2 came and went: no net change");
        t.commit();
        assert_eq!(t.expired(7_200_009, 10), Vec::<u16>::new());
        assert_eq!(t.expired(7_200_010, 10), vec![1]);
    }

    #[test]
    fn policy_refusals() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let mut p = policy();
        // secure mode: another host
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::3", 8080, 6, 60), 0),
            Err(PinRefusal::NotAuthorized)
        );
        // permission rules: low port
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::2", 22, 6, 60), 0),
            Err(PinRefusal::NotAuthorized)
        );
        for port in [5001, 5002, 5003] {
            t.add(&p, &facts, &req(None, "fd77::2", port, 17, 60), 0)
                .unwrap();
        }
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::2", 5004, 17, 60), 0),
            Err(PinRefusal::ClientQuota)
        );
        p.allowed = false;
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::2", 5005, 17, 60), 0),
            Err(PinRefusal::NotAllowed)
        );
        // switching pinholes off removes them all
        assert_eq!(t.forbidden(&p, &facts).len(), 3);
    }

    /// The quota counts a client's /64, whichever of its addresses asks.
    #[test]
    fn quotas_count_per_64_and_the_table_has_a_total() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let mut p = policy();
        p.secure_mode = false;
        let from = |a: &str, port: u16| PinRequest {
            client: IpAddr::V6(v6(a)),
            ..req(None, a, port, 6, 60)
        };
        t.add(&p, &facts, &from("fd77::2", 5001), 0).unwrap();
        t.add(&p, &facts, &from("fd77::aaaa", 5002), 0).unwrap();
        t.add(&p, &facts, &from("fd77::bbbb:1", 5003), 0).unwrap();
        assert_eq!(
            t.add(&p, &facts, &from("fd77::cccc:2", 5004), 0),
            Err(PinRefusal::ClientQuota)
        );
        // another /64 is another client, until the table is full
        t.add(&p, &facts, &from("fd77:0:0:1::2", 5005), 0).unwrap();
        assert_eq!(
            t.add(&p, &facts, &from("fd77:0:0:2::2", 5006), 0),
            Err(PinRefusal::SpaceExhausted)
        );
    }

    /// One table for both protocols: the same traffic held by the other
    /// protocol, or by another PCP nonce, is refused; the same nonce
    /// renews, and a new filter keeps the UniqueID.
    #[test]
    fn collisions_between_upnp_and_pcp() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let p = policy();
        let (id, _) = t.add(&p, &facts, &pcp("fd77::2", 8080, 1, 60), 0).unwrap();
        assert_eq!(
            t.add(&p, &facts, &req(None, "fd77::2", 8080, 6, 60), 0),
            Err(PinRefusal::Collision)
        );
        assert_eq!(
            t.add(&p, &facts, &pcp("fd77::2", 8080, 2, 60), 0),
            Err(PinRefusal::NotOwner)
        );
        assert_eq!(
            t.add(&p, &facts, &pcp("fd77::2", 8080, 1, 120), 0),
            Ok((id, true))
        );
        let refiltered = PinRequest {
            remote: Some(v6("2001:db8::9")),
            rport: 443,
            replaces: Some(id),
            ..pcp("fd77::2", 8080, 1, 120)
        };
        assert_eq!(t.add(&p, &facts, &refiltered, 0), Ok((id, true)));
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(id).unwrap().rport, 443);
        // the old traffic is free again, for either protocol
        assert!(
            t.add(&p, &facts, &req(None, "fd77::2", 8080, 6, 60), 0)
                .is_ok()
        );
        // UPnP's pinhole is just as safe from PCP
        assert_eq!(
            t.add(&p, &facts, &pcp("fd77::2", 8080, 1, 60), 0),
            Err(PinRefusal::Collision)
        );
    }

    #[test]
    fn restore_follows_the_current_policy() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let mut p = policy();
        let pin = |id: u16, iport: u16| Pinhole {
            id,
            remote: None,
            rport: 0,
            iaddr: v6("fd77::2"),
            iport,
            proto: 6,
            expires: 60_000,
            client: me(),
            origin: Origin::Pcp,
            nonce: Some([7; 12]),
            peer: false,
        };
        assert_eq!(t.restore(&p, &facts, pin(5, 8080)), Ok(()));
        assert_eq!(
            t.restore(&p, &facts, pin(5, 8081)),
            Err(PinRefusal::Collision)
        );
        assert_eq!(
            t.restore(&p, &facts, pin(6, 22)),
            Err(PinRefusal::NotAuthorized)
        );
        p.allowed = false;
        assert_eq!(
            t.restore(&p, &facts, pin(7, 8082)),
            Err(PinRefusal::NotAllowed)
        );
        assert_eq!(t.get(5).unwrap().nonce, Some([7; 12]));
    }

    #[test]
    fn rollback_restores() {
        let mut t = Pinholes::new();
        let facts = FixedFacts::default();
        let p = policy();
        t.add(&p, &facts, &req(None, "fd77::2", 8080, 6, 60), 0)
            .unwrap();
        t.commit();
        let sp = t.savepoint();
        t.remove(1);
        t.add(&p, &facts, &req(None, "fd77::2", 9090, 6, 60), 0)
            .unwrap();
        t.rollback(sp);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(1).unwrap().iport, 8080);
        assert!(t.pending_changes().is_empty());
    }
}
