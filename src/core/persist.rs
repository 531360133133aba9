//! Mappings and pinholes to and from the lease files (miniupnpd's
//! formats), converting between the daemon's monotonic lease ends and the
//! files' absolute UNIX times.
//!
//! Owns: how a mapping's origin, PCP nonce and PEER port survive a
//! restart, the cache of formatted lines with its wall-clock step
//! detection, and what a restart restores. miniupnpd writes origin and
//! nonce into the description (`NAT-PMP <port> <proto>`, `PCP MAP
//! <nonce>`, `PCP PEER <nonce> <peer port>`), where a UPnP client's
//! description could forge them. We write the same text, so LuCI labels
//! the lines as before, but read it back only from a line marked as our
//! own label ([`Lease4::own_label`]), which no client text can carry;
//! every other line is a UPnP mapping. A pinhole's line has no client
//! text at all, so its label (`PCP MAP|PEER <nonce>`, else a
//! WANIPv6FirewallControl pinhole) needs no mark. Pure: both clocks are
//! passed in, and the daemon reads and writes the files.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::ops::Range;

use crate::config::IGD2_MAX_LEASE;
use crate::core::Core;
use crate::core::facts::Facts;
use crate::core::lan::{Lans, NotInternal};
use crate::core::pinhole::{MAX_LEASE as PIN_MAX_LEASE, Pinhole, Pinholes};
use crate::core::table::{Change, Key, Mapping, Millis, Origin, RemoteFilter, Table};
use crate::proto::lease::{self, Lease4, Lease6, LineError};

/// Longest lifetime restored, in seconds. IGD:2 caps its leases at 7
/// days; every other lifetime rupnpd grants is a 32-bit count of seconds
/// (IGDv1's ui4 lease duration, the NAT-PMP and PCP lifetime fields), so
/// a longer one is no lease we wrote. Bounding it also keeps
/// `secs * 1000` far from overflow.
fn max_restored_secs(origin: Origin) -> u64 {
    match origin {
        Origin::UpnpV2 => u64::from(IGD2_MAX_LEASE),
        _ => u64::from(u32::MAX),
    }
}

/// The description of a WANIPv6FirewallControl pinhole's line.
const UPNP_PINHOLE: &str = "IGD2 pinhole";

/// The IPv6 lease line of a pinhole (miniupnpd's `leases6` format). The
/// description is ours alone (AddPinhole takes no text from the client):
/// `IGD2 pinhole`, or for PCP miniupnpd's `PCP MAP <nonce>` / `PCP PEER
/// <nonce>` (the peer is in the remote fields), so a restart restores a
/// PCP pinhole with its origin and the nonce that owns it.
pub fn to_lease6(p: &Pinhole, now: Millis, wall: u64) -> Lease6 {
    let desc = match (p.origin, p.nonce) {
        (Origin::Pcp, Some(n)) => {
            let op = if p.peer { "PEER" } else { "MAP" };
            format!("PCP {op} {}", nonce_hex(&n))
        }
        _ => UPNP_PINHOLE.into(),
    };
    Lease6 {
        proto: u16::from(p.proto),
        iaddr: p.iaddr,
        iport: p.iport,
        remote: p.remote,
        rport: p.rport,
        uid: p.id,
        expiry: wall.saturating_add(u64::from(p.remaining_secs(now).max(1))),
        desc,
    }
}

/// The pinhole an IPv6 lease line describes, or `None` if it has ended
/// or is not one we could have made. Its lifetime is cut to the longest
/// a pinhole gets. A `PCP MAP|PEER <nonce>` line is a PCP pinhole (a
/// PEER one needs its remote host and port); anything else is
/// WANIPv6FirewallControl's. The requester is not in the file and is
/// taken to be the internal client, as for mappings.
pub fn from_lease6(l: &Lease6, now: Millis, wall: u64) -> Option<Pinhole> {
    if l.expiry <= wall || l.uid == 0 || l.iport == 0 {
        return None;
    }
    let proto = u8::try_from(l.proto)
        .ok()
        .filter(|p| [6, 17, 136].contains(p))?;
    let secs = (l.expiry - wall).min(u64::from(PIN_MAX_LEASE));
    let (origin, nonce, peer) = match l.desc.strip_prefix("PCP ") {
        None => (Origin::UpnpV2, None, false),
        Some(label) => {
            let mut words = label.split(' ');
            let (Some(op @ ("MAP" | "PEER")), Some(hex), None) =
                (words.next(), words.next(), words.next())
            else {
                return None;
            };
            let peer = op == "PEER";
            if peer && (l.remote.is_none() || l.rport == 0) {
                return None;
            }
            (Origin::Pcp, Some(nonce_from_hex(hex)?), peer)
        }
    };
    Some(Pinhole {
        id: l.uid,
        remote: l.remote,
        rport: l.rport,
        iaddr: l.iaddr,
        iport: l.iport,
        proto,
        expires: now.saturating_add(secs * 1000),
        client: std::net::IpAddr::V6(l.iaddr),
        origin,
        nonce,
        peer,
    })
}

