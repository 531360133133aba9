//! SSDP: which searches are answered, when and to whom the replies go
//! (random spreading over MX, per-source and global rate limits, a
//! bounded queue), when the NOTIFY rounds are due, and the messages'
//! texts for each LAN.
//!
//! Owns: [`Ssdp`] and [`SearchReplies`]. The amplification bound lives
//! here: one M-SEARCH yields at most [`MAX_ROWS`] replies, a source gets
//! at most [`SOURCE_BURST`] replies at once and [`SOURCE_RATE`] per
//! second after that, and all sources together at most [`GLOBAL_RATE`]
//! per second. Pure: the caller passes `now`, the HTTP date and a seed,
//! and sends the datagrams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::core::device::Device;
use crate::core::lan::Lans;
use crate::core::rng::Rng;
use crate::core::table::Millis;
use crate::proto::ssdp::{self, Row};

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
pub struct SearchReplies {
    sources: HashMap<Ipv4Addr, Bucket>,
    global: Bucket,
    queue: BinaryHeap<Reverse<Pending>>,
    seq: u64,
}

impl SearchReplies {
    pub fn new(now: Millis) -> SearchReplies {
        SearchReplies {
            sources: HashMap::new(),
            global: Bucket::full(2 * GLOBAL_RATE, now),
            queue: BinaryHeap::new(),
            seq: 0,
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
        rng: &mut Rng,
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
        let spread = mx.map_or(0, |m| u64::from(m) * 1000);
        for row in rows.into_iter().take(n as usize) {
            let delay = rng.below(spread);
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
}

/// The SSDP side of the device: search replies waiting for their time,
/// and when the next NOTIFY round is due.
#[derive(Debug)]
pub struct Ssdp {
    replies: SearchReplies,
    rng: Rng,
    next_notify: Millis,
    /// UPnP is on (`enabled` and `enable_upnp`).
    enabled: bool,
}

/// The per-message fields of LAN `lan` (LOCATION, SERVER, BOOTID,
/// CONFIGID, max-age) handed to `f`.
fn message<T>(
    device: &Device,
    lans: &Lans,
    lan: usize,
    f: impl FnOnce(&ssdp::Common) -> T,
) -> Option<T> {
    let l = lans.get(lan)?;
    let location = format!("http://{}:{}/rootDesc.xml", l.addr, l.http_port);
    Some(f(&ssdp::Common {
        location: &location,
        server: &device.server,
        boot_id: device.boot_id,
        config_id: device.config_id(lans),
        max_age: device.max_age(),
    }))
}

/// The whole announcement set (UDA §1.1.2) for LAN `lan`: `ssdp:alive`,
/// or `ssdp:byebye` when the device leaves.
pub fn announcements(device: &Device, lans: &Lans, lan: usize, alive: bool) -> Vec<String> {
    let rows = ssdp::rows(&device.identity());
    message(device, lans, lan, |c| {
        rows.iter()
            .map(|row| {
                if alive {
                    ssdp::notify_alive(c, row)
                } else {
                    ssdp::notify_byebye(c, row)
                }
            })
            .collect()
    })
    .unwrap_or_default()
}

impl Ssdp {
    pub fn new(enabled: bool, now: Millis, seed: u32) -> Ssdp {
        Ssdp {
            replies: SearchReplies::new(now),
            rng: Rng::new(seed),
            next_notify: now,
            enabled,
        }
    }

    pub fn set_enabled(&mut self, enabled: bool) {
        self.enabled = enabled;
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// One datagram received on LAN `lan`'s SSDP socket: a search from a
    /// host of that LAN is answered after its MX delay; anything else is
    /// ignored.
    pub fn on_datagram(
        &mut self,
        device: &Device,
        lans: &Lans,
        lan: usize,
        src: SocketAddrV4,
        data: &[u8],
        now: Millis,
    ) {
        if !self.enabled || !lans.accepts(lan, *src.ip()) {
            return;
        }
        let Some(search) = ssdp::parse(data) else {
            return;
        };
        let rows = ssdp::answer(&device.identity(), &search.st);
        if !rows.is_empty() {
            self.replies
                .on_search(src, rows, search.mx, now, &mut self.rng);
        }
    }

    /// Search replies due at `now`: the LAN they leave from, the
    /// destination and the message. `date` is the HTTP date of now.
    pub fn due_replies(
        &mut self,
        device: &Device,
        lans: &Lans,
        now: Millis,
        date: &str,
    ) -> Vec<(usize, SocketAddrV4, String)> {
        let mut out = Vec::new();
        for (to, row) in self.replies.due(now) {
            let Some(lan) = lans.of((*to.ip()).into()) else {
                continue;
            };
            if let Some(m) = message(device, lans, lan, |c| ssdp::search_response(c, &row, date)) {
                out.push((lan, to, m));
            }
        }
        out
    }

    /// Whether a NOTIFY round is due at `now`. If so the next one is
    /// scheduled well before max-age runs out, with jitter so several
    /// devices do not announce in lockstep.
    pub fn notify_due(&mut self, device: &Device, now: Millis) -> bool {
        if now < self.next_notify {
            return false;
        }
        let interval = device.notify_period();
        let jitter = self.rng.below((interval / 16).max(1));
        self.next_notify = now + interval - jitter;
        self.enabled
    }

    /// Announces again at once (the LANs or the device changed).
    pub fn announce_soon(&mut self, now: Millis) {
        self.next_notify = now;
    }

    pub fn next_deadline(&self) -> Millis {
        match self.replies.next_deadline() {
            Some(t) => t.min(self.next_notify),
            None => self.next_notify,
        }
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
        let mut r = SearchReplies::new(0);
        assert_eq!(
            r.on_search(src(2), rows(11), Some(3), 0, &mut Rng::new(12345)),
            11
        );
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
        assert!(r.queue.is_empty());
    }

    #[test]
    fn unicast_search_is_immediate() {
        let mut r = SearchReplies::new(0);
        r.on_search(src(2), rows(1), None, 500, &mut Rng::new(1));
        assert_eq!(r.due(500).len(), 1);
    }

    #[test]
    fn a_flood_from_one_source_is_limited() {
        let mut r = SearchReplies::new(0);
        let mut sent = 0;
        // 10,000 searches over 1 second
        for i in 0..10_000u64 {
            sent += r.on_search(src(2), rows(11), Some(1), i / 10, &mut Rng::new(i as u32));
        }
        // burst + one second of refill
        assert!(sent <= (SOURCE_BURST + SOURCE_RATE + 1) as usize, "{sent}");
        assert!(r.queue.len() <= MAX_PENDING);
        // another source is still served
        assert_eq!(
            r.on_search(src(3), rows(1), None, 1000, &mut Rng::new(7)),
            1
        );
    }

    #[test]
    fn many_sources_stay_bounded() {
        let mut r = SearchReplies::new(0);
        for i in 0..2000u32 {
            let a = SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1900);
            r.on_search(a, rows(1), None, u64::from(i) * 10, &mut Rng::new(i));
            r.due(u64::from(i) * 10);
        }
        assert!(r.sources.len() <= MAX_SOURCES);
    }
}
