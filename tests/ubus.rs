//! The ubus client against a broker over a real unix socket: publishing,
//! serving calls, events, subscriptions, reconnection, and hostile bytes.

mod support;

use std::path::Path;
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::Duration;

use rupnpd::proto::blob::{BlobType, Value};
use rupnpd::proto::ubus::{Status, UBUS_MAX_MSGLEN};
use rupnpd::sys::netifd;
use rupnpd::sys::ubus::{self, Handle, Incoming, ObjectSpec, Options};
use support::ubusd::{Broker, Peer, socket_path};
use support::wire::{self, Attr, Msg, json, kind, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc::Receiver;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// The daemon library's value for a test-side one: the two codecs share no
/// code, so values cross between them field by field.
fn lib(v: &wire::Value) -> Value {
    match v {
        wire::Value::Table(t) => Value::Table(t.iter().map(|(n, x)| (n.clone(), lib(x))).collect()),
        wire::Value::Array(a) => Value::Array(a.iter().map(lib).collect()),
        wire::Value::Str(s) => Value::String(s.clone()),
        wire::Value::I64(x) => Value::Int64(*x),
        wire::Value::I32(x) => Value::Int32(*x),
        wire::Value::I16(x) => Value::Int16(*x),
        wire::Value::I8(x) => Value::Bool(*x != 0),
        wire::Value::Double(x) => Value::Double(*x),
        wire::Value::Null => Value::Unspec,
    }
}

fn empty() -> wire::Value {
    wire::Value::table()
}

// ---------------------------------------------------------------------------
// Warnings per test thread: each #[tokio::test] runs the client task on its
// own thread, so a test counts only its own records.

static RECORDS: Mutex<Vec<(ThreadId, log::Level, String)>> = Mutex::new(Vec::new());

struct Recorder;

impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        RECORDS
            .lock()
            .unwrap()
            .push((std::thread::current().id(), record.level(), line));
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder;

fn init_log() {
    let _ = log::set_logger(&RECORDER);
    log::set_max_level(log::LevelFilter::Debug);
}

fn warnings_here() -> Vec<String> {
    let me = std::thread::current().id();
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|(t, l, _)| *t == me && *l == log::Level::Warn)
        .map(|(_, _, m)| m.clone())
        .collect()
}

// ---------------------------------------------------------------------------

fn spec() -> ObjectSpec {
    ObjectSpec {
        name: "rupnpd".into(),
        methods: vec![
            ("status".into(), vec![]),
            (
                "add".into(),
                vec![
                    ("port".into(), BlobType::Int32),
                    ("proto".into(), BlobType::String),
                    ("enabled".into(), BlobType::BOOL),
                ],
            ),
        ],
    }
}

fn opts(path: &Path) -> Options {
    Options {
        socket: Some(path.to_owned()),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        call_timeout: Duration::from_secs(2),
        serve_timeout: Duration::from_millis(300),
    }
}

async fn next(rx: &mut Receiver<Incoming>) -> Incoming {
    timeout(WAIT, rx.recv())
        .await
        .expect("nothing from the ubus task")
        .expect("ubus task ended")
}

async fn connected(path: &Path) -> (Handle, Receiver<Incoming>) {
    let (h, mut rx) = ubus::spawn_with(opts(path), spec());
    assert!(matches!(next(&mut rx).await, Incoming::Connected));
    (h, rx)
}

/// Acts as the daemon for one call: checks it and answers with `result`.
async fn answer_one(
    rx: &mut Receiver<Incoming>,
    expect_method: &str,
    result: impl FnOnce(&Value) -> Result<Value, Status>,
) {
    match next(rx).await {
        Incoming::Call {
            method,
            args,
            reply,
        } => {
            assert_eq!(method, expect_method);
            let r = result(&args);
            reply.reply(r);
        }
        other => panic!("expected a call, got {other:?}"),
    }
}

#[tokio::test]
async fn object_is_visible_with_its_signature() {
    let path = socket_path("lookup");
    let _broker = Broker::start(&path);
    let (_h, _rx) = connected(&path).await;
    let peer = Peer::connect(&path).await;
    let found = peer.lookup("rupnpd").await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].objpath(), Some("rupnpd"));
    // Argument types as blobmsg type numbers: INT32 5, STRING 3, INT8 7.
    assert_eq!(
        found[0].signature(),
        Some(&json(
            r#"{"status":{},"add":{"port":5,"proto":3,"enabled":7}}"#
        ))
    );
    // A prefix lookup finds it too; a wrong name does not.
    assert_eq!(peer.lookup("rup*").await.unwrap().len(), 1);
    assert_eq!(peer.lookup("rupnp").await, Err(status::NOT_FOUND));
}