/// The lease line of a mapping. `now` is the monotonic time and `wall`
/// the UNIX time, both read at the same moment by the caller.
pub fn to_lease(m: &Mapping, now: Millis, wall: u64) -> Lease4 {
    let expiry = match m.remaining_secs(now) {
        None => 0,
        Some(s) => wall.saturating_add(u64::from(s.max(1))),
    };
    // miniupnpd's labels, nonce included: the file is readable by root only
    let label = match (m.origin, m.nonce, m.peer_port) {
        (Origin::NatPmp, _, _) => Some(m.desc.clone()),
        (Origin::Pcp, Some(n), None) => Some(format!("PCP MAP {}", nonce_hex(&n))),
        (Origin::Pcp, Some(n), Some(p)) => Some(format!("PCP PEER {} {p}", nonce_hex(&n))),
        _ => None,
    };
    Lease4 {
        proto: m.key.proto,
        eport: m.key.eport,
        remote: m.remote.map(|r| (r.addr, r.prefix)),
        iaddr: m.iaddr,
        iport: m.iport,
        expiry,
        own_label: label.is_some(),
        desc: label.unwrap_or_else(|| m.desc.clone()),
    }
}

/// The 24 lowercase hex digits of a nonce, as miniupnpd writes them.
fn nonce_hex(n: &[u8; 12]) -> String {
    n.iter().map(|b| format!("{b:02x}")).collect()
}

fn nonce_from_hex(s: &str) -> Option<[u8; 12]> {
    let b = s.as_bytes();
    if b.len() != 24 {
        return None;
    }
    let mut out = [0u8; 12];
    for (i, pair) in b.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

/// What one of our own labels says: origin, nonce, PEER port and the
/// description the mapping carries (without the nonce). `None` for text
/// that is no label of ours.
type Label = (Origin, Option<[u8; 12]>, Option<u16>, String);

fn read_label(l: &Lease4) -> Option<Label> {
    let mut words = l.desc.split(' ');
    match (words.next(), words.next(), words.next()) {
        (Some("NAT-PMP"), _, _) => Some((Origin::NatPmp, None, None, l.desc.clone())),
        (Some("PCP"), Some(op @ ("MAP" | "PEER")), Some(hex)) => {
            let nonce = nonce_from_hex(hex)?;
            let peer = if op == "PEER" {
                words
                    .next()
                    .and_then(crate::proto::parse_u16)
                    .filter(|_| l.remote.is_some())
            } else {
                None
            };
            let desc = if peer.is_some() {
                "PCP PEER"
            } else {
                "PCP MAP"
            };
            Some((Origin::Pcp, Some(nonce), peer, desc.into()))
        }
        _ => None,
    }
}

/// A client's description as restored: a PCP nonce that miniupnpd (or an
/// older rupnpd) wrote into it is dropped, so it is neither listed nor
/// logged.
fn client_desc(desc: &str) -> String {
    let mut words = desc.splitn(4, ' ');
    match (words.next(), words.next(), words.next()) {
        (Some("PCP"), Some(op @ ("MAP" | "PEER")), Some(hex)) if nonce_from_hex(hex).is_some() => {
            format!("PCP {op}")
        }
        _ => desc.to_string(),
    }
}

/// The mapping a lease line describes, or `None` if its lease has ended.
/// The requesting client is not in the file and is taken to be the
/// internal client (what secure mode enforces anyway). Lines without our
/// label mark are UPnP mappings (IGDv1 if permanent).
pub fn from_lease(l: &Lease4, now: Millis, wall: u64) -> Option<Mapping> {
    let secs = match l.expiry {
        0 => None,
        e if e <= wall => return None,
        e => Some(e - wall),
    };
    // NAT-PMP and PCP lifetimes always end
    let label = l
        .own_label
        .then(|| read_label(l))
        .flatten()
        .filter(|_| secs.is_some());
    let (origin, nonce, peer_port, desc) = match label {
        Some(label) => label,
        None if secs.is_none() => (Origin::UpnpV1, None, None, client_desc(&l.desc)),
        None => (Origin::UpnpV2, None, None, client_desc(&l.desc)),
    };
    let expires = secs.map(|s| now.saturating_add(s.min(max_restored_secs(origin)) * 1000));
    Some(Mapping {
        key: Key::new(l.proto, l.eport),
        iaddr: l.iaddr,
        iport: l.iport,
        remote: l
            .remote
            .filter(|(_, p)| *p > 0)
            .map(|(addr, prefix)| RemoteFilter { addr, prefix }),
        desc,
        origin,
        client: l.iaddr,
        expires,
        nonce,
        peer_port,
    })
}

/// The IPv4 lease file as it is on disk: its bytes, and where each
/// mapping's line is in them, valid for one wall-clock base (UNIX seconds
/// at monotonic time 0). A change costs the formatting of its own line
/// and a write of that line, whatever the number of mappings:
///
/// - a new mapping's line is appended;
/// - a line that keeps its length (a renewal: only the expiry moves) is
///   overwritten where it is;
/// - a removed line is blanked where it is: spaces, then its newline, a
///   blank line that every reader skips (miniupnpd logs and skips it);
/// - once blanks take up more than the lines (and more than
///   [`COMPACT_MIN`]), the text is made again without them and the file
///   replaced whole, which amortises to a constant per removal.
///
/// The file's order is free: readers key on the fields.
#[derive(Debug, Default)]
pub struct LeaseFile {
    base: Option<u64>,
    text: String,
    at: HashMap<Key, Span>,
    /// Bytes of blanked lines in `text`.
    blank: usize,
}

/// Where a line is in the text, its newline included. 32-bit offsets: one
/// is kept per mapping, and the text (at most 65 535 lines of a few
/// hundred bytes per protocol) stays far below 4 GiB.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn new(start: usize, len: usize) -> Span {
        let at = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Span {
            start: at(start),
            len: at(len),
        }
    }

    fn start(self) -> usize {
        self.start as usize
    }

    fn len(self) -> usize {
        self.len as usize
    }

    fn range(self) -> Range<usize> {
        self.start()..self.start() + self.len()
    }
}

