//! The mapping table: the single source of truth for every port mapping,
//! whichever protocol created it.
//!
//! Owns: [`Mapping`], its identity [`Key`] (protocol + external port), the
//! lease deadlines, per-client counts, and a journal of changes that the
//! daemon turns into one firewall transaction per loop turn (and can roll
//! back if that transaction fails). Must not do IO or read a clock: every
//! time is a [`Millis`] value passed in by the caller.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use crate::core::journal::{Change as Change_, Deadlines, Journal};
use crate::proto::Proto;

/// Milliseconds on the daemon's monotonic clock, counted from the
/// daemon's start (so `now / 1000` is its uptime). Wall-clock time only
/// appears at the edges (the lease file), so an NTP step on a router that
/// booted in 1970 does not expire every lease at once.
pub type Millis = u64;

/// Identity of a mapping: one external port per protocol, whichever
/// remote host it is restricted to. Ordered TCP first, then by port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub proto: Proto,
    pub eport: u16,
}

impl Key {
    pub fn new(proto: Proto, eport: u16) -> Key {
        Key { proto, eport }
    }
}

/// Which protocol created a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    UpnpV1,
    UpnpV2,
    NatPmp,
    Pcp,
}

impl Origin {
    /// The spelling used by the ubus `list` method and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::UpnpV1 => "upnp-igdv1",
            Origin::UpnpV2 => "upnp-igdv2",
            Origin::NatPmp => "nat-pmp",
            Origin::Pcp => "pcp",
        }
    }

    /// NAT-PMP and PCP mappings are identified by their internal endpoint
    /// as well as by their external port.
    pub fn is_natpmp_or_pcp(self) -> bool {
        matches!(self, Origin::NatPmp | Origin::Pcp)
    }
}

/// A restriction of a mapping to remote peers in `addr/prefix` (UPnP
/// RemoteHost is always a /32; PCP FILTER may give a shorter prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteFilter {
    pub addr: Ipv4Addr,
    /// 0–32; 0 would mean "any" and is never stored (that is `None`).
    pub prefix: u8,
}

impl RemoteFilter {
    pub fn host(addr: Ipv4Addr) -> RemoteFilter {
        RemoteFilter { addr, prefix: 32 }
    }
}

/// One port mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub key: Key,
    /// The LAN host the traffic is forwarded to.
    pub iaddr: Ipv4Addr,
    pub iport: u16,
    /// Only traffic from these remote peers is forwarded; `None` = any.
    pub remote: Option<RemoteFilter>,
    /// Free text from the client, already sanitised (no control characters).
    pub desc: String,
    pub origin: Origin,
    /// The address that asked for the mapping (owner for secure mode and quotas).
    pub client: Ipv4Addr,
    /// When the lease ends; `None` is a permanent (IGDv1 lease 0) mapping.
    pub expires: Option<Millis>,
    /// PCP mapping nonce (RFC 6887 §11.1), required to renew or delete.
    pub nonce: Option<[u8; 12]>,
    /// Set for a PCP PEER mapping (RFC 6887 §12): the remote peer's port.
    /// The peer's address is `remote` (a /32). The firewall then also
    /// source-translates the flow iaddr:iport → peer to the external port.
    pub peer_port: Option<u16>,
}