#[tokio::test]
async fn call_with_arguments_is_answered_with_a_table() {
    let path = socket_path("call");
    let _broker = Broker::start(&path);
    let (_h, mut rx) = connected(&path).await;
    let peer = Peer::connect(&path).await;
    let args = json(r#"{"port": 8080, "proto": "TCP", "enabled": true}"#);
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "add", args),
        answer_one(&mut rx, "add", |args| {
            assert_eq!(args.get("port").and_then(Value::as_u32), Some(8080));
            assert_eq!(args.get("proto").and_then(Value::as_str), Some("TCP"));
            assert_eq!(args.get("enabled").and_then(Value::as_bool), Some(true));
            Ok(Value::table().with("ok", true).with("port", 8080u32))
        })
    );
    assert_eq!(got, Ok(vec![json(r#"{"ok": true, "port": 8080}"#)]));
}

#[tokio::test]
async fn errors_come_back_as_status() {
    let path = socket_path("errors");
    let _broker = Broker::start(&path);
    let (_h, mut rx) = connected(&path).await;
    let peer = Peer::connect(&path).await;

    // The daemon refuses.
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "add", json(r#"{"port": 0}"#)),
        answer_one(&mut rx, "add", |_| Err(Status::InvalidArgument))
    );
    assert_eq!(got, Err(status::INVALID_ARGUMENT));

    // A method the object does not have never reaches the daemon.
    let got = peer.call("rupnpd", "nope", empty()).await;
    assert_eq!(got, Err(status::METHOD_NOT_FOUND));

    // The daemon drops the responder unanswered.
    let (got, ()) = tokio::join!(peer.call("rupnpd", "status", empty()), async {
        match next(&mut rx).await {
            Incoming::Call { reply, .. } => drop(reply),
            other => panic!("expected a call, got {other:?}"),
        }
    });
    assert_eq!(got, Err(status::UNKNOWN_ERROR));

    // The daemon sits on it past the serve timeout; a late answer is
    // ignored and the next call still works.
    let (got, late) = tokio::join!(peer.call("rupnpd", "status", empty()), async {
        match next(&mut rx).await {
            Incoming::Call { reply, .. } => reply,
            other => panic!("expected a call, got {other:?}"),
        }
    });
    assert_eq!(got, Err(status::TIMEOUT));
    late.reply(Ok(Value::table()));
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "status", empty()),
        answer_one(&mut rx, "status", |_| Ok(Value::table().with("n", 1i32)))
    );
    assert_eq!(got, Ok(vec![json(r#"{"n": 1}"#)]));

    // Calling out: a missing object. (This second client finds the name
    // `rupnpd` taken, which it logs, and still connects.)
    let (h, _rx2) = connected(&path).await;
    let got = h.call("no.such.object", "status", Value::table()).await;
    assert_eq!(got, Err(Status::NotFound));
}

#[tokio::test]
async fn no_reply_calls_get_no_answer() {
    let path = socket_path("noreply");
    let _broker = Broker::start(&path);
    let (_h, mut rx) = connected(&path).await;
    let peer = Peer::connect(&path).await;
    let id = peer.lookup_id("rupnpd").await.unwrap();
    let msg = Msg::new(kind::INVOKE, 0, id)
        .with(Attr::ObjId(id))
        .with(Attr::Method("status".into()))
        .with(Attr::NoReply(true))
        .with(Attr::Data(empty()));
    let (answer, ()) = tokio::join!(
        peer.request_within(msg, Duration::from_millis(600)),
        async {
            match next(&mut rx).await {
                Incoming::Call { reply, .. } => {
                    assert!(reply.is_no_reply());
                    reply.reply(Ok(Value::table().with("ignored", true)));
                }
                other => panic!("expected a call, got {other:?}"),
            }
        }
    );
    assert_eq!(answer, None, "a NO_REPLY call was answered");
}

#[tokio::test]
async fn events_go_both_ways() {
    let path = socket_path("events");
    let _broker = Broker::start(&path);
    let (h, mut rx) = connected(&path).await;
    let mut peer = Peer::connect(&path).await;

    // `ubus listen 'upnp.*'` sees what the daemon sends.
    peer.listen("upnp.*").await;
    h.send_event(
        "upnp.mapping.add",
        lib(&json(r#"{"port": 80, "proto": "TCP"}"#)),
    );
    let (name, data) = peer.next_event(WAIT).await.expect("no event");
    assert_eq!(name, "upnp.mapping.add");
    assert_eq!(data, json(r#"{"port": 80, "proto": "TCP"}"#));

    // The daemon hears `ubus send network.interface '{...}'`; its
    // registration is asynchronous, so send until it arrives.
    h.listen("network.interface");
    let payload = json(r#"{"action": "ifup", "interface": "wan"}"#);
    let got = timeout(WAIT, async {
        loop {
            assert_eq!(
                peer.send_event("network.interface", payload.clone()).await,
                0
            );
            // An event that matches no pattern is not delivered.
            assert_eq!(peer.send_event("network.other", payload.clone()).await, 0);
            if let Ok(Some(m)) = timeout(Duration::from_millis(100), rx.recv()).await {
                return m;
            }
        }
    })
    .await
    .unwrap();
    match got {
        Incoming::Event { name, data } => {
            assert_eq!(name, "network.interface");
            assert_eq!(data, lib(&payload));
        }
        other => panic!("expected an event, got {other:?}"),
    }
    // ubusd refuses events in its own namespace.
    assert_eq!(
        peer.send_event("ubus.fake", empty()).await,
        status::PERMISSION_DENIED
    );
}

fn wan_status(addr: &str) -> wire::Value {
    json(&format!(
        r#"{{"up": true, "l3_device": "pppoe-wan", "proto": "pppoe",
            "ipv4-address": [{{"address": "{addr}", "mask": 32, "ptpaddress": "203.0.113.1"}}],
            "route": [{{"target": "0.0.0.0", "mask": 0, "nexthop": "203.0.113.1"}}]}}"#
    ))
}

/// A fake netifd publishing `network.interface.wan`.
async fn fake_netifd(path: &Path, addr: &'static str) -> (Peer, u32) {
    let mut netifd = Peer::connect(path).await;
    let id = netifd
        .publish("network.interface.wan", json(r#"{"status": {}}"#))
        .await;
    netifd.serve(id, move |method, _| match method {
        "status" => Ok(wan_status(addr)),
        _ => Err(status::METHOD_NOT_FOUND),
    });
    let _ = &mut netifd;
    (netifd, id)
}

/// Waits until ubusd tells the publisher it has a subscriber.
async fn wait_subscribed(netifd: &mut Peer) {
    loop {
        let m = netifd.next_inbound(WAIT).await.expect("never subscribed");
        if m.kind == kind::NOTIFY && m.active() == Some(true) {
            return;
        }
    }
}

async fn next_notify(rx: &mut Receiver<Incoming>) -> (String, String, Value) {
    loop {
        match next(rx).await {
            Incoming::Notify { object, kind, data } => return (object, kind, data),
            Incoming::Connected | Incoming::Disconnected => {}
            other => panic!("expected a notification, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn subscribe_to_the_wan_and_call_it() {
    let path = socket_path("subscribe");
    let _broker = Broker::start(&path);
    let (mut netifd, wan) = fake_netifd(&path, "203.0.113.7").await;
    let (h, mut rx) = connected(&path).await;

    // `ubus call network.interface.wan status`.
    let st = h
        .call("network.interface.wan", "status", Value::table())
        .await
        .unwrap();
    let st = netifd::parse_status(&st).unwrap();
    assert_eq!(st.l3_device.as_deref(), Some("pppoe-wan"));
    assert_eq!(st.ipv4, vec![("203.0.113.7".parse().unwrap(), 32)]);

    h.subscribe("network.interface.wan");
    wait_subscribed(&mut netifd).await;
    let subs = netifd
        .notify(
            wan,
            "interface.update",
            wan_status("203.0.113.9").with("interface", "wan"),
        )
        .await;
    assert_eq!(subs.len(), 1);
    let (object, kind, data) = next_notify(&mut rx).await;
    assert_eq!(object, "network.interface.wan");
    assert_eq!(kind, "interface.update");
    assert_eq!(netifd::interface_name(&data), Some("wan"));
    let st = netifd::parse_status(&data).unwrap();
    assert_eq!(st.ipv4, vec![("203.0.113.9".parse().unwrap(), 32)]);
    // The subscriber acknowledged with STATUS 0 (relayed to the publisher).
    let ack = netifd.next_inbound(WAIT).await.unwrap();
    assert_eq!((ack.kind, ack.status()), (kind::STATUS, Some(status::OK)));

    netifd.notify(wan, "interface.down", empty()).await;
    let (_, kind, _) = next_notify(&mut rx).await;
    assert_eq!(kind, "interface.down");
    assert!(
        netifd.next_inbound(WAIT).await.is_some(),
        "no acknowledgement"
    );

    // A notification sent with NO_REPLY (`ubus_notify` with timeout -1, as
    // netifd does) is delivered and not acknowledged.
    netifd.send(
        Msg::new(kind::NOTIFY, 0, wan)
            .with(Attr::ObjId(wan))
            .with(Attr::Method("interface.update".into()))
            .with(Attr::NoReply(true))
            .with(Attr::Data(empty())),
    );
    assert_eq!(next_notify(&mut rx).await.1, "interface.update");
    let extra = netifd.next_inbound(Duration::from_millis(300)).await;
    assert!(
        extra.is_none(),
        "acknowledged a NO_REPLY notification: {extra:?}"
    );
}

#[tokio::test]
async fn subscription_waits_for_the_object_and_follows_it() {
    let path = socket_path("subscribe-late");
    let _broker = Broker::start(&path);
    let (h, mut rx) = connected(&path).await;
    h.subscribe("network.interface.wan");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // netifd starts after us: `ubus.object.add` triggers the subscription.
    let (mut netifd, wan) = fake_netifd(&path, "203.0.113.7").await;
    wait_subscribed(&mut netifd).await;
    netifd
        .notify(wan, "interface.update", wan_status("203.0.113.7"))
        .await;
    assert_eq!(next_notify(&mut rx).await.1, "interface.update");

    // netifd restarts: the object goes and comes back with a new id.
    drop(netifd);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut netifd, wan2) = fake_netifd(&path, "203.0.113.8").await;
    assert_ne!(wan, wan2);
    wait_subscribed(&mut netifd).await;
    let subs = netifd
        .notify(wan2, "interface.update", wan_status("203.0.113.8"))
        .await;
    assert_eq!(subs.len(), 1, "subscribed twice or not at all");
    let (_, _, data) = next_notify(&mut rx).await;
    assert_eq!(
        netifd::parse_status(&data).unwrap().ipv4[0].0.to_string(),
        "203.0.113.8"
    );
}

#[tokio::test]
async fn reconnects_and_registers_again_after_a_broker_restart() {
    let path = socket_path("restart");
    let broker = Broker::start(&path);
    let (h, mut rx) = connected(&path).await;
    h.subscribe("network.interface.wan");
    h.listen("test.*");
    let (mut netifd, _) = fake_netifd(&path, "203.0.113.7").await;
    wait_subscribed(&mut netifd).await;

    broker.stop();
    assert!(matches!(next(&mut rx).await, Incoming::Disconnected));
    // While disconnected, calls fail at once.
    assert_eq!(
        h.call("network.interface.wan", "status", Value::table())
            .await,
        Err(Status::ConnectionFailed)
    );

    let _broker = Broker::start(&path);
    assert!(matches!(next(&mut rx).await, Incoming::Connected));
    let peer = Peer::connect(&path).await;
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "status", empty()),
        answer_one(&mut rx, "status", |_| Ok(Value::table().with("up", true)))
    );
    assert_eq!(got, Ok(vec![json(r#"{"up": true}"#)]));

    // Subscriptions come back too, once netifd does.
    let (mut netifd, wan) = fake_netifd(&path, "203.0.113.7").await;
    wait_subscribed(&mut netifd).await;
    netifd.notify(wan, "interface.update", empty()).await;
    assert_eq!(next_notify(&mut rx).await.1, "interface.update");
    // And the event listener.
    let mut sender = Peer::connect(&path).await;
    sender.listen("unused").await;
    let got = timeout(WAIT, async {
        loop {
            sender.send_event("test.again", empty()).await;
            if let Ok(Some(Incoming::Event { name, .. })) =
                timeout(Duration::from_millis(100), rx.recv()).await
            {
                return name;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(got, "test.again");
}

#[tokio::test]
async fn without_a_broker_it_warns_once_then_connects() {
    init_log();
    let path = socket_path("late-broker");
    let _ = std::fs::remove_file(&path);
    let (h, mut rx) = ubus::spawn_with(opts(&path), spec());
    // Several attempts at 50–200 ms.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(warnings_here().len(), 1, "{:?}", warnings_here());
    assert_eq!(
        h.call("x", "y", Value::table()).await,
        Err(Status::ConnectionFailed)
    );

    let _broker = Broker::start(&path);
    assert!(matches!(next(&mut rx).await, Incoming::Connected));
    assert_eq!(warnings_here().len(), 1, "{:?}", warnings_here());
    let peer = Peer::connect(&path).await;
    assert!(peer.lookup("rupnpd").await.is_ok());
}

/// A fake ubusd that says HELLO and then `bytes`; returns what the client
/// did next: reconnect (true) or not within the wait.
async fn hostile_server(name: &str, bytes: Vec<u8>) -> bool {
    let path = socket_path(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let (h, mut rx) = ubus::spawn_with(opts(&path), spec());
    let (mut s, _) = timeout(WAIT, listener.accept()).await.unwrap().unwrap();
    let hello = Msg::new(kind::HELLO, 0, 0x4242).encode();
    s.write_all(&hello).await.unwrap();
    // The client registers its object first; take that in.
    let mut buf = vec![0u8; 4096];
    let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap();
    let add = Msg::decode(&buf[..n]).unwrap();
    assert_eq!(add.kind, kind::ADD_OBJECT);
    s.write_all(&bytes).await.unwrap();
    // The client drops the connection...
    let n = timeout(WAIT, s.read(&mut buf)).await.unwrap().unwrap_or(0);
    assert_eq!(n, 0, "connection kept after malformed bytes");
    assert!(matches!(next(&mut rx).await, Incoming::Disconnected));
    // ...and, alive, comes back.
    let again = timeout(WAIT, listener.accept()).await.is_ok();
    drop(h);
    again
}

#[tokio::test]
async fn malformed_bytes_reset_the_connection() {
    // Version 1 header.
    assert!(hostile_server("bad-version", vec![1, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 4]).await);
    // A STATUS whose STATUS attribute is 3 bytes long.
    let b = vec![0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x0b, 1, 0, 0, 7, 0, 0, 0];
    assert!(hostile_server("bad-attr", b).await);
    // A DATA whose blobmsg payload overruns itself.
    let b = vec![
        0, 2, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x0c, 7, 0, 0, 8, 0x85, 0, 0, 0x40,
    ];
    assert!(hostile_server("bad-blobmsg", b).await);
}

#[tokio::test]
async fn messages_over_one_mebibyte_are_refused() {
    // A peer announcing a container of 1 MiB + 4 bytes is cut off before it
    // sends them.
    let mut b = vec![0, 2, 0, 1, 0, 0, 0, 0];
    b.extend_from_slice(&(UBUS_MAX_MSGLEN as u32 + 4).to_be_bytes());
    assert!(hostile_server("too-big", b).await);

    let path = socket_path("too-big-calls");
    let _broker = Broker::start(&path);
    let (h, mut rx) = connected(&path).await;
    // Our own arguments over the limit.
    let huge = Value::table().with("s", "x".repeat(UBUS_MAX_MSGLEN));
    assert_eq!(
        h.call("rupnpd", "status", huge).await,
        Err(Status::InvalidArgument)
    );
    // The daemon's answer over the limit: the caller gets an error status
    // and the connection stays usable.
    let peer = Peer::connect(&path).await;
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "status", empty()),
        answer_one(&mut rx, "status", |_| {
            Ok(Value::table().with("s", "x".repeat(UBUS_MAX_MSGLEN)))
        })
    );
    assert_eq!(got, Err(status::UNKNOWN_ERROR));
    let (got, ()) = tokio::join!(
        peer.call("rupnpd", "status", empty()),
        answer_one(&mut rx, "status", |_| Ok(Value::table()))
    );
    assert_eq!(got, Ok(vec![empty()]));
}

#[tokio::test]
async fn broker_basics() {
    // The test broker itself: duplicate paths, PING, removal, permissions.
    let path = socket_path("broker");
    let _broker = Broker::start(&path);
    let a = Peer::connect(&path).await;
    let b = Peer::connect(&path).await;
    assert_ne!(a.id, b.id);
    let sig = json(r#"{"m": {"x": 5}}"#);
    let id = a.publish("dup", sig.clone()).await;
    let msg = Msg::new(kind::ADD_OBJECT, 0, 0)
        .with(Attr::ObjPath("dup".into()))
        .with(Attr::Signature(sig));
    assert_eq!(b.request(msg).await.1, status::INVALID_ARGUMENT);
    let (data, st) = a.request(Msg::new(kind::PING, 0, 0)).await;
    assert_eq!((data.len(), st), (1, status::OK));
    let rm = Msg::new(kind::REMOVE_OBJECT, 0, 0).with(Attr::ObjId(id));
    assert_eq!(b.request(rm.clone()).await.1, status::PERMISSION_DENIED);
    assert_eq!(a.request(rm.clone()).await.1, status::OK);
    assert_eq!(a.request(rm).await.1, status::NOT_FOUND);
    assert_eq!(a.lookup("dup").await, Err(status::NOT_FOUND));
    // Unknown message types are answered INVALID_COMMAND.
    let raw = Msg::new(kind::LAST + 31, 77, 0).encode();
    let mut a = a;
    a.send_raw(raw);
    let m = a.next_inbound(WAIT).await.unwrap();
    assert_eq!((m.seq, m.status()), (77, Some(status::INVALID_COMMAND)));
}