/// What a turn's changes ask of the file on disk.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseWrite {
    /// Nothing changed.
    Unchanged,
    /// Replace the whole file with [`LeaseFile::text`].
    Whole,
    /// The file holds the text up to `from`, but for `patches`: write the
    /// text from `from` to its end, and each patch (a range of the text
    /// whose length did not change) where it is.
    Patch {
        from: usize,
        patches: Vec<Range<usize>>,
    },
}

/// Most seconds the wall clock may drift against the monotonic one before
/// the lines (absolute times) are made again.
const MAX_DRIFT: u64 = 2;

/// Blank bytes always tolerated before the text is compacted: a small
/// file is not replaced for every removal.
pub const COMPACT_MIN: usize = 4096;

/// Most lines changed in place in one turn; beyond, one whole write is
/// cheaper than as many small ones (a burst of renewals or deletions).
const MAX_PATCHES: usize = 8;

impl LeaseFile {
    fn line(m: &Mapping, base: u64) -> String {
        to_lease(m, 0, base).emit() + "\n"
    }

    fn append(&mut self, key: Key, line: &str) {
        let start = self.text.len();
        self.text.push_str(line);
        self.at.insert(key, Span::new(start, line.len()));
    }

    /// Turns a line into a blank line of the same length.
    fn blank(&mut self, span: Span) {
        let body = span.start()..span.start() + span.len().saturating_sub(1);
        let spaces = " ".repeat(body.len());
        self.text.replace_range(body, &spaces);
        self.blank += span.len();
    }

    /// The text again, without blank lines.
    fn compact(&mut self) {
        let mut spans: Vec<(Key, Span)> = self.at.iter().map(|(k, s)| (*k, *s)).collect();
        spans.sort_unstable_by_key(|(_, s)| s.start);
        let mut text = String::with_capacity(self.text.len() - self.blank);
        for (key, span) in spans {
            let start = text.len();
            text.push_str(&self.text[span.range()]);
            self.at.insert(key, Span::new(start, span.len()));
        }
        self.text = text;
        self.blank = 0;
    }

    /// Brings the text up to date with the turn's `changes`, or makes it
    /// again when `changes` is `None` or the wall clock stepped (NTP after
    /// boot: every absolute time in it is then wrong). Returns whether it
    /// started again, so the pinhole file, written from absolute times
    /// too, must be rewritten as well; and what to write. The text is kept
    /// only if `keep` (an IPv4 lease file is written).
    pub fn update(
        &mut self,
        table: &Table,
        changes: Option<&[Change]>,
        now: Millis,
        wall: u64,
        keep: bool,
    ) -> (bool, LeaseWrite) {
        let base = wall.saturating_sub(now / 1000);
        let stepped = self.base.is_none_or(|b| b.abs_diff(base) > MAX_DRIFT);
        let restart = stepped || changes.is_none();
        if restart {
            self.base = Some(base);
            self.text.clear();
            self.at.clear();
            self.blank = 0;
        }
        let base = self.base.unwrap_or(base);
        if !keep {
            return (restart, LeaseWrite::Unchanged);
        }
        if restart {
            for m in table.iter() {
                self.append(m.key, &Self::line(m, base));
            }
            return (restart, LeaseWrite::Whole);
        }
        let from = self.text.len();
        let mut patches = Vec::new();
        for c in changes.unwrap_or_default() {
            let old = self.at.get(&c.key).copied();
            let line = c.new.as_ref().map(|m| Self::line(m, base));
            match (old, line) {
                (Some(span), Some(line)) if span.len() == line.len() => {
                    if self.text[span.range()] != line {
                        self.text.replace_range(span.range(), &line);
                        if span.start() < from {
                            patches.push(span.range());
                        }
                    }
                }
                (old, line) => {
                    if let Some(span) = old {
                        self.at.remove(&c.key);
                        self.blank(span);
                        if span.start() < from {
                            patches.push(span.range());
                        }
                    }
                    if let Some(line) = line {
                        self.append(c.key, &line);
                    }
                }
            }
        }
        let write = if self.blank > COMPACT_MIN && self.blank > self.text.len() - self.blank {
            self.compact();
            LeaseWrite::Whole
        } else if patches.len() > MAX_PATCHES {
            LeaseWrite::Whole
        } else if patches.is_empty() && self.text.len() == from {
            LeaseWrite::Unchanged
        } else {
            LeaseWrite::Patch { from, patches }
        };
        (false, write)
    }

