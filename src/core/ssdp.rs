//! SSDP over IPv4 and IPv6 (UDA §1 and Annex A): which searches are
//! answered, when and to whom the replies go (random spreading over MX,
//! per-source and global rate limits, a bounded queue), when the NOTIFY
//! rounds are due, and the messages' texts for each LAN and group.
//!
//! Owns: [`Ssdp`] and [`SearchReplies`]. The amplification bound lives
//! here, the same for both families: one M-SEARCH yields at most
//! [`MAX_ROWS`] replies, a source (a [`ClientKey`]) gets at most
//! [`SOURCE_BURST`] replies at once and [`SOURCE_RATE`] per second after
//! that, and all sources together at most [`GLOBAL_RATE`] per second.
//! Pure: the caller passes `now`, the HTTP date and a seed, and sends the
//! datagrams.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::core::device::Device;
use crate::core::lan::Lans;
use crate::core::policy::ClientKey;
use crate::core::rng::Rng;
use crate::core::table::Millis;
use crate::proto::ssdp::{self, Group, Row};

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
    /// The LAN the search arrived on (a link-local searcher is on no
    /// served prefix, so the LAN cannot be found from its address).
    lan: usize,
    to: SocketAddr,
    row: Row,
}

/// Schedules search responses.
#[derive(Debug)]
pub struct SearchReplies {
    sources: HashMap<ClientKey, Bucket>,
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
        lan: usize,
        to: SocketAddr,
        mut rows: Vec<Row>,
        mx: Option<u8>,
        now: Millis,
        rng: &mut Rng,
    ) -> usize {
        rows.truncate(MAX_ROWS);
        let want = rows.len() as u32;
        let source = ClientKey::of(to.ip());
        if self.sources.len() >= MAX_SOURCES && !self.sources.contains_key(&source) {
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
            .entry(source)
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
                lan,
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

    /// Replies due at `now`, in order: the LAN, the destination, the row.
    pub fn due(&mut self, now: Millis) -> Vec<(usize, SocketAddr, Row)> {
        let mut out = Vec::new();
        while let Some(Reverse(p)) = self.queue.peek() {
            if p.due > now {
                break;
            }
            if let Some(Reverse(p)) = self.queue.pop() {
                out.push((p.lan, p.to, p.row));
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
/// CONFIGID, max-age, the NOTIFY's HOST) for a message to `group` or to
/// the searcher `peer`, handed to `f`. Over IPv6 the LOCATION names the
/// LAN's address for that peer ([`crate::core::lan::Lan::addr6_for`]) in
/// brackets (UDA Annex A, RFC 2732); `None` if the LAN has none to name.
fn message<T>(
    device: &Device,
    lans: &Lans,
    lan: usize,
    group: Group,
    peer: Option<IpAddr>,
    f: impl FnOnce(&ssdp::Common) -> T,
) -> Option<T> {
    let l = lans.get(lan)?;
    let host = match group {
        Group::V4 => IpAddr::V4(l.addr),
        Group::LinkLocal | Group::SiteLocal => {
            let peer = match peer {
                Some(IpAddr::V6(p)) => Some(p),
                _ => None,
            };
            IpAddr::V6(l.addr6_for(peer)?)
        }
    };
    let location = format!("http://{}/rootDesc.xml", SocketAddr::new(host, l.http_port));
    Some(f(&ssdp::Common {
        location: &location,
        host: group.host(),
        server: &device.server,
        boot_id: device.boot_id,
        config_id: device.config_id(lans),
        max_age: device.max_age(),
    }))
}

/// The group a reply to `peer` is counted under: its family decides how
/// LOCATION is written.
fn family(peer: IpAddr) -> Group {
    match peer {
        IpAddr::V4(_) => Group::V4,
        IpAddr::V6(_) => Group::SiteLocal,
    }
}

/// The whole announcement set (UDA §1.1.2) for LAN `lan` and one
/// multicast group: `ssdp:alive`, or `ssdp:byebye` when the device
/// leaves. Empty over IPv6 for a LAN without an IPv6 address to name.
pub fn announcements(
    device: &Device,
    lans: &Lans,
    lan: usize,
    group: Group,
    alive: bool,
) -> Vec<String> {
    let rows = ssdp::rows(&device.identity());
    message(device, lans, lan, group, None, |c| {
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

    /// One datagram received on LAN `lan`'s SSDP socket (either family):
    /// a search from a host of that LAN is answered after its MX delay;
    /// anything else is ignored, and so is an IPv6 search on a LAN with
    /// no IPv6 address to name in LOCATION.
    pub fn on_datagram(
        &mut self,
        device: &Device,
        lans: &Lans,
        lan: usize,
        src: SocketAddr,
        data: &[u8],
        now: Millis,
    ) {
        if !self.enabled || !lans.accepts(lan, src.ip()) {
            return;
        }
        if src.is_ipv6() && lans.get(lan).is_none_or(|l| l.nets6.is_empty()) {
            return;
        }
        let Some(search) = ssdp::parse(data) else {
            return;
        };
        let rows = ssdp::answer(&device.identity(), &search.st);
        if !rows.is_empty() {
            self.replies
                .on_search(lan, src, rows, search.mx, now, &mut self.rng);
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
    ) -> Vec<(usize, SocketAddr, String)> {
        let mut out = Vec::new();
        for (lan, to, row) in self.replies.due(now) {
            let group = family(to.ip());
            let m = message(device, lans, lan, group, Some(to.ip()), |c| {
                ssdp::search_response(c, &row, date)
            });
            if let Some(m) = m {
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
    use std::net::Ipv6Addr;

    fn rows(n: usize) -> Vec<Row> {
        (0..n)
            .map(|i| (format!("st{i}"), format!("usn{i}")))
            .collect()
    }

    fn src(d: u8) -> SocketAddr {
        SocketAddr::from(([192, 168, 1, d], 50000))
    }

    #[test]
    fn replies_spread_over_mx() {
        let mut r = SearchReplies::new(0);
        assert_eq!(
            r.on_search(0, src(2), rows(11), Some(3), 0, &mut Rng::new(12345)),
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
        r.on_search(0, src(2), rows(1), None, 500, &mut Rng::new(1));
        assert_eq!(r.due(500).len(), 1);
    }

    #[test]
    fn a_flood_from_one_source_is_limited() {
        let mut r = SearchReplies::new(0);
        let mut sent = 0;
        // 10,000 searches over 1 second
        for i in 0..10_000u64 {
            sent += r.on_search(
                0,
                src(2),
                rows(11),
                Some(1),
                i / 10,
                &mut Rng::new(i as u32),
            );
        }
        // burst + one second of refill
        assert!(sent <= (SOURCE_BURST + SOURCE_RATE + 1) as usize, "{sent}");
        assert!(r.queue.len() <= MAX_PENDING);
        // another source is still served
        assert_eq!(
            r.on_search(0, src(3), rows(1), None, 1000, &mut Rng::new(7)),
            1
        );
    }

    #[test]
    fn many_sources_stay_bounded() {
        let mut r = SearchReplies::new(0);
        for i in 0..2000u32 {
            let a = SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 1900));
            r.on_search(0, a, rows(1), None, u64::from(i) * 10, &mut Rng::new(i));
            r.due(u64::from(i) * 10);
        }
        assert!(r.sources.len() <= MAX_SOURCES);
    }

    fn device() -> Device {
        Device::new(
            &crate::config::Config::default(),
            "3d3cec3a-8cf0-11e0-98ee-001a6bd2d070".into(),
            7,
            "test".into(),
        )
    }

    fn lans(nets6: &[&str]) -> Lans {
        Lans::new(vec![crate::core::lan::Lan {
            dev: "br-lan".into(),
            addr: "192.168.1.1".parse().unwrap(),
            nets: vec![("192.168.1.0".parse().unwrap(), 24)],
            nets6: nets6.iter().map(|a| (a.parse().unwrap(), 64)).collect(),
            http_port: 5000,
        }])
    }

    const SEARCH: &[u8] = b"M-SEARCH * HTTP/1.1\r\nHOST: [FF02::C]:1900\r\n\
MAN: \"ssdp:discover\"\r\nMX: 1\r\nST: upnp:rootdevice\r\n\r\n";

    fn replies(s: &mut Ssdp, lans: &Lans, from: &str) -> Vec<(usize, SocketAddr, String)> {
        let d = device();
        s.on_datagram(&d, lans, 0, from.parse().unwrap(), SEARCH, 0);
        s.due_replies(&d, lans, 2000, "DATE")
    }

    /// Over IPv6 the answer is the same, to the searcher's own address
    /// (a link-local one with its scope), with LOCATION naming the LAN's
    /// address in brackets: the ULA for a link-local searcher, ours in
    /// the searcher's prefix otherwise.
    #[test]
    fn ipv6_searches_are_answered_with_a_bracketed_location() {
        let mut s = Ssdp::new(true, 0, 1);
        let l = lans(&["2001:db8:1::1", "fd77::1"]);
        let r = replies(&mut s, &l, "[fe80::2%3]:50000");
        assert_eq!(r.len(), 1);
        let (lan, to, msg) = &r[0];
        assert_eq!((*lan, to.to_string()), (0, "[fe80::2%3]:50000".to_string()));
        assert!(
            msg.contains("\r\nLOCATION: http://[fd77::1]:5000/rootDesc.xml\r\n"),
            "{msg}"
        );
        assert!(msg.contains("\r\nST: upnp:rootdevice\r\n"), "{msg}");
        let r = replies(&mut s, &l, "[2001:db8:1::9]:50000");
        assert!(
            r[0].2
                .contains("LOCATION: http://[2001:db8:1::1]:5000/rootDesc.xml\r\n")
        );
        // a host of no served prefix, or a LAN with nothing to name: silence
        assert!(replies(&mut s, &l, "[2001:db8:9::9]:50000").is_empty());
        assert!(replies(&mut s, &lans(&[]), "[fe80::2%3]:50000").is_empty());
        // IPv4 as before
        let r = replies(&mut s, &l, "192.168.1.2:50000");
        assert!(
            r[0].2
                .contains("LOCATION: http://192.168.1.1:5000/rootDesc.xml\r\n")
        );
    }

    /// The rate limits count an IPv6 /64 as one source (its hosts can
    /// pick any address in it), a link-local address alone.
    #[test]
    fn ipv6_sources_are_limited_per_64() {
        let mut r = SearchReplies::new(0);
        let mut sent = 0;
        for i in 0..200u16 {
            let from = SocketAddr::from((Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 9, i), 1900));
            sent += r.on_search(0, from, rows(11), Some(1), 0, &mut Rng::new(u32::from(i)));
        }
        assert_eq!(sent, SOURCE_BURST as usize);
        let ll = SocketAddr::from((Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2), 1900));
        assert_eq!(
            r.on_search(0, ll, rows(11), Some(1), 0, &mut Rng::new(1)),
            11
        );
    }

    #[test]
    fn ipv6_announcements_name_the_group_and_the_lan() {
        let d = device();
        let l = lans(&["fd77::1"]);
        let v4 = announcements(&d, &l, 0, Group::V4, true);
        let ll = announcements(&d, &l, 0, Group::LinkLocal, true);
        let sl = announcements(&d, &l, 0, Group::SiteLocal, false);
        assert_eq!((ll.len(), sl.len()), (v4.len(), v4.len()));
        assert!(ll.iter().all(|m| m.contains("HOST: [FF02::C]:1900\r\n")
            && m.contains("LOCATION: http://[fd77::1]:5000/rootDesc.xml\r\n")));
        assert!(
            sl.iter()
                .all(|m| m.contains("HOST: [FF05::C]:1900\r\n")
                    && m.contains("NTS: ssdp:byebye\r\n"))
        );
        assert!(announcements(&d, &lans(&[]), 0, Group::LinkLocal, true).is_empty());
    }
}
