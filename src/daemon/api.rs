//! The ubus side of the loop: the `rupnpd` object's methods and the
//! `rupnpd.mapping`, `rupnpd.pinhole` and `rupnpd.status` events.
//!
//! Owns: the method table and the shapes of what the methods return.

use std::collections::VecDeque;
use std::io;
use std::path::PathBuf;

use crate::config::{TOGGLES, Toggle};
use crate::core::firewall::{Counters, Firewall};
use crate::core::pinhole::Pinhole;
use crate::core::table::{Key, Mapping, Millis, Origin};
use crate::core::{Event, EventKind, Subject};
use crate::proto::Proto;
use crate::proto::blob::{BlobType, Value};
use crate::proto::ubus::Status;
use crate::proto::uci::SectionRef;
use crate::sys::ubus::{CallReply, Incoming, ObjectSpec};

use super::commit::Deferred;
use super::{Daemon, files};

/// The toggles a `set` call names, and their new values.
type Changes = Vec<(&'static Toggle, bool)>;

fn parse_toggles(args: &Value) -> Result<Changes, (Status, String)> {
    let invalid = |why: String| (Status::InvalidArgument, why);
    let names = || TOGGLES.map(|t| t.name).join(", ");
    let entries = args
        .as_table()
        .ok_or_else(|| invalid("set takes a table of toggles".into()))?;
    let mut changes: Changes = Vec::new();
    for (name, v) in entries {
        let toggle = Toggle::named(name)
            .ok_or_else(|| invalid(format!("unknown toggle {name:?}; allowed: {}", names())))?;
        let b = match v {
            Value::Bool(b) => *b,
            Value::Int32(0) | Value::Int64(0) | Value::Int16(0) => false,
            Value::Int32(1) | Value::Int64(1) | Value::Int16(1) => true,
            _ => {
                return Err(invalid(format!(
                    "{name} must be a boolean (true/false or 0/1)"
                )));
            }
        };
        changes.push((toggle, b));
    }
    if changes.is_empty() {
        return Err(invalid(format!("set needs at least one of: {}", names())));
    }
    Ok(changes)
}

/// A `set` call waiting for its write.
pub(super) struct Pending {
    changes: Changes,
    reply: CallReply,
}

/// Most `set` calls waiting for their writes; more fail at once.
const MAX_WRITES: usize = 8;

/// `set`'s writes of the `upnpd` package, one at a time on tokio's
/// blocking pool: uci's lock (tried for a few milliseconds) and the
/// fsyncs of a flash file system never hold the loop.
#[derive(Default)]
pub(super) struct UciWrites {
    running: Option<(tokio::task::JoinHandle<io::Result<()>>, Pending)>,
    waiting: VecDeque<(PathBuf, Pending)>,
}

impl UciWrites {
    /// Queues the write of `pending`'s toggles to `path`; gives it back
    /// when too many wait.
    fn write(&mut self, path: PathBuf, pending: Pending) -> Result<(), Pending> {
        if self.waiting.len() >= MAX_WRITES {
            return Err(pending);
        }
        self.waiting.push_back((path, pending));
        self.start_next();
        Ok(())
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        let Some((path, pending)) = self.waiting.pop_front() else {
            return;
        };
        // one write for every option: all stored, or none
        let opts: Vec<(&'static str, &'static str)> = pending
            .changes
            .iter()
            .map(|(t, b)| (t.name, if *b { "1" } else { "0" }))
            .collect();
        let job = tokio::task::spawn_blocking(move || {
            let section = SectionRef::Indexed {
                stype: "upnpd".into(),
                index: 0,
            };
            crate::sys::uci::set_options_atomic(&path, &section, &opts)
        });
        self.running = Some((job, pending));
    }

    /// The next write to finish, with its call; never resolves while none
    /// runs. Cancel-safe: a finished write is taken only when this
    /// resolves.
    pub(super) async fn done(&mut self) -> (io::Result<()>, Pending) {
        let Some((job, _)) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let r = job.await.unwrap_or_else(|e| Err(io::Error::other(e)));
        let Some((_, pending)) = self.running.take() else {
            return std::future::pending().await;
        };
        self.start_next();
        (r, pending)
    }
}

/// The object and its method signatures (what `ubus -v list rupnpd` shows).
pub fn object_spec() -> ObjectSpec {
    let m = |name: &str, args: &[(&str, BlobType)]| {
        (
            name.to_string(),
            args.iter().map(|(a, t)| (a.to_string(), *t)).collect(),
        )
    };
    let toggles: Vec<(&str, BlobType)> = TOGGLES.iter().map(|t| (t.name, BlobType::BOOL)).collect();
    ObjectSpec {
        name: "rupnpd".into(),
        methods: vec![
            m("status", &[]),
            m("list", &[]),
            m(
                "delete",
                &[
                    ("proto", BlobType::String),
                    ("external_port", BlobType::Int32),
                ],
            ),
            m("flush", &[]),
            m("set", &toggles),
            m("reload", &[]),
        ],
    }
}

/// One mapping as `list` and the `rupnpd.mapping` event show it.
pub fn mapping_value(m: &Mapping, now: Millis, c: Counters) -> Value {
    Value::table()
        .with("proto", m.key.proto.as_str())
        .with("external_port", u32::from(m.key.eport))
        .with("internal_ip", m.iaddr.to_string())
        .with("internal_port", u32::from(m.iport))
        .with(
            "remote_host",
            m.remote
                .map(|r| {
                    if r.prefix >= 32 {
                        r.addr.to_string()
                    } else {
                        format!("{}/{}", r.addr, r.prefix)
                    }
                })
                .unwrap_or_default(),
        )
        .with("description", m.public_desc())
        .with("origin", m.origin.as_str())
        .with("client", m.client.to_string())
        .with("expires", m.remaining_secs(now).unwrap_or(0))
        .with("packets", c.packets)
        .with("bytes", c.bytes)
}

/// One pinhole as `list` and the `rupnpd.pinhole` event show it.
pub fn pinhole_value(p: &Pinhole, now: Millis, c: Counters) -> Value {
    Value::table()
        .with("id", u32::from(p.id))
        .with("proto", u32::from(p.proto))
        .with(
            "remote_host",
            p.remote.map(|a| a.to_string()).unwrap_or_default(),
        )
        .with("remote_port", u32::from(p.rport))
        .with("internal_ip", p.iaddr.to_string())
        .with("internal_port", u32::from(p.iport))
        .with("origin", p.origin.as_str())
        .with("peer", p.peer)
        .with("client", p.client.to_string())
        .with("expires", p.remaining_secs(now))
        .with("packets", c.packets)
        .with("bytes", c.bytes)
}

impl Daemon {
    /// One message from the ubus connection.
    pub(super) async fn on_ubus(&mut self, m: Incoming) {
        match m {
            Incoming::Call {
                method,
                args,
                reply,
            } => self.on_call(&method, &args, reply).await,
            Incoming::Notify { object, kind, data } => {
                log::debug!("ubus: {kind} from {object}");
                self.on_interface(&object, &kind, &data);
            }
            Incoming::Connected => {
                log::info!("ubus: connected; object rupnpd registered");
                self.netifd_query();
            }
            Incoming::Disconnected => log::warn!("ubus: connection lost; reconnecting"),
            Incoming::Event { name, data } => {
                // `ubus.object.add`, the one event the daemon listens to
                if let Some(path) = data.get("path").and_then(Value::as_str) {
                    log::debug!("ubus: {name} {path}");
                    self.on_ubus_object(path);
                }
            }
        }
    }

    async fn on_call(&mut self, method: &str, args: &Value, reply: CallReply) {
        match method {
            "status" => reply.reply(Ok(self.status_value())),
            "list" => reply.reply(Ok(self.list_value())),
            "delete" => {
                let proto = args
                    .get("proto")
                    .and_then(Value::as_str)
                    .and_then(Proto::from_upnp);
                let port = args
                    .get("external_port")
                    .and_then(Value::as_u32)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0);
                let (Some(proto), Some(port)) = (proto, port) else {
                    reply.fail(
                        Status::InvalidArgument,
                        "delete needs proto (\"TCP\" or \"UDP\") and external_port (1-65535)",
                    );
                    return;
                };
                let key = Key::new(proto, port);
                if self
                    .core
                    .remove(&key, EventKind::Delete, "deleted through ubus")
                    .is_none()
                {
                    reply.fail(
                        Status::NotFound,
                        &format!("no {} mapping on external port {port}", proto.as_str()),
                    );
                    return;
                }
                self.deferred.push(Deferred::Ubus {
                    reply,
                    ok: Value::table(),
                    changed: true,
                });
            }
            "flush" => {
                let n = self.core.flush("flushed through ubus");
                let pins = self.core.flush_pinholes("flushed through ubus");
                self.deferred.push(Deferred::Ubus {
                    reply,
                    ok: Value::table()
                        .with("deleted", n as u32)
                        .with("pinholes", pins as u32),
                    changed: n + pins > 0,
                });
            }
            "set" => self.set_toggles(args, reply),
            "reload" => match self.reload().await {
                Ok(()) => self.deferred.push(Deferred::Ubus {
                    reply,
                    ok: Value::table(),
                    changed: true,
                }),
                Err(errors) => reply.fail(
                    Status::InvalidArgument,
                    &format!(
                        "configuration refused, the running one is kept: {}",
                        errors.join("; ")
                    ),
                ),
            },
            _ => reply.reply(Err(Status::MethodNotFound)),
        }
    }

    /// `set`: live toggles, persisted to UCI so LuCI and `uci get`
    /// agree, then applied. The write (uci's lock, a temporary file,
    /// fsync, rename) runs off the loop ([`UciWrites`]); the call is
    /// answered when it is done.
    fn set_toggles(&mut self, args: &Value, reply: CallReply) {
        let changes = match parse_toggles(args) {
            Ok(c) => c,
            Err((s, why)) => return reply.fail(s, &why),
        };
        // Persist first: a toggle that cannot be stored would be undone by
        // the next reload.
        let dirs = files::uci_dirs(&self.opts);
        match dirs.path("upnpd") {
            Ok(path) if path.exists() => {
                if let Err(pending) = self.uci.write(path, Pending { changes, reply }) {
                    pending.reply.fail(
                        Status::SystemError,
                        "too many set calls waiting for their writes",
                    );
                }
            }
            Ok(path) => {
                log::warn!(
                    "set: {} does not exist; the change lasts until the daemon stops",
                    path.display()
                );
                self.apply_toggles(Pending { changes, reply });
            }
            Err(e) => {
                log::error!("set: {e}");
                reply.fail(
                    Status::SystemError,
                    &format!("finding the configuration: {e}"),
                );
            }
        }
    }

    /// A `set`'s write is done: on success the toggles apply (and the
    /// call is answered at the end of the turn), else the call fails.
    pub(super) fn on_uci_written(&mut self, (result, pending): (io::Result<()>, Pending)) {
        match result {
            Ok(()) => self.apply_toggles(pending),
            Err(e) => {
                log::error!("set: {e}");
                pending
                    .reply
                    .fail(Status::SystemError, &format!("storing the toggles: {e}"));
            }
        }
    }

    fn apply_toggles(&mut self, Pending { changes, reply }: Pending) {
        let mut cfg = self.cfg.clone();
        for (t, b) in &changes {
            t.set(&mut cfg, *b);
        }
        let what: Vec<String> = changes
            .iter()
            .map(|(t, b)| format!("{}={}", t.name, u8::from(*b)))
            .collect();
        log::info!("set through ubus: {}", what.join(" "));
        self.apply_config(cfg);
        self.send_status_event("set");
        // Answered at the end of the turn, once the firewall and the
        // front ends have followed the change.
        self.deferred.push(Deferred::Ubus {
            reply,
            ok: Value::table(),
            changed: true,
        });
    }

    pub(super) fn status_value(&self) -> Value {
        let ext = self.wan.external_ip();
        let t = self.core.table();
        let count = |o| t.count_by_origin(o) as u32;
        let mappings = Value::table()
            .with("total", t.len() as u32)
            .with("tcp", self.core.count_proto(Proto::Tcp) as u32)
            .with("udp", self.core.count_proto(Proto::Udp) as u32)
            .with("upnp", count(Origin::UpnpV1) + count(Origin::UpnpV2))
            .with("natpmp", count(Origin::NatPmp))
            .with("pcp", count(Origin::Pcp))
            .with("pinholes", self.core.pinholes().len() as u32);
        let lans: Vec<Value> = self
            .lans
            .iter()
            .map(|l| Value::from(l.dev.as_str()))
            .collect();
        let closed = self.wan.closed();
        let v = TOGGLES
            .iter()
            .fold(Value::table(), |v, t| v.with(t.name, t.get(&self.cfg)))
            .with(
                "external_ip",
                ext.map(|a| a.to_string()).unwrap_or_default(),
            )
            .with("external_ip_private", self.wan.external_is_private())
            .with(
                "wan_ip",
                self.wan
                    .link_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            )
            .with(
                "new_mappings",
                if closed.is_some() {
                    "refused"
                } else {
                    "allowed"
                },
            )
            .with(
                "new_mappings_reason",
                closed.map(|c| c.explain()).unwrap_or_default(),
            )
            .with("wan_up", self.wan.connected())
            .with(
                "wan_device",
                self.wan.link().dev.clone().unwrap_or_default(),
            )
            .with("lan_devices", Value::Array(lans))
            .with(
                "hairpin_self",
                self.cfg.hairpin && self.hairpin_self.is_none(),
            )
            .with(
                "hairpin_self_reason",
                match &self.hairpin_self {
                    Some(b) => b.explain(),
                    None if !self.cfg.hairpin => "hairpin is off".into(),
                    None => String::new(),
                },
            )
            .with("firewall", self.firewall_state())
            .with("uptime", (self.now() / 1000) as u32)
            .with("mappings", mappings)
            .with("subscribers", self.web.subscribers() as u32)
            .with("version", crate::VERSION);
        if self.cfg.use_stun {
            v.with("stun", self.stun.status_value(self.now()))
        } else {
            v
        }
    }

    /// `fw4` (its hooks lead to our chains), `own` (no fw4: our own
    /// hooks) or `down` (fw4 stopped: mappings kept, new ones refused).
    fn firewall_state(&self) -> &'static str {
        if self.nft.stopped() {
            "down"
        } else if self.nft.owns_hooks() {
            "own"
        } else {
            "fw4"
        }
    }

    fn list_value(&mut self) -> Value {
        let now = self.now();
        let counters = self.nft.counters();
        let pins: Vec<&Pinhole> = self.core.pinholes().iter().collect();
        let pin_counters = self.nft.all_pinhole_counters(&pins);
        let maps: Vec<Value> = self
            .core
            .table()
            .iter()
            .map(|m| mapping_value(m, now, counters.get(&m.key).copied().unwrap_or_default()))
            .collect();
        let pins: Vec<Value> = pins
            .iter()
            .map(|p| pinhole_value(p, now, pin_counters.get(&p.id).copied().unwrap_or_default()))
            .collect();
        Value::table()
            .with("mappings", Value::Array(maps))
            .with("pinholes", Value::Array(pins))
    }

    /// `rupnpd.mapping` and `rupnpd.pinhole` for every committed change
    /// and refusal.
    pub(super) fn send_events(&self, events: &[Event], now: Millis) {
        let Some(u) = &self.ubus else {
            return;
        };
        for ev in events {
            let (name, v) = match &ev.subject {
                Subject::Mapping(m) => {
                    ("rupnpd.mapping", mapping_value(m, now, Counters::default()))
                }
                Subject::Pinhole(p) => {
                    ("rupnpd.pinhole", pinhole_value(p, now, Counters::default()))
                }
            };
            let v = v
                .with("action", ev.kind.as_str())
                .with("reason", ev.reason.as_str());
            u.send_event(name, v);
        }
    }

    /// `rupnpd.status` after a toggle, a WAN change or the firewall
    /// stopping or starting.
    pub(super) fn send_status_event(&self, why: &str) {
        if let Some(u) = &self.ubus {
            u.send_event("rupnpd.status", self.status_value().with("reason", why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_object_has_every_method() {
        let spec = object_spec();
        let names: Vec<&str> = spec.methods.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["status", "list", "delete", "flush", "set", "reload"]
        );
        assert_eq!(spec.methods[4].1.len(), 7);
    }
}