    /// The whole IPv4 lease file.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The whole IPv6 lease file.
pub fn pinhole_file(pins: &Pinholes, now: Millis, wall: u64) -> String {
    let mut text = String::new();
    for p in pins.iter() {
        text.push_str(&to_lease6(p, now, wall).emit());
        text.push('\n');
    }
    text
}

/// What a start restored from the lease files.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub mappings: usize,
    pub pinholes: usize,
    /// Lines of the IPv4 file that could not be read.
    pub bad_lines: Vec<LineError>,
    /// Mappings to addresses that are no LAN host, dropped, and why.
    pub off_lan: Vec<(Ipv4Addr, u16, NotInternal)>,
}

/// Restores the mappings and pinholes of the lease files' texts, each
/// re-validated against the current policy and LANs like a new request.
/// The core then holds them as installed: the caller installs the whole
/// table next.
pub fn restore(
    core: &mut Core,
    lans: &Lans,
    v4: Option<&str>,
    v6: Option<&str>,
    now: Millis,
    wall: u64,
    facts: &dyn Facts,
) -> Restored {
    let mut out = Restored::default();
    if let Some(text) = v4 {
        let (leases, bad) = lease::parse_file(text);
        out.bad_lines = bad;
        for l in &leases {
            let Some(m) = from_lease(l, now, wall) else {
                continue;
            };
            if let Err(why) = lans.internal_host(m.iaddr.into()) {
                out.off_lan.push((m.iaddr, m.iport, why));
                continue;
            }
            if core.restore(m, now, facts).is_ok() {
                out.mappings += 1;
            }
        }
    }
    if let Some(text) = v6 {
        let (leases, _) = lease::parse_file6(text);
        for l in &leases {
            let p = from_lease6(l, now, wall);
            if let Some(p) = p.filter(|p| lans.internal_host(p.iaddr.into()).is_ok()) {
                if core.restore_pinhole(p, facts).is_ok() {
                    out.pinholes += 1;
                }
            }
        }
    }
    core.settle();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Proto;
    use std::net::Ipv4Addr;

    fn m(origin: Origin, desc: &str, expires: Option<Millis>) -> Mapping {
        Mapping {
            key: Key::new(Proto::Udp, 7000),
            iaddr: Ipv4Addr::new(192, 168, 1, 5),
            iport: 27000,
            remote: None,
            desc: desc.into(),
            origin,
            client: Ipv4Addr::new(192, 168, 1, 5),
            expires,
            nonce: None,
            peer_port: None,
        }
    }

    #[test]
    fn round_trips_through_the_wall_clock() {
        // 3600.5 s left at monotonic 10 s, wall 1_700_000_000
        let a = m(Origin::UpnpV2, "game: lobby", Some(10_000 + 3_600_500));
        let l = to_lease(&a, 10_000, 1_700_000_000);
        assert_eq!(l.expiry, 1_700_003_601);
        assert_eq!(
            l.emit(),
            "UDP:7000:192.168.1.5:27000:1700003601:game: lobby"
        );
        // restored after a restart: monotonic clock at 0, wall 100 s later
        let b = from_lease(&l, 0, 1_700_000_100).unwrap();
        assert_eq!(b.expires, Some(3_501_000));
        assert_eq!(b.origin, Origin::UpnpV2);
        assert_eq!(b.desc, "game: lobby");
        assert!(from_lease(&l, 0, 1_700_003_601).is_none());
    }

    #[test]
    fn permanent_nat_pmp_and_pcp() {
        let p = m(Origin::UpnpV1, "perm", None);
        let l = to_lease(&p, 0, 5);
        assert_eq!(l.expiry, 0);
        assert_eq!(from_lease(&l, 0, 999).unwrap().origin, Origin::UpnpV1);

        let n = m(Origin::NatPmp, "NAT-PMP 7000 udp", Some(60_000));
        assert_eq!(
            from_lease(&to_lease(&n, 0, 5), 0, 5).unwrap().origin,
            Origin::NatPmp
        );

        let mut c = m(Origin::Pcp, "PCP PEER", Some(60_000));
        c.nonce = Some([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        c.peer_port = Some(5000);
        c.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let l = to_lease(&c, 0, 5);
        // miniupnpd's label (LuCI shows "PCP (nonce …)"), marked as ours
        assert_eq!(
            l.emit(),
            "UDP:7000:192.0.3.2:192.168.1.5:27000:65:PCP PEER 0102030405060708090a0b0c 5000\t"
        );
        let back = from_lease(&Lease4::parse(&l.emit()).unwrap(), 0, 5).unwrap();
        assert_eq!(back, c);
        c.peer_port = None;
        c.desc = "PCP MAP".into();
        let l = to_lease(&c, 0, 5);
        assert_eq!(l.desc, "PCP MAP 0102030405060708090a0b0c");
        assert_eq!(
            from_lease(&Lease4::parse(&l.emit()).unwrap(), 0, 5),
            Some(c)
        );
        // a marked line is still no permanent NAT-PMP or PCP mapping
        let mut l = to_lease(&n, 0, 5);
        l.expiry = 0;
        assert_eq!(from_lease(&l, 0, 5).unwrap().origin, Origin::UpnpV1);
    }

    /// Issue 13 item 6: a UPnP client's description is its own text; read
    /// back after a restart it never makes a NAT-PMP or PCP mapping, nor
    /// a nonce the client chose.
    #[test]
    fn a_description_cannot_choose_origin_or_nonce() {
        let forged = [
            (Origin::UpnpV1, "PCP MAP 0c0c0c0c0c0c0c0c0c0c0c0c", None),
            (Origin::UpnpV2, "NAT-PMP 7000 udp", Some(60_000)),
            (
                Origin::UpnpV2,
                "PCP PEER 0c0c0c0c0c0c0c0c0c0c0c0c 5000",
                Some(60_000),
            ),
        ];
        for (origin, desc, expires) in forged {
            let mut a = m(origin, desc, expires);
            a.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
            let line = to_lease(&a, 0, 5).emit();
            let back = from_lease(&Lease4::parse(&line).unwrap(), 0, 5).unwrap();
            assert_eq!(
                (back.origin, back.nonce, back.peer_port),
                (origin, None, None),
                "{line:?}"
            );
        }
    }

    /// Lines written by miniupnpd (or an older rupnpd) carry no origin: they
    /// load as UPnP mappings, and a nonce in a description is not kept
    /// where it would be listed or logged.
    #[test]
    fn miniupnpd_lines_load_as_upnp_without_nonces() {
        let (ok, bad) = crate::proto::lease::parse_file(
            "TCP:33333:192.168.0.100:33333:1485578298:NAT-PMP 33333 tcp\n\
UDP:9:198.51.100.0/24:192.168.1.5:9:0:PCP MAP 0123456789abcdef01234567\n\
UDP:10:192.168.1.5:10:0:PCP PEER 0123456789abcdef01234567 5000\n",
        );
        assert!(bad.is_empty(), "{bad:?}");
        let back: Vec<Mapping> = ok
            .iter()
            .filter_map(|l| from_lease(l, 0, 1_485_578_000))
            .collect();
        let got: Vec<_> = back
            .iter()
            .map(|b| (b.origin, b.nonce, b.desc.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (Origin::UpnpV2, None, "NAT-PMP 33333 tcp"),
                (Origin::UpnpV1, None, "PCP MAP"),
                (Origin::UpnpV1, None, "PCP PEER"),
            ]
        );
    }

    /// Issue 13 item 12: times in the file are input. An expiry far in the
    /// future is cut to the longest lease the mapping's protocol grants
    /// (no overflow of `(expiry - wall) * 1000`), whatever the clocks say.
    #[test]
    fn hostile_expiry_times_are_clamped() {
        let l = |expiry: u64| Lease4::parse(&format!("TCP:1:192.168.1.5:1:{expiry}:x")).unwrap();
        let b = from_lease(&l(u64::MAX), 5, 1_700_000_000).unwrap();
        assert_eq!(
            b.expires,
            Some(5 + u64::from(crate::config::IGD2_MAX_LEASE) * 1000)
        );
        let b = from_lease(&l(1_700_000_000 + 100), 5, 1_700_000_000).unwrap();
        assert_eq!(b.expires, Some(5 + 100_000));
        // a monotonic clock at its end saturates rather than wraps
        let b = from_lease(&l(u64::MAX), u64::MAX - 1, 0).unwrap();
        assert_eq!(b.expires, Some(u64::MAX));
        assert!(from_lease(&l(u64::MAX), 0, u64::MAX).is_none());
        // the wall clock at its end: the line says "ends now" at worst
        assert_eq!(
            to_lease(&m(Origin::UpnpV2, "x", Some(60_000)), 0, u64::MAX).expiry,
            u64::MAX
        );
        let pin = Lease6::parse("TCP;fd00::2;1;;0;7;18446744073709551615;x").unwrap();
        let p = from_lease6(&pin, u64::MAX - 1, 1).unwrap();
        assert_eq!(p.expires, u64::MAX);
        let p = from_lease6(&pin, 0, 1).unwrap();
        assert_eq!(p.expires, u64::from(crate::core::pinhole::MAX_LEASE) * 1000);
    }

    fn core() -> Core {
        let cfg = crate::config::Config::default();
        Core::new(
            crate::core::policy::Policy::from_config(&cfg, vec![]),
            crate::core::pinhole::PinPolicy::from_config(&cfg),
        )
    }

    fn lans() -> Lans {
        Lans::new(vec![crate::core::lan::Lan {
            dev: "br-lan".into(),
            addr: Ipv4Addr::new(192, 168, 1, 1),
            nets: vec![(Ipv4Addr::new(192, 168, 1, 0), 24)],
            nets6: vec![("fd00::".parse().unwrap(), 64)],
            http_port: 5000,
        }])
    }

    /// What the daemon does with a [`LeaseWrite`], on a file in memory.
    fn apply(disk: &mut Vec<u8>, file: &LeaseFile, w: &LeaseWrite) {
        let text = file.text().as_bytes();
        match w {
            LeaseWrite::Unchanged => {}
            LeaseWrite::Whole => *disk = text.to_vec(),
            LeaseWrite::Patch { from, patches } => {
                assert_eq!(disk.len(), *from, "the file is as last written");
                disk.extend_from_slice(&text[*from..]);
                for r in patches {
                    disk[r.clone()].copy_from_slice(&text[r.clone()]);
                }
            }
        }
        assert_eq!(disk, text);
    }

    fn commit(table: &mut Table) -> Vec<Change> {
        let changes = table.pending_changes();
        table.commit();
        changes
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one patch, a range of bytes
    fn lines_follow_changes_and_start_again_after_a_clock_step() {
        let mut table = Table::new();
        let mut file = LeaseFile::default();
        let wall = 1_700_000_000;
        // the first write makes every line
        assert_eq!(
            file.update(&table, None, 0, wall, true),
            (true, LeaseWrite::Whole)
        );
        assert_eq!(file.text(), "");
        // an add appends
        let mut a = m(Origin::UpnpV2, "a", Some(60_000));
        table.put(a.clone());
        let c = commit(&mut table);
        assert_eq!(
            file.update(&table, Some(&c), 1_000, wall + 1, true),
            (
                false,
                LeaseWrite::Patch {
                    from: 0,
                    patches: vec![]
                }
            )
        );
        let line = "UDP:7000:192.168.1.5:27000:1700000060:a\n";
        assert_eq!(file.text(), line);
        // a line of the same length is changed where it is
        a.desc = "b".into();
        table.put(a.clone());
        let c = commit(&mut table);
        assert_eq!(
            file.update(&table, Some(&c), 2_000, wall + 2, true),
            (
                false,
                LeaseWrite::Patch {
                    from: line.len(),
                    patches: vec![0..line.len()]
                }
            )
        );
        assert_eq!(file.text(), "UDP:7000:192.168.1.5:27000:1700000060:b\n");
        // a longer one is blanked and appended
        a.desc = "bb".into();
        table.put(a);
        let c = commit(&mut table);
        let (_, w) = file.update(&table, Some(&c), 2_000, wall + 2, true);
        assert_eq!(
            w,
            LeaseWrite::Patch {
                from: line.len(),
                patches: vec![0..line.len()]
            }
        );
        assert_eq!(
            file.text(),
            format!(
                "{}\nUDP:7000:192.168.1.5:27000:1700000060:bb\n",
                " ".repeat(line.len() - 1)
            )
        );
        // NTP sets the clock an hour ahead: every absolute time moves
        assert_eq!(
            file.update(&table, Some(&[]), 3_000, wall + 3 + 3600, true),
            (true, LeaseWrite::Whole)
        );
        assert_eq!(file.text(), "UDP:7000:192.168.1.5:27000:1700003660:bb\n");
        // without a lease file nothing is kept or written
        let mut none = LeaseFile::default();
        assert_eq!(
            none.update(&table, None, 0, wall, false),
            (true, LeaseWrite::Unchanged)
        );
        assert_eq!(none.text(), "");
    }

    /// Through adds, renewals, changes and removals the file on disk is
    /// always the text, reads back as exactly the table, and is written
    /// whole only when blanks outweigh the lines or a turn changes many
    /// lines in place.
    #[test]
    fn the_file_follows_the_table_with_small_writes() {
        let mut table = Table::new();
        let mut file = LeaseFile::default();
        let mut disk = Vec::new();
        let wall = 1_700_000_000;
        let (_, w) = file.update(&table, None, 0, wall, true);
        apply(&mut disk, &file, &w);
        let mapping = |port: u16, desc: &str, secs: u64| Mapping {
            key: Key::new(crate::proto::Proto::Tcp, port),
            ..m(Origin::UpnpV2, desc, Some(secs * 1000))
        };
        let (mut wholes, mut compactions) = (0, 0);
        let mut seed = 0x9e37_79b9u32;
        for turn in 0..3000u64 {
            // a few changes per turn, sometimes a burst
            let n = if turn % 97 == 0 { 20 } else { 1 + turn % 3 };
            for _ in 0..n {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                let port = 1000 + (seed % 400) as u16;
                let _ = match seed % 7 {
                    0..=2 => table.put(mapping(port, "game", 3600 + turn)),
                    3 => table.put(mapping(port, "a longer description", 7200)),
                    _ => table.remove(&Key::new(crate::proto::Proto::Tcp, port)),
                };
            }
            let c = commit(&mut table);
            let blank = file.blank;
            let (restarted, w) = file.update(&table, Some(&c), 0, wall, true);
            assert!(!restarted);
            if w == LeaseWrite::Whole {
                wholes += 1;
                if file.blank == 0 && blank > 0 {
                    compactions += 1;
                }
            }
            apply(&mut disk, &file, &w);
            assert!(file.blank <= COMPACT_MIN.max(file.text.len() - file.blank));
        }
        let text = String::from_utf8(disk).unwrap();
        let (leases, bad) = lease::parse_file(&text);
        assert!(bad.is_empty(), "{bad:?}");
        let mut got: Vec<_> = leases.iter().map(|l| (l.eport, l.desc.clone())).collect();
        got.sort();
        let mut want: Vec<_> = table
            .iter()
            .map(|m| (m.key.eport, m.desc.clone()))
            .collect();
        want.sort();
        assert_eq!(got, want);
        // whole writes are the exception: bursts and compactions
        assert!(wholes < 100, "{wholes} whole writes in 3000 turns");
        assert!(compactions > 0);
    }

    /// The lease file gets the same internal-address check as a new
    /// request: the router's own address, a subnet's network and
    /// broadcast addresses, a prefix's subnet-router anycast address.
    #[test]
    fn restore_drops_leases_for_no_lan_host() {
        let mut c = core();
        let facts = crate::core::facts::FixedFacts::default();
        let v4 = "TCP:18080:192.168.1.1:8080:0:the router\n\
                  TCP:18081:192.168.1.255:8080:0:broadcast\n\
                  TCP:18082:192.168.1.0:8080:0:network\n";
        let v6 = "6;fd00::;8080;;0;7;1700000600;IGD2 pinhole\n";
        let r = restore(
            &mut c,
            &lans(),
            Some(v4),
            Some(v6),
            0,
            1_700_000_000,
            &facts,
        );
        assert_eq!((r.mappings, r.pinholes), (0, 0));
        assert_eq!(r.off_lan.len(), 3);
        assert!(c.table().is_empty() && c.pinholes().is_empty());
    }

    /// A pinhole read back gets exactly the checks a new AddPinhole gets:
    /// pinholes switched on, the permission rules, the quotas.
    #[test]
    fn restored_pinholes_get_the_policy_of_a_new_request() {
        let facts = crate::core::facts::FixedFacts::default();
        let wall = 1_700_000_000;
        let v6 = "6;fd00::5;22;;0;7;1700000600;IGD2 pinhole\n\
                  6;fd00::5;8080;;0;8;1700000600;IGD2 pinhole\n\
                  6;fd00::5;8081;;0;9;1700000600;IGD2 pinhole\n";
        let with = |cfg: crate::config::Config| {
            let mut c = Core::new(
                crate::core::policy::Policy::from_config(&cfg, vec![]),
                crate::core::pinhole::PinPolicy::from_config(&cfg),
            );
            let r = restore(&mut c, &lans(), None, Some(v6), 0, wall, &facts);
            let ports: Vec<u16> = c.pinholes().iter().map(|p| p.iport).collect();
            (r.pinholes, ports)
        };
        // the default rules deny ports below 1024
        let cfg = crate::config::Config::default;
        assert_eq!(with(cfg()), (2, vec![8080, 8081]));
        // ipv6_pinholes '0': none at all
        let off = crate::config::Config {
            ipv6_pinholes: false,
            ..cfg()
        };
        assert_eq!(with(off), (0, vec![]));
        // the client's quota holds for what a restart brings back too
        let one = crate::config::Config {
            max_mappings_per_client: 1,
            ..cfg()
        };
        assert_eq!(with(one), (1, vec![8080]));
    }

    #[test]
    fn restore_revalidates_and_reports() {
        let mut c = core();
        let facts = crate::core::facts::FixedFacts::default();
        let wall = 1_700_000_000;
        let v4 = "TCP:18080:192.168.1.5:8080:0:kept\n\
                  TCP:18081:10.9.9.9:8080:0:off the LAN\n\
                  TCP:80:192.168.1.5:80:0:a denied port\n\
                  TCP:18082:192.168.1.5:8080:1600000000:ended\n\
                  garbage\n";
        let v6 = "6;fd00::5;8080;;0;7;1700000600;IGD2 pinhole\n";
        let r = restore(&mut c, &lans(), Some(v4), Some(v6), 0, wall, &facts);
        assert_eq!(r.mappings, 1);
        assert_eq!(r.pinholes, 1);
        assert_eq!(
            r.off_lan,
            vec![(Ipv4Addr::new(10, 9, 9, 9), 8080, NotInternal::OffLan)]
        );
        assert_eq!(r.bad_lines.len(), 1);
        assert_eq!(r.bad_lines[0].line, 5);
        assert_eq!(c.table().len(), 1);
        assert_eq!(c.pinholes().get(7).map(|p| p.iport), Some(8080));
        // settled: nothing is pending for the firewall, the events stay
        assert!(!c.is_dirty());
        let kinds: Vec<_> = c.take_events().iter().map(|e| e.kind).collect();
        use crate::core::EventKind::*;
        assert_eq!(kinds, [Add, Refuse, Add]);
    }

    /// A PCP pinhole keeps its origin, nonce and PEER flag across a
    /// restart; its line has the label miniupnpd writes.
    #[test]
    fn pcp_pinholes_round_trip_with_origin_and_nonce() {
        let pin = |origin, nonce, peer, remote: Option<&str>, rport| Pinhole {
            id: 9,
            remote: remote.map(|r| r.parse().unwrap()),
            rport,
            iaddr: "fd00::5".parse().unwrap(),
            iport: 8080,
            proto: 17,
            expires: 60_000,
            client: "fd00::5".parse().unwrap(),
            origin,
            nonce,
            peer,
        };
        let n = Some([0xab; 12]);
        for p in [
            pin(Origin::Pcp, n, false, None, 0),
            pin(Origin::Pcp, n, false, Some("2001:db8::9"), 443),
            pin(Origin::Pcp, n, true, Some("2001:db8::9"), 6000),
            pin(Origin::UpnpV2, None, false, None, 0),
        ] {
            let line = to_lease6(&p, 0, 1000).emit();
            let back = from_lease6(&Lease6::parse(&line).unwrap(), 0, 1000).unwrap();
            assert_eq!(back, p, "{line}");
        }
        let line = to_lease6(
            &pin(Origin::Pcp, n, true, Some("2001:db8::9"), 6000),
            0,
            1000,
        );
        assert_eq!(
            line.emit(),
            "UDP;fd00::5;8080;2001:db8::9;6000;9;1060;PCP PEER abababababababababababab"
        );
        // not ours: a bad nonce, a bad label, or a PEER without its peer
        for desc in [
            "PCP MAP abab",
            "PCP MAP abababababababababababab extra",
            "PCP GET abababababababababababab",
            "PCP PEER abababababababababababab",
        ] {
            let mut l = line.clone();
            l.desc = desc.into();
            l.remote = None;
            assert_eq!(from_lease6(&l, 0, 1000), None, "{desc}");
        }
    }

    /// A restart restores PCP pinholes under the current policy.
    #[test]
    fn pcp_pinholes_are_restored_under_the_current_policy() {
        let mut c = core();
        let facts = crate::core::facts::FixedFacts::default();
        let wall = 1_700_000_000;
        let v6 = "TCP;fd00::5;8080;;0;3;1700000600;PCP MAP 010101010101010101010101\n\
                  TCP;fd00::5;22;;0;4;1700000600;PCP MAP 010101010101010101010101\n\
                  UDP;fd00::5;5000;2001:db8::9;6000;5;1700000600;PCP PEER 020202020202020202020202\n";
        let r = restore(&mut c, &lans(), None, Some(v6), 0, wall, &facts);
        assert_eq!(r.pinholes, 2);
        let p = c.pinholes().get(3).unwrap();
        assert_eq!(
            (p.origin, p.nonce, p.peer),
            (Origin::Pcp, Some([1; 12]), false)
        );
        assert!(
            c.pinholes().get(4).is_none(),
            "port 22 is denied by the rules"
        );
        assert!(c.pinholes().get(5).unwrap().peer);
        // with pinholes switched off nothing comes back
        let cfg = crate::config::Config {
            ipv6_pinholes: false,
            ..crate::config::Config::default()
        };
        let mut off = Core::new(
            crate::core::policy::Policy::from_config(&cfg, vec![]),
            crate::core::pinhole::PinPolicy::from_config(&cfg),
        );
        let r = restore(&mut off, &lans(), None, Some(v6), 0, wall, &facts);
        assert_eq!(r.pinholes, 0);
    }
}
