//! The end of a loop turn: the core's changes go to the firewall as one
//! transaction (through [`crate::core::Core::commit_turn`]); then the lease
//! files, then the replies that waited for it, then the log lines and the
//! ubus events.
//!
//! Owns: [`Deferred`] replies and the log line of each event.

use std::net::SocketAddr;
use std::rc::Rc;

use tokio::net::UdpSocket;

use crate::core::natpmp_pcp;
use crate::core::pinhole::Pinhole;
use crate::core::policy::ClientKey;
use crate::core::table::{Mapping, Millis};
use crate::core::web::{self, Site};
use crate::core::{Event, EventKind, Outcome, Subject};
use crate::proto::blob::Value;
use crate::sys::ubus::CallReply;

use super::Daemon;

/// A reply waiting for the turn's firewall transaction.
pub(super) enum Deferred {
    Http {
        tx: crate::sys::http::Reply,
        reply: web::Reply,
    },
    Udp {
        sock: Rc<UdpSocket>,
        to: SocketAddr,
        reply: natpmp_pcp::Reply,
    },
    Ubus {
        reply: CallReply,
        ok: Value,
        /// The call changed the table: a refused turn fails it.
        changed: bool,
    },
}

impl Deferred {
    /// Sends the reply, or its failure form if the turn was refused and
    /// the request changed something (only those are rolled back).
    fn send(self, refused: bool) {
        match self {
            Deferred::Http { tx, reply } => {
                tx.send(reply.send(refused));
            }
            Deferred::Udp { sock, to, reply } => {
                let bytes = match (refused, reply.on_failure) {
                    (true, Some(f)) => f,
                    _ => reply.ok,
                };
                let _ = sock.try_send_to(&bytes, to);
            }
            Deferred::Ubus { reply, ok, changed } => reply.reply(if refused && changed {
                Err(crate::proto::ubus::Status::SystemError)
            } else {
                Ok(ok)
            }),
        }
    }
}

impl Daemon {
    /// Ends a loop turn: one firewall transaction for everything the turn
    /// changed, then the lease files, then the log lines, then the
    /// replies, then the ubus events.
    pub(super) fn commit(&mut self) {
        let now = self.now();
        let turn = self.core.commit_turn(&mut self.nft, now);
        match &turn.outcome {
            Outcome::Unchanged | Outcome::Installed => {}
            Outcome::Repaired { error } | Outcome::Refused { error, .. } => {
                log::warn!("firewall transaction failed ({error}); reinstalling every mapping")
            }
        }
        if let Outcome::Refused { repair, resync, .. } = &turn.outcome {
            log::error!("firewall transaction failed ({repair}); refusing this turn's changes");
            if let Err(e) = resync {
                log::error!("firewall resynchronisation failed: {e}");
            }
        }
        if turn.installed() {
            // Before any reply: a mapping a client was told about must
            // survive a kill -9 right after.
            self.write_leases(Some((&turn.changes, turn.pins_changed)));
        }
        self.sync_leases();
        // The log lines before the replies: a client that has its answer
        // finds the event logged (each line is one non-blocking write).
        for ev in &turn.events {
            self.log_event(ev, now);
        }
        let refused = turn.refused();
        for d in self.deferred.drain(..) {
            d.send(refused);
        }
        self.send_events(&turn.events, now);
        let site = Site {
            device: &self.device,
            lans: &self.lans,
            wan: &self.wan,
        };
        self.web.track_evented(&self.core, site);
    }
}

impl Daemon {
    /// One log line per event: what, which ports or pinhole, whose, why.
    /// Refusals are warnings within [`crate::core::loglimit::LogLimit`]'s bounds per client and
    /// in all (beyond them, debug lines and a summary); renewals, which a
    /// client repeats all day, are debug lines.
    pub(super) fn log_event(&mut self, ev: &Event, now: Millis) {
        let (line, client) = match &ev.subject {
            Subject::Mapping(m) => (mapping_line(ev, m, now), ClientKey::V4(m.client)),
            Subject::Pinhole(p) => (pinhole_line(ev, p, now), ClientKey::of(p.client)),
        };
        match ev.kind {
            EventKind::Refuse => {
                let (write, summary) = self.refusals.admit(client, now);
                if let Some(s) = summary {
                    log::warn!("{s}");
                }
                if write {
                    log::warn!("{line}");
                } else {
                    log::debug!("{line}");
                }
            }
            EventKind::Renew => log::debug!("{line}"),
            EventKind::Add | EventKind::Delete | EventKind::Expire => log::info!("{line}"),
        }
    }

    /// The refusal summary, when its window has ended (`stopping`: at
    /// once).
    pub(super) fn log_refusal_summary(&mut self, now: Millis, stopping: bool) {
        if let Some(s) = self.refusals.summary(now, stopping) {
            log::warn!("{s}");
        }
    }
}

fn mapping_line(ev: &Event, m: &Mapping, now: Millis) -> String {
    let lease = match m.remaining_secs(now) {
        Some(s) => format!("{s}s"),
        None => "permanent".into(),
    };
    let remote = m
        .remote
        .map(|r| format!(" from {}/{}", r.addr, r.prefix))
        .unwrap_or_default();
    format!(
        "{} {} {}{} -> {}:{} lease {} client {} origin {} desc \"{}\": {}",
        ev.kind.as_str(),
        m.key.proto,
        m.key.eport,
        remote,
        m.iaddr,
        m.iport,
        lease,
        m.client,
        m.origin.as_str(),
        m.desc,
        ev.reason
    )
}

fn pinhole_line(ev: &Event, p: &Pinhole, now: Millis) -> String {
    let remote = match (p.remote, p.rport) {
        (None, 0) => "any".to_string(),
        (r, port) => format!(
            "[{}]:{port}",
            r.map(|a| a.to_string()).unwrap_or_else(|| "any".into())
        ),
    };
    format!(
        "{} pinhole {} proto {} from {remote} to [{}]:{} lease {}s client {} origin {}{}: {}",
        ev.kind.as_str(),
        p.id,
        p.proto,
        p.iaddr,
        p.iport,
        p.remaining_secs(now),
        p.client,
        p.origin.as_str(),
        if p.peer { " (PEER)" } else { "" },
        ev.reason
    )
}
