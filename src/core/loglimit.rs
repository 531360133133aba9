//! How many lines of one kind (refused requests) reach the log at the
//! level a person reads: a few per client and a bounded number in all
//! per window; the rest go at debug level, and one summary line per
//! window says what was left out and whose it mostly was.
//!
//! Owns: [`LogLimit`]. Pure: `now` is passed in, and the daemon writes
//! the lines.

use std::collections::HashMap;

use crate::core::policy::ClientKey;
use crate::core::table::Millis;

/// The window lines are counted in.
pub const WINDOW: Millis = 60_000;
/// Lines one client gets per window.
pub const PER_CLIENT: u32 = 5;
/// Lines all clients get per window.
pub const IN_ALL: u32 = 20;
/// Clients counted one by one per window; lines of further clients are
/// counted only in all (a host cycling through forged addresses cannot
/// grow the map).
pub const MAX_CLIENTS: usize = 256;

/// Lines written and left out for one client in the current window.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    written: u32,
    left_out: u32,
}

/// The limit of one kind of line.
#[derive(Debug)]
pub struct LogLimit {
    /// What the lines are about, for the summary ("refused requests").
    what: &'static str,
    /// When the current window began; `None` before the first line.
    start: Option<Millis>,
    clients: HashMap<ClientKey, Count>,
    written: u32,
    left_out: u32,
}

impl LogLimit {
    pub fn new(what: &'static str) -> LogLimit {
        LogLimit {
            what,
            start: None,
            clients: HashMap::new(),
            written: 0,
            left_out: 0,
        }
    }

    /// Whether a line about `client` is written at `now` (else it goes at
    /// debug level). Ends the previous window first: its summary, if any
    /// line was left out, is returned to be written before this line.
    pub fn admit(&mut self, client: ClientKey, now: Millis) -> (bool, Option<String>) {
        let summary = self.summary(now, false);
        self.start.get_or_insert(now);
        let tracked = self.clients.len() < MAX_CLIENTS || self.clients.contains_key(&client);
        let mut count = self.clients.get(&client).copied().unwrap_or_default();
        let write = tracked && count.written < PER_CLIENT && self.written < IN_ALL;
        if write {
            count.written += 1;
            self.written += 1;
        } else {
            count.left_out = count.left_out.saturating_add(1);
            self.left_out = self.left_out.saturating_add(1);
        }
        if tracked {
            self.clients.insert(client, count);
        }
        (write, summary)
    }

    /// The summary of the window, if it has ended by `now` (or at once,
    /// with `force`: the daemon stops) and left lines out; the next line
    /// starts a new window.
    pub fn summary(&mut self, now: Millis, force: bool) -> Option<String> {
        let start = self.start?;
        let secs = now.saturating_sub(start) / 1000;
        if now < start.saturating_add(WINDOW) && !force {
            return None;
        }
        let most = self
            .clients
            .iter()
            .filter(|(_, c)| c.left_out > 0)
            .max_by_key(|(k, c)| (c.left_out, std::cmp::Reverse(**k)))
            .map(|(k, c)| (*k, c.left_out));
        let clients = self.clients.values().filter(|c| c.left_out > 0).count();
        let line = (self.left_out > 0).then(|| {
            let mut s = format!(
                "suppressed {} log lines of {} in the last {secs} s, from {clients} client(s)",
                self.left_out, self.what
            );
            if let Some((k, n)) = most {
                s.push_str(&format!(" (most from {k}: {n})"));
            }
            s.push_str("; they are logged at debug level");
            s
        });
        *self = LogLimit::new(self.what);
        line
    }

    /// When the current window's summary is due, if lines were left out.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.start
            .filter(|_| self.left_out > 0)
            .map(|s| s.saturating_add(WINDOW))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn c(d: u8) -> ClientKey {
        ClientKey::V4(Ipv4Addr::new(192, 168, 1, d))
    }

    #[test]
    fn a_few_lines_per_client_and_a_summary_per_window() {
        let mut l = LogLimit::new("refused requests");
        let written = (0..50).filter(|_| l.admit(c(2), 1_000).0).count();
        assert_eq!(written, PER_CLIENT as usize);
        // another client is not silenced by the first
        assert_eq!(l.admit(c(3), 2_000), (true, None));
        assert_eq!(l.next_deadline(), Some(1_000 + WINDOW));
        assert_eq!(l.summary(WINDOW, false), None);
        // the next line after the window carries the summary
        let (write, summary) = l.admit(c(2), 1_000 + WINDOW);
        assert!(write);
        assert_eq!(
            summary.as_deref(),
            Some(
                "suppressed 45 log lines of refused requests in the last 60 s, from 1 client(s) \
                 (most from 192.168.1.2: 45); they are logged at debug level"
            )
        );
        assert_eq!(l.next_deadline(), None);
        // at stop, whatever was left out is reported at once
        for _ in 0..10 {
            l.admit(c(2), 70_000);
        }
        let s = l.summary(70_500, true).unwrap();
        assert!(s.starts_with("suppressed 6 log lines"), "{s}");
        assert_eq!(l.summary(70_600, true), None);
    }

    #[test]
    fn many_clients_are_bounded_in_all() {
        let mut l = LogLimit::new("refused requests");
        let mut written = 0;
        for i in 0..2_000u32 {
            let k = ClientKey::V4(Ipv4Addr::from(0x0a00_0000 + i));
            written += usize::from(l.admit(k, 0).0);
        }
        assert_eq!(written, IN_ALL as usize);
        assert!(l.clients.len() <= MAX_CLIENTS);
        let s = l.summary(0, true).unwrap();
        assert!(s.starts_with("suppressed 1980 log lines"), "{s}");
    }
}
