//! When and to whom SSDP search responses go: random spreading over MX,
//! per-source and global rate limits, and a bounded queue.
//!
//! Owns: [`Responder`]. The amplification bound lives here: one M-SEARCH
//! yields at most [`MAX_ROWS`] replies, a source gets at most
//! [`SOURCE_BURST`] replies at once and [`SOURCE_RATE`] per second after
//! that, and all sources together at most [`GLOBAL_RATE`] per second.
//! Pure: the caller passes `now` and a random seed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::core::table::Millis;
use crate::proto::ssdp::Row;

/// Most replies to one search (an IGD:2 `ssdp:all` needs 11).
pub const MAX_ROWS: usize = 12;
/// Replies a source may receive in a burst.
pub const SOURCE_BURST: u32 = 32;
/// Replies per second a source earns after its burst.
pub const SOURCE_RATE: u32 = 16;
/// Replies per second across all sources (burst twice that).
pub const GLOBAL_RATE: u32 = 256;
/// Most replies waiting for their random delay.
pub const MAX_PENDING: usize = 1024;
/// Most sources tracked; the longest idle one is forgotten first.
pub const MAX_SOURCES: usize = 256;

/// A token bucket in thousandths of a token.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    milli: u64,
    last: Millis,
}

impl Bucket {
    fn full(burst: u32, now: Millis) -> Bucket {
        Bucket {
            milli: u64::from(burst) * 1000,
            last: now,
        }
    }

    /// Refills, then takes up to `want` tokens; returns how many it took.
    fn take(&mut self, want: u32, rate: u32, burst: u32, now: Millis) -> u32 {
        let elapsed = now.saturating_sub(self.last);
        self.last = now;
        self.milli = (self.milli + elapsed * u64::from(rate)).min(u64::from(burst) * 1000);
        let got = (self.milli / 1000).min(u64::from(want)) as u32;
        self.milli -= u64::from(got) * 1000;
        got
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Pending {
    due: Millis,
    seq: u64,
    to: SocketAddrV4,
    row: Row,
}

/// Schedules search responses.
#[derive(Debug)]
pub struct Responder {
    sources: HashMap<Ipv4Addr, Bucket>,
    global: Bucket,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// Replies not sent because of the limits (for status and tests).
    pub dropped: u64,
}

impl Responder {
    pub fn new(now: Millis) -> Responder {
        Responder {
            sources: HashMap::new(),
            global: Bucket::full(2 * GLOBAL_RATE, now),
            queue: BinaryHeap::new(),
            seq: 0,
            dropped: 0,
        }
    }

    /// Queues the replies to one search from `to`. Each goes out after a
    /// random delay in [0, MX) seconds (UDA 1.1 §1.3.3; MX is already
    /// capped at 5), or at once for a unicast search. Returns how many
    /// were queued.
    pub fn on_search(
        &mut self,
        to: SocketAddrV4,
        mut rows: Vec<Row>,
        mx: Option<u8>,
        now: Millis,
        seed: u32,
    ) -> usize {
        rows.truncate(MAX_ROWS);
        let want = rows.len() as u32;
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(to.ip()) {
            if let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| *k)
            {
                self.sources.remove(&oldest);
            }
        }
        let bucket = self
            .sources
            .entry(*to.ip())
            .or_insert_with(|| Bucket::full(SOURCE_BURST, now));
        let mut n = bucket.take(want, SOURCE_RATE, SOURCE_BURST, now);
        let room = MAX_PENDING.saturating_sub(self.queue.len()) as u32;
        n = n.min(room);
        n = self.global.take(n, GLOBAL_RATE, 2 * GLOBAL_RATE, now);
        self.dropped += u64::from(want - n);
        let spread = mx.map_or(0, |m| u64::from(m) * 1000);
        let mut rng = seed | 1;
        for row in rows.into_iter().take(n as usize) {
            // xorshift32: the spreading only needs to be unpredictable
            // enough to keep devices from answering in lockstep.
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            let delay = if spread == 0 {
                0
            } else {
                u64::from(rng) % spread
            };
            self.seq += 1;
            self.queue.push(Reverse(Pending {
                due: now + delay,
                seq: self.seq,
                to,
                row,
            }));
        }
        n as usize
    }

    /// When the next queued reply is due.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.queue.peek().map(|Reverse(p)| p.due)
    }

    /// Replies due at `now`, in order.
    pub fn due(&mut self, now: Millis) -> Vec<(SocketAddrV4, Row)> {
        let mut out = Vec::new();
        while let Some(Reverse(p)) = self.queue.peek() {
            if p.due > now {
                break;
            }
            if let Some(Reverse(p)) = self.queue.pop() {
                out.push((p.to, p.row));
            }
        }
        out
    }

    /// Number of replies waiting.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Sources currently tracked.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| (format!("st{i}"), format!("usn{i}")))
            .collect()
    }

    fn src(d: u8) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::new(192, 168, 1, d), 50000)
    }

    #[test]
    fn replies_spread_over_mx() {
        let mut r = Responder::new(0);
        assert_eq!(r.on_search(src(2), rows(11), Some(3), 0, 12345), 11);
        let first = r.next_deadline().unwrap();
        assert!(first < 3000);
        let mut got = 0;
        let mut last = 0;
        for t in (0..=3000).step_by(100) {
            for _ in r.due(t) {
                got += 1;
                last = t;
            }
        }
        assert_eq!(got, 11);
        assert!(last <= 3000);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn unicast_search_is_immediate() {
        let mut r = Responder::new(0);
        r.on_search(src(2), rows(1), None, 500, 1);
        assert_eq!(r.due(500).len(), 1);
    }

    #[test]
    fn a_flood_from_one_source_is_limited() {
        let mut r = Responder::new(0);
        let mut sent = 0;
        // 10,000 searches over 1 second
        for i in 0..10_000u64 {
            sent += r.on_search(src(2), rows(11), Some(1), i / 10, i as u32);
        }
        // burst + one second of refill
        assert!(sent <= (SOURCE_BURST + SOURCE_RATE + 1) as usize, "{sent}");
        assert!(r.pending() <= MAX_PENDING);
        assert!(r.dropped > 100_000);
        // another source is still served
        assert_eq!(r.on_search(src(3), rows(1), None, 1000, 7), 1);
    }

    #[test]
    fn many_sources_stay_bounded() {
        let mut r = Responder::new(0);
        for i in 0..2000u32 {
            let a = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1900);
            r.on_search(a, rows(1), None, u64::from(i) * 10, i);
            r.due(u64::from(i) * 10);
        }
        assert!(r.sources() <= MAX_SOURCES);
    }
}
