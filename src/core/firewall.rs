//! The interface through which the core drives the packet filter, and a
//! recording fake for tests.
//!
//! Owns: the [`Firewall`] trait, which [`crate::core::Core::commit_turn`]
//! drives once per loop turn, and [`Recording`]. The real implementation
//! is `sys::nft::Nft`; nothing here may do IO.

use std::collections::HashMap;

use crate::core::pinhole::{PinChange, Pinhole};
use crate::core::table::{Change, Key, Mapping, Millis};

/// Packet and byte counters of one mapping's DNAT element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// A packet filter that installs mappings.
pub trait Firewall {
    /// Applies the net changes of one loop turn (mappings and pinholes)
    /// as one transaction. On error the kernel is left as it was before
    /// the call.
    fn apply(&mut self, changes: &[Change], pins: &[PinChange], now: Millis) -> Result<(), String>;

    /// Builds (or rebuilds) the packet filter's structure and installs
    /// `all` and `pins`: used at start, after a firewall reload or a new
    /// setup, and to recover from a failed transaction. Elements no
    /// mapping owns are removed whenever the kernel may hold some (at
    /// start, after a failure).
    fn restore(&mut self, all: &[&Mapping], pins: &[&Pinhole], now: Millis) -> Result<(), String>;

    /// Counters of every installed mapping.
    fn counters(&mut self) -> HashMap<Key, Counters>;

    /// Counters of one pinhole.
    fn pinhole_counters(&mut self, p: &Pinhole) -> Option<Counters>;

    /// Counters of every pinhole of `pins` the firewall holds, by UniqueID.
    fn all_pinhole_counters(&mut self, pins: &[&Pinhole]) -> HashMap<u16, Counters>;
}

/// A firewall that records what it is asked to do, for core tests.
#[derive(Debug, Default)]
pub struct Recording {
    /// Installed mappings, as the kernel would hold them.
    pub installed: HashMap<Key, Mapping>,
    pub pinholes: HashMap<u16, Pinhole>,
    /// Number of successful `apply` calls (transactions).
    pub transactions: usize,
    pub restores: usize,
    /// When set, the next `apply` fails with this message.
    pub fail_next: Option<String>,
    /// When set, the next `restore` fails with this message.
    pub fail_restore: Option<String>,
}

impl Firewall for Recording {
    fn apply(
        &mut self,
        changes: &[Change],
        pins: &[PinChange],
        _now: Millis,
    ) -> Result<(), String> {
        if let Some(e) = self.fail_next.take() {
            return Err(e);
        }
        for c in changes {
            self.installed.remove(&c.key);
            if let Some(m) = &c.new {
                self.installed.insert(c.key, m.clone());
            }
        }
        for c in pins {
            self.pinholes.remove(&c.key);
            if let Some(p) = &c.new {
                self.pinholes.insert(c.key, p.clone());
            }
        }
        self.transactions += 1;
        Ok(())
    }

    fn restore(&mut self, all: &[&Mapping], pins: &[&Pinhole], _now: Millis) -> Result<(), String> {
        if let Some(e) = self.fail_restore.take() {
            return Err(e);
        }
        self.pinholes = pins.iter().map(|p| (p.id, (*p).clone())).collect();
        self.installed = all.iter().map(|m| (m.key, (*m).clone())).collect();
        self.restores += 1;
        Ok(())
    }

    fn counters(&mut self) -> HashMap<Key, Counters> {
        self.installed
            .keys()
            .map(|k| (*k, Counters::default()))
            .collect()
    }

    fn pinhole_counters(&mut self, p: &Pinhole) -> Option<Counters> {
        self.pinholes.get(&p.id).map(|_| Counters::default())
    }

    fn all_pinhole_counters(&mut self, pins: &[&Pinhole]) -> HashMap<u16, Counters> {
        pins.iter()
            .filter_map(|p| self.pinhole_counters(p).map(|c| (p.id, c)))
            .collect()
    }
}
