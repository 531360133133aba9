//! What the mapping table and the pinholes share: the undo journal (what
//! each entry was before the loop turn touched it, so the turn's net
//! changes can be handed to the firewall as one transaction, and undone if
//! the firewall refuses them), and the lease deadlines.
//!
//! Owns: [`Journal`], [`Change`] and [`Deadlines`]. Pure.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::table::Millis;

/// When each entry's lease ends, earliest first.
#[derive(Debug)]
pub struct Deadlines<K>(BTreeSet<(Millis, K)>);

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines(BTreeSet::new())
    }
}

impl<K: Copy + Ord> Deadlines<K> {
    pub fn insert(&mut self, at: Millis, key: K) {
        self.0.insert((at, key));
    }

    pub fn remove(&mut self, at: Millis, key: K) {
        self.0.remove(&(at, key));
    }

    /// The earliest lease end, for the loop's timer.
    pub fn next(&self) -> Option<Millis> {
        self.0.first().map(|(t, _)| *t)
    }

    /// The entries whose lease has ended at `now`, at most `limit` of them
    /// (the loop takes the rest on its next turn, so a mass expiry never
    /// stalls it).
    pub fn expired(&self, now: Millis, limit: usize) -> Vec<K> {
        self.0
            .iter()
            .take_while(|(t, _)| *t <= now)
            .take(limit)
            .map(|(_, k)| *k)
            .collect()
    }
}

/// What happened to one entry during a turn: its state before the turn
/// and now. At least one side is `Some`, and the two differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<K, V> {
    pub key: K,
    pub old: Option<V>,
    pub new: Option<V>,
}

/// The prior state of every entry touched since the last commit, oldest
/// first.
#[derive(Debug)]
pub struct Journal<K, V>(Vec<(K, Option<V>)>);

impl<K, V> Default for Journal<K, V> {
    fn default() -> Self {
        Journal(Vec::new())
    }
}

impl<K: Copy + Ord, V: Clone + PartialEq> Journal<K, V> {
    /// Notes that `key` held `old` before this change.
    pub fn record(&mut self, key: K, old: Option<V>) {
        self.0.push((key, old));
    }

    /// A point to roll back to.
    pub fn savepoint(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets everything: the turn is final.
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// The newest change made after `sp`, taken off the journal: the
    /// caller restores its prior state, until `None`.
    pub fn undo_since(&mut self, sp: usize) -> Option<(K, Option<V>)> {
        if self.0.len() > sp {
            self.0.pop()
        } else {
            None
        }
    }

    /// The net effect since the last commit, one [`Change`] per key in key
    /// order; `now` gives an entry's present state. The journal is kept,
    /// so the turn can still be undone.
    pub fn net<'a>(&self, now: impl Fn(&K) -> Option<&'a V>) -> Vec<Change<K, V>>
    where
        V: 'a,
    {
        let mut first: BTreeMap<K, &Option<V>> = BTreeMap::new();
        for (key, old) in &self.0 {
            first.entry(*key).or_insert(old);
        }
        first
            .into_iter()
            .filter_map(|(key, old)| {
                let new = now(&key);
                (old.as_ref() != new).then(|| Change {
                    key,
                    old: old.clone(),
                    new: new.cloned(),
                })
            })
            .collect()
    }
}