impl Mapping {
    /// Seconds left on the lease, rounded up; `None` if permanent.
    pub fn remaining_secs(&self, now: Millis) -> Option<u32> {
        self.expires.map(|e| {
            let ms = e.saturating_sub(now);
            u32::try_from(ms.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// The description as shown to anyone but its owner (UPnP listings,
    /// ubus): a PCP nonce is secret, since it authorises renewals and
    /// deletions, so a PCP mapping shows only `PCP MAP` or `PCP PEER`.
    pub fn public_desc(&self) -> &str {
        match self.origin {
            Origin::Pcp if self.desc.starts_with("PCP PEER") => "PCP PEER",
            Origin::Pcp => "PCP MAP",
            _ => &self.desc,
        }
    }

    /// True if the parts the firewall sees are equal (not lease or text).
    pub fn same_rule(&self, other: &Mapping) -> bool {
        self.key == other.key
            && self.iaddr == other.iaddr
            && self.iport == other.iport
            && self.remote == other.remote
            && self.peer_port == other.peer_port
    }
}

/// What happened to one mapping during a turn.
pub type Change = Change_<Key, Mapping>;

/// The mapping table.
#[derive(Debug, Default)]
pub struct Table {
    entries: HashMap<Key, Mapping>,
    /// Every key, sorted: O(1) access by index for
    /// GetGenericPortMappingEntry, O(log n) ranges for the v2 range actions.
    order: Vec<Key>,
    deadlines: Deadlines<Key>,
    per_client: HashMap<Ipv4Addr, u32>,
    /// NAT-PMP/PCP mappings by internal endpoint (RFC 6886 §3.3: one
    /// mapping per internal address, protocol and port).
    by_internal: HashMap<(Ipv4Addr, Proto, u16), Key>,
    /// Prior state of every key touched since the last `commit`.
    journal: Journal<Key, Mapping>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    pub fn get(&self, key: &Key) -> Option<&Mapping> {
        self.entries.get(key)
    }

    /// The mapping at position `i` in listing order (TCP then UDP, by port).
    pub fn nth(&self, i: usize) -> Option<&Mapping> {
        self.order.get(i).and_then(|k| self.entries.get(k))
    }

    /// Every mapping in listing order.
    pub fn iter(&self) -> impl Iterator<Item = &Mapping> + '_ {
        self.order.iter().filter_map(|k| self.entries.get(k))
    }

    /// Mappings of `proto` whose external port is in `lo..=hi`, in order.
    pub fn range(&self, proto: Proto, lo: u16, hi: u16) -> impl Iterator<Item = &Mapping> + '_ {
        let start = self.order.partition_point(|k| *k < Key::new(proto, lo));
        self.order[start..]
            .iter()
            .take_while(move |k| k.proto == proto && k.eport <= hi)
            .filter_map(|k| self.entries.get(k))
    }

    /// How many mappings `client` holds.
    pub fn count_for(&self, client: Ipv4Addr) -> u32 {
        self.per_client.get(&client).copied().unwrap_or(0)
    }

    /// Count per origin, for status.
    pub fn count_by_origin(&self, origin: Origin) -> usize {
        self.entries.values().filter(|m| m.origin == origin).count()
    }

    /// The NAT-PMP/PCP mapping for an internal endpoint, if any.
    pub fn by_internal(&self, iaddr: Ipv4Addr, proto: Proto, iport: u16) -> Option<&Mapping> {
        self.by_internal
            .get(&(iaddr, proto, iport))
            .and_then(|k| self.entries.get(k))
    }

    /// Inserts or replaces the mapping with `m.key`, returning the old one.
    pub fn put(&mut self, m: Mapping) -> Option<Mapping> {
        let key = m.key;
        let old = self.detach(&key);
        self.journal.record(key, old.clone());
        self.attach(m);
        old
    }

    /// Removes the mapping with `key`.
    pub fn remove(&mut self, key: &Key) -> Option<Mapping> {
        let old = self.detach(key)?;
        self.journal.record(*key, Some(old.clone()));
        Some(old)
    }

    /// The earliest lease end, for the loop's timer.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.next()
    }

    /// Keys whose lease has ended at `now`, at most `limit` of them (the
    /// loop takes the rest on its next turn, so a mass expiry never stalls it).
    pub fn expired(&self, now: Millis, limit: usize) -> Vec<Key> {
        self.deadlines.expired(now, limit)
    }

    /// A point to roll back to.
    pub fn savepoint(&self) -> usize {
        self.journal.savepoint()
    }

    /// Undoes every change made since `sp`, newest first.
    pub fn rollback(&mut self, sp: usize) {
        while let Some((key, old)) = self.journal.undo_since(sp) {
            self.detach(&key);
            if let Some(m) = old {
                self.attach(m);
            }
        }
    }

    /// True if anything was changed since the last `commit`.
    pub fn is_dirty(&self) -> bool {
        !self.journal.is_empty()
    }

    /// The net effect of everything changed since the last commit, one
    /// [`Change`] per key in key order. The journal is kept, so the batch
    /// can still be rolled back if the firewall refuses it.
    pub fn pending_changes(&self) -> Vec<Change> {
        self.journal.net(|k| self.entries.get(k))
    }

    /// Forgets the journal: the batch is final.
    pub fn commit(&mut self) {
        self.journal.clear();
    }

    fn attach(&mut self, m: Mapping) {
        let key = m.key;
        if let Err(pos) = self.order.binary_search(&key) {
            self.order.insert(pos, key);
        }
        if let Some(t) = m.expires {
            self.deadlines.insert(t, key);
        }
        *self.per_client.entry(m.client).or_insert(0) += 1;
        if m.origin.is_natpmp_or_pcp() {
            self.by_internal.insert((m.iaddr, key.proto, m.iport), key);
        }
        self.entries.insert(key, m);
    }

    fn detach(&mut self, key: &Key) -> Option<Mapping> {
        let m = self.entries.remove(key)?;
        if let Ok(pos) = self.order.binary_search(key) {
            self.order.remove(pos);
        }
        if let Some(t) = m.expires {
            self.deadlines.remove(t, *key);
        }
        if let Some(n) = self.per_client.get_mut(&m.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(&m.client);
            }
        }
        let ik = (m.iaddr, key.proto, m.iport);
        if self.by_internal.get(&ik) == Some(key) {
            self.by_internal.remove(&ik);
        }
        Some(m)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn mapping(proto: Proto, eport: u16, last_octet: u8, expires: Option<Millis>) -> Mapping {
        let a = Ipv4Addr::new(192, 168, 1, last_octet);
        Mapping {
            key: Key::new(proto, eport),
            iaddr: a,
            iport: eport,
            remote: None,
            desc: format!("m{eport}"),
            origin: Origin::UpnpV2,
            client: a,
            expires,
            nonce: None,
            peer_port: None,
        }
    }

    fn take_changes(t: &mut Table) -> Vec<Change> {
        let c = t.pending_changes();
        t.commit();
        c
    }

    #[test]
    fn order_index_and_ranges() {
        let mut t = Table::new();
        for p in [300, 100, 200] {
            t.put(mapping(Proto::Udp, p, 2, None));
            t.put(mapping(Proto::Tcp, p, 2, None));
        }
        let order: Vec<_> = t.iter().map(|m| (m.key.proto, m.key.eport)).collect();
        assert_eq!(
            order,
            vec![
                (Proto::Tcp, 100),
                (Proto::Tcp, 200),
                (Proto::Tcp, 300),
                (Proto::Udp, 100),
                (Proto::Udp, 200),
                (Proto::Udp, 300)
            ]
        );
        assert_eq!(t.nth(3).map(|m| m.key), Some(Key::new(Proto::Udp, 100)));
        assert!(t.nth(6).is_none());
        let r: Vec<u16> = t.range(Proto::Tcp, 150, 300).map(|m| m.key.eport).collect();
        assert_eq!(r, vec![200, 300]);
        let r: Vec<u16> = t.range(Proto::Udp, 0, 65535).map(|m| m.key.eport).collect();
        assert_eq!(r, vec![100, 200, 300]);
        assert_eq!(t.count_for(Ipv4Addr::new(192, 168, 1, 2)), 6);
    }

    #[test]
    fn deadlines_follow_replacement() {
        let mut t = Table::new();
        t.put(mapping(Proto::Tcp, 1, 2, Some(5000)));
        t.put(mapping(Proto::Tcp, 2, 2, Some(3000)));
        assert_eq!(t.next_deadline(), Some(3000));
        t.put(mapping(Proto::Tcp, 2, 2, Some(9000)));
        assert_eq!(t.next_deadline(), Some(5000));
        assert_eq!(t.expired(4999, 10), vec![]);
        assert_eq!(t.expired(9000, 10).len(), 2);
        assert_eq!(t.expired(9000, 1).len(), 1);
        t.remove(&Key::new(Proto::Tcp, 1));
        assert_eq!(t.next_deadline(), Some(9000));
    }

    #[test]
    fn changes_collapse_and_roll_back() {
        let mut t = Table::new();
        t.put(mapping(Proto::Tcp, 1, 2, None));
        take_changes(&mut t);
        let sp = t.savepoint();
        t.put(mapping(Proto::Tcp, 2, 2, None));
        t.remove(&Key::new(Proto::Tcp, 2));
        t.remove(&Key::new(Proto::Tcp, 1));
        t.put(mapping(Proto::Tcp, 3, 3, None));
        let c = take_changes(&mut t);
        // key 2 was added and removed: no net change.
        assert_eq!(c.len(), 2);
        assert!(c[0].old.is_some() && c[0].new.is_none());
        assert!(c[1].old.is_none() && c[1].new.is_some());
        // rollback restores the exact prior state, indexes included
        let sp2 = t.savepoint();
        assert_eq!(sp, 0);
        t.remove(&Key::new(Proto::Tcp, 3));
        t.put(mapping(Proto::Udp, 7, 4, Some(10)));
        t.rollback(sp2);
        assert_eq!(t.len(), 1);
        assert!(t.get(&Key::new(Proto::Tcp, 3)).is_some());
        assert_eq!(t.next_deadline(), None);
        assert_eq!(t.count_for(Ipv4Addr::new(192, 168, 1, 4)), 0);
        assert!(take_changes(&mut t).is_empty());
    }

    #[test]
    fn internal_index_for_natpmp_and_pcp() {
        let mut t = Table::new();
        let mut m = mapping(Proto::Udp, 4000, 9, None);
        m.origin = Origin::NatPmp;
        m.iport = 5000;
        t.put(m);
        let found = t.by_internal(Ipv4Addr::new(192, 168, 1, 9), Proto::Udp, 5000);
        assert_eq!(found.map(|m| m.key.eport), Some(4000));
        t.remove(&Key::new(Proto::Udp, 4000));
        assert!(
            t.by_internal(Ipv4Addr::new(192, 168, 1, 9), Proto::Udp, 5000)
                .is_none()
        );
    }

    #[test]
    fn remaining_rounds_up() {
        let m = mapping(Proto::Tcp, 1, 2, Some(10_001));
        assert_eq!(m.remaining_secs(0), Some(11));
        assert_eq!(m.remaining_secs(20_000), Some(0));
        assert_eq!(mapping(Proto::Tcp, 1, 2, None).remaining_secs(0), None);
    }
}
