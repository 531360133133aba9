//! A stand-in for netifd's ubus side that says exactly what netifd says:
//! the payloads of tests/fixtures/netifd (their README tells where each
//! field comes from). It publishes `network.interface` and one
//! `network.interface.<name>` per interface, answers `status` and `dump`
//! as netifd does, and sends `interface.update` / `interface.down` to the
//! subscribers of both objects, as `netifd_ubus_interface_notify` does.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::ubusd::Peer;
use super::wire::{Value, json};

/// UBUS_STATUS_INVALID_ARGUMENT, UBUS_STATUS_METHOD_NOT_FOUND,
/// UBUS_STATUS_NOT_FOUND.
const INVALID_ARGUMENT: u32 = 2;
const METHOD_NOT_FOUND: u32 = 3;
const NOT_FOUND: u32 = 4;

/// A payload from tests/fixtures/netifd (`name` without `.json`).
pub fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/netifd")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    json(&text)
}

/// What netifd notifies: `interface` first, then the whole status.
pub fn notification(name: &str, status: &Value) -> Value {
    let mut v = Value::table().with("interface", name);
    for (k, x) in status.as_table().expect("a status table") {
        v.push(k, x.clone());
    }
    v
}

/// The status inside a notification (everything but `interface`).
pub fn status_of(notification: &Value) -> Value {
    let mut v = Value::table();
    for (k, x) in notification.as_table().expect("a notification table") {
        if k != "interface" {
            v.push(k, x.clone());
        }
    }
    v
}

/// `status` with every string mentioning address `old` (the address
/// itself, a route's `old/32` source) mentioning `new` instead: what a
/// DHCP lease with a new address changes.
pub fn renumbered(status: &Value, old: &str, new: &str) -> Value {
    match status {
        Value::Table(t) => Value::Table(
            t.iter()
                .map(|(k, v)| (k.clone(), renumbered(v, old, new)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| renumbered(v, old, new)).collect()),
        Value::Str(s) if s == old || s.starts_with(&format!("{old}/")) => {
            Value::Str(s.replacen(old, new, 1))
        }
        other => other.clone(),
    }
}

/// The methods netifd's interface objects have, with their policies as a
/// `ubus -v list` shows them (a type number per argument).
fn signature(per_interface: bool) -> Value {
    let mut sig = Value::table();
    for m in [
        "up",
        "down",
        "renew",
        "status",
        "prepare",
        "dump",
        "add_device",
        "remove_device",
        "notify_proto",
        "remove",
        "set_data",
    ] {
        let policy = if per_interface {
            if m.ends_with("_device") {
                json(r#"{"name": 3, "link-ext": 7}"#)
            } else {
                Value::table()
            }
        } else if m == "dump" {
            Value::table()
        } else {
            json(r#"{"interface": 3}"#)
        };
        sig.push(m, policy);
    }
    sig
}

type Statuses = Arc<Mutex<BTreeMap<String, Value>>>;
type Counts = Arc<Mutex<BTreeMap<String, usize>>>;

/// The stand-in: one ubus client owning netifd's objects.
pub struct Netifd {
    peer: Peer,
    root: u32,
    objects: BTreeMap<String, u32>,
    statuses: Statuses,
    asked: Counts,
}

impl Netifd {
    /// Connects to the broker at `sock` and publishes `network.interface`
    /// and the objects of `interfaces` (name, status). It answers from a
    /// thread of its own, as netifd is a process of its own: a test that
    /// blocks (waiting for the daemon to serve) does not silence it.
    pub async fn start(sock: &Path, interfaces: &[(&str, Value)]) -> Netifd {
        let peer = Peer::connect_detached(sock).await;
        let statuses: Statuses = Arc::default();
        let asked: Counts = Arc::default();
        let all = statuses.clone();
        let counts = asked.clone();
        let root = peer
            .publish_serving(
                "network.interface",
                signature(false),
                move |method, args| {
                    let all = all.lock().unwrap();
                    if method == "dump" {
                        let list = all
                            .iter()
                            .map(|(name, st)| notification(name, st))
                            .collect();
                        return Ok(Value::table().with("interface", Value::Array(list)));
                    }
                    let name = args
                        .get("interface")
                        .and_then(Value::as_str)
                        .ok_or(INVALID_ARGUMENT)?;
                    let st = all.get(name).ok_or(NOT_FOUND)?;
                    match method {
                        "status" => {
                            *counts.lock().unwrap().entry(name.to_string()).or_default() += 1;
                            Ok(st.clone())
                        }
                        _ => Err(METHOD_NOT_FOUND),
                    }
                },
            )
            .await;
        let mut n = Netifd {
            peer,
            root,
            objects: BTreeMap::new(),
            statuses,
            asked,
        };
        for (name, status) in interfaces {
            n.add(name, status.clone()).await;
        }
        n
    }

    /// A new interface appears (`network.interface.<name>` is published).
    pub async fn add(&mut self, name: &str, status: Value) {
        self.statuses
            .lock()
            .unwrap()
            .insert(name.to_string(), status);
        let path = format!("network.interface.{name}");
        let statuses = self.statuses.clone();
        let counts = self.asked.clone();
        let me = name.to_string();
        let id = self
            .peer
            .publish_serving(&path, signature(true), move |method, _| match method {
                "status" => {
                    *counts.lock().unwrap().entry(me.clone()).or_default() += 1;
                    Ok(statuses.lock().unwrap()[&me].clone())
                }
                _ => Err(METHOD_NOT_FOUND),
            })
            .await;
        self.objects.insert(name.to_string(), id);
    }

    /// How many times the status of interface `name` was asked for.
    pub fn asked(&self, name: &str) -> usize {
        self.asked.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// The interface's status changes to `status` by any event but going
    /// down (up, new addresses or routes, link up), and netifd says so
    /// with `interface.update`. Returns the subscribers it reached.
    pub async fn update(&self, name: &str, status: Value) -> Vec<u32> {
        self.send("interface.update", notification(name, &status))
            .await
    }

    /// Sends `payload` (a notification fixture) as notification `kind`
    /// of the interface it names, whose status becomes the one in it, to
    /// the subscribers of `network.interface` and of
    /// `network.interface.<name>`. Returns the subscribers it reached.
    pub async fn send(&self, kind: &str, payload: Value) -> Vec<u32> {
        let name = payload
            .get("interface")
            .and_then(Value::as_str)
            .expect("a notification names its interface")
            .to_string();
        self.statuses
            .lock()
            .unwrap()
            .insert(name.clone(), status_of(&payload));
        let mut reached = self.peer.notify(self.root, kind, payload.clone()).await;
        reached.extend(self.peer.notify(self.objects[&name], kind, payload).await);
        reached.sort_unstable();
        reached.dedup();
        reached
    }
}
