//! The test broker and the daemon against the real ubusd, through the bytes
//! recorded between OpenWrt's ubusd and rupnpd 0.1.0
//! (tests/fixtures/ubusd-capture.txt, which says how they were recorded):
//!   - the test codec (tests/support/wire.rs) reads every recorded message
//!     and writes it back to the same bytes;
//!   - the broker's own message builders, the ones it uses at run time,
//!     produce every message ubusd sent, byte for byte; a live broker
//!     answers the daemon's recorded registration and forwards a call as
//!     ubusd did (USER and GROUP "root");
//!   - ubusd's recorded requests, replayed through the broker to the real
//!     daemon binary, are answered with the same meaning as then, and with
//!     the same bytes where the encoding is fixed; the recorded `set` with
//!     `ubus_rpc_session` (refused by 0.1.0) is now applied.

mod common;
mod support;

use std::time::Duration;

use common::*;
use support::ubusd::{
    Broker, Dir, Peer, add_object_reply, forwarded_invoke, hello, socket_path, status_reply,
};
use support::wire::{self, Attr, Msg, Value, json, kind, status, unhex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(5);

/// One recorded read or write: whether ubusd sent it, and the bytes.
struct Line {
    from_ubusd: bool,
    label: String,
    bytes: Vec<u8>,
}

fn capture() -> Vec<Line> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/ubusd-capture.txt")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{l}");
            Line {
                from_ubusd: f[0] == "ubusd->rupnpd",
                label: f[1].to_owned(),
                bytes: unhex(f[2]),
            }
        })
        .collect()
}

fn kind_name(k: u8) -> &'static str {
    [
        "HELLO",
        "STATUS",
        "DATA",
        "PING",
        "LOOKUP",
        "INVOKE",
        "ADD_OBJECT",
        "REMOVE_OBJECT",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "NOTIFY",
        "MONITOR",
    ]
    .get(usize::from(k))
    .copied()
    .unwrap_or("?")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn worked_examples_of_the_format() {
    // "a": "b" and "id": 42, as the format description spells them out.
    assert_eq!(
        hex(&wire::encode_body(&json(r#"{"a": "b"}"#))),
        "8300000a0001610062000000"
    );
    assert_eq!(
        hex(&wire::encode_body(&json(r#"{"id": 42}"#))),
        "8500001000026964000000000000002a"
    );
}

#[test]
fn every_recorded_message_reads_and_writes_back_to_the_same_bytes() {
    let lines = capture();
    assert_eq!(lines.len(), 31);
    for (i, l) in lines.iter().enumerate() {
        let msgs = Msg::decode_all(&l.bytes).unwrap_or_else(|e| panic!("line {i}: {e:?}"));
        assert_eq!(kind_name(msgs[0].kind), l.label, "line {i}");
        let again: Vec<u8> = msgs.iter().flat_map(Msg::encode).collect();
        assert_eq!(hex(&again), hex(&l.bytes), "line {i}: {msgs:?}");
    }
}

/// Every message ubusd sent, rebuilt from its content by the functions the
/// broker sends with: same bytes. `user`/`group` are what ubusd put in.
#[test]
fn the_broker_builds_every_message_ubusd_sent() {
    let mut built = 0;
    for (i, l) in capture().iter().enumerate().filter(|(_, l)| l.from_ubusd) {
        let mut again = Vec::new();
        for m in Msg::decode_all(&l.bytes).unwrap() {
            let rebuilt = match m.kind {
                kind::HELLO => hello(m.peer),
                kind::STATUS => status_reply(m.seq, m.peer, m.status().unwrap()),
                kind::DATA => add_object_reply(m.seq, m.peer, m.objid().unwrap(), m.objtype()),
                kind::INVOKE => {
                    let user = m.attrs.iter().find_map(|a| match a {
                        Attr::User(u) => Some(u.as_str()),
                        _ => None,
                    });
                    let group = m.attrs.iter().find_map(|a| match a {
                        Attr::Group(g) => Some(g.as_str()),
                        _ => None,
                    });
                    // ubusd names the caller: `ubus` ran as root.
                    assert_eq!((user, group), (Some("root"), Some("root")), "line {i}");
                    forwarded_invoke(
                        m.seq,
                        m.peer,
                        m.objid().unwrap(),
                        m.method().unwrap(),
                        "root",
                        "root",
                        m.no_reply(),
                        m.data(),
                    )
                }
                other => panic!("line {i}: ubusd sent type {other}"),
            };
            again.extend(rebuilt.encode());
            built += 1;
        }
        assert_eq!(hex(&again), hex(&l.bytes), "line {i}");
    }
    assert_eq!(built, 18);
}

async fn read_one(s: &mut UnixStream) -> Vec<u8> {
    let mut buf = vec![0u8; wire::PREFIX];
    timeout(WAIT, s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let n = Msg::frame_len(&buf).unwrap();
    buf.resize(n, 0);
    timeout(WAIT, s.read_exact(&mut buf[wire::PREFIX..]))
        .await
        .unwrap()
        .unwrap();
    buf
}

/// A live broker, fed the daemon's recorded registration verbatim, answers
/// as ubusd did; a call to the object reaches its owner as ubusd forwarded
/// it.
#[tokio::test]
async fn a_live_broker_answers_the_recorded_registration_as_ubusd_did() {
    let lines = capture();
    let path = socket_path("capture-live");
    let broker = Broker::start(&path);
    let mut owner = UnixStream::connect(&path).await.unwrap();
    let hello_bytes = read_one(&mut owner).await;
    let me = Msg::decode(&hello_bytes).unwrap().peer;
    assert_eq!(hex(&hello_bytes), hex(&hello(me).encode()));
    // rupnpd 0.1.0's ADD_OBJECT, as it was sent to ubusd.
    owner.write_all(&lines[1].bytes).await.unwrap();
    let data = Msg::decode(&read_one(&mut owner).await).unwrap();
    let st = read_one(&mut owner).await;
    let (objid, objtype) = (data.objid().unwrap(), data.objtype().unwrap());
    assert_eq!(data, add_object_reply(1, 0, objid, Some(objtype)));
    assert_eq!(hex(&st), hex(&status_reply(1, 0, status::OK).encode()));
    // The same shape as ubusd's answer (line 2), ids aside.
    let recorded = Msg::decode_all(&lines[2].bytes).unwrap();
    assert_eq!(
        (recorded[0].attrs.len(), recorded[1].attrs.len()),
        (data.attrs.len(), 1)
    );

    // `ubus call rupnpd set` as recorded: reaches the owner with the
    // caller's seq and id, USER and GROUP, and the arguments unchanged.
    let recorded = lines
        .iter()
        .filter(|l| l.from_ubusd && l.label == "INVOKE")
        .map(|l| Msg::decode(&l.bytes).unwrap())
        .find(|m| m.method() == Some("set"))
        .unwrap();
    let caller = Peer::connect(&path).await;
    let seq = 1;
    let call = Msg::new(kind::INVOKE, seq, objid)
        .with(Attr::ObjId(objid))
        .with(Attr::Method("set".into()))
        .with(Attr::Data(recorded.data().unwrap().clone()));
    caller.send(call);
    let got = read_one(&mut owner).await;
    let expect = forwarded_invoke(
        seq,
        caller.id,
        objid,
        "set",
        "root",
        "root",
        false,
        recorded.data(),
    );
    assert_eq!(hex(&got), hex(&expect.encode()));
    // ... which is the recorded message with this session's ids.
    let mut same = recorded.clone();
    same.seq = seq;
    same.peer = caller.id;
    same.attrs[0] = Attr::ObjId(objid);
    assert_eq!(hex(&got), hex(&same.encode()));
    broker.stop();
}

/// `captured` with this session's seq, peer and object id: the bytes the
/// daemon must send now if its encoding is unchanged.
fn with_ids_of(captured: &Msg, live: &Msg) -> Msg {
    let mut m = captured.clone();
    m.seq = live.seq;
    m.peer = live.peer;
    for a in &mut m.attrs {
        if let Attr::ObjId(id) = a {
            *id = live.objid().unwrap();
        }
    }
    m
}

/// Fields `status` has gained since the capture (issue 14: the WAN
/// address, and whether new mappings are given out and why; issue 13:
/// whether a host reaches its own mapping through the external address).
const STATUS_SINCE_CAPTURE: [&str; 6] = [
    "wan_ip",
    "new_mappings",
    "new_mappings_reason",
    "hairpin_self",
    "hairpin_self_reason",
    "firewall",
];

/// `live` means what `captured` meant: the same fields in the same order
/// with the same values, except `volatile` fields (which must have the
/// same type).
fn same_meaning(captured: &Value, live: &Value, volatile: &[&str], what: &str) {
    match (captured, live) {
        (Value::Table(c), Value::Table(l)) => {
            let names =
                |t: &[(String, Value)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
            assert_eq!(names(c), names(l), "{what}: fields");
            for ((n, cv), (_, lv)) in c.iter().zip(l) {
                if volatile.contains(&n.as_str()) {
                    assert_eq!(cv.btype(), lv.btype(), "{what}.{n}: type");
                } else {
                    same_meaning(cv, lv, volatile, &format!("{what}.{n}"));
                }
            }
        }
        (Value::Array(c), Value::Array(l)) => {
            assert_eq!(c.len(), l.len(), "{what}: length");
            for (i, (cv, lv)) in c.iter().zip(l).enumerate() {
                same_meaning(cv, lv, volatile, &format!("{what}[{i}]"));
            }
        }
        _ => assert_eq!(captured, live, "{what}"),
    }
}

/// The daemon's frames (decoded) since `from`.
fn daemon_frames(broker: &Broker, daemon: u32, from: usize) -> Vec<Msg> {
    broker.frames()[from..]
        .iter()
        .filter(|(c, d, _)| *c == daemon && *d == Dir::FromClient)
        .map(|(_, _, b)| Msg::decode(b).unwrap())
        .collect()
}

/// Replays the recorded request at `line` through `caller`; returns the
/// daemon's answer (DATA messages and the STATUS) as it sent it.
async fn replay(
    broker: &Broker,
    daemon: u32,
    caller: &Peer,
    objid: u32,
    recorded: &Msg,
) -> Vec<Msg> {
    let from = broker.frames().len();
    let call = Msg::new(kind::INVOKE, 0, objid)
        .with(Attr::ObjId(objid))
        .with(Attr::Method(recorded.method().unwrap().into()))
        .with(Attr::Data(recorded.data().unwrap().clone()));
    let _ = caller.request(call).await;
    let answer: Vec<Msg> = daemon_frames(broker, daemon, from)
        .into_iter()
        .filter(|m| m.peer == caller.id && matches!(m.kind, kind::DATA | kind::STATUS))
        .collect();
    assert_eq!(answer.last().map(|m| m.kind), Some(kind::STATUS));
    answer
}

/// The daemon's next `rupnpd.mapping` event with `action`, since `from`.
async fn mapping_event(broker: &Broker, daemon: u32, from: usize, action: &str) -> Msg {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let found = daemon_frames(broker, daemon, from).into_iter().find(|m| {
            m.kind == kind::INVOKE
                && m.method() == Some("send")
                && m.data()
                    .and_then(|d| d.get("data"))
                    .and_then(|d| d.get("action"))
                    .and_then(Value::as_str)
                    == Some(action)
        });
        if let Some(m) = found {
            return m;
        }
        assert!(std::time::Instant::now() < end, "no {action} event");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_daemon_answers_the_recorded_requests() {
    let lines = capture();
    let recorded: Vec<Vec<Msg>> = lines
        .iter()
        .map(|l| Msg::decode_all(&l.bytes).unwrap())
        .collect();
    let requests: Vec<&Msg> = lines
        .iter()
        .zip(&recorded)
        .filter(|(l, _)| l.from_ubusd)
        .flat_map(|(_, m)| m)
        .filter(|m| m.kind == kind::INVOKE)
        .collect();
    let methods: Vec<&str> = requests.iter().map(|m| m.method().unwrap()).collect();
    assert_eq!(methods, ["status", "list", "set", "delete", "delete"]);
    // The daemon's recorded answers, by the seq of the request.
    let answers = |req: &Msg| -> Vec<Msg> {
        lines
            .iter()
            .zip(&recorded)
            .filter(|(l, _)| !l.from_ubusd)
            .flat_map(|(_, m)| m.clone())
            .filter(|m| {
                m.seq == req.seq
                    && m.peer == req.peer
                    && matches!(m.kind, kind::DATA | kind::STATUS)
            })
            .collect()
    };
    let events: Vec<Msg> = lines
        .iter()
        .zip(&recorded)
        .filter(|(l, _)| !l.from_ubusd)
        .flat_map(|(_, m)| m.clone())
        .filter(|m| m.method() == Some("send"))
        .collect();
    assert_eq!(events.len(), 2);

    // The bed the capture was made in: its router's devices were r-lan
    // and r-wan (the capture's status names them).
    let mut bed = Bed::with_devices("ucap", "r-lan", "r-wan");
    bed.fw4_start();
    let sock = socket_path("ucap");
    let broker = Broker::start(&sock);
    bed.start(&["--ubus-socket", sock.to_str().unwrap()]);
    let caller = Peer::connect(&sock).await;
    let objid = caller.wait_for("rupnpd", WAIT).await;

    // Its registration: the same bytes as 0.1.0's.
    let (daemon, _, add) = broker
        .frames()
        .into_iter()
        .find(|(_, d, b)| {
            *d == Dir::FromClient
                && Msg::decode(b)
                    .is_ok_and(|m| m.kind == kind::ADD_OBJECT && m.objpath() == Some("rupnpd"))
        })
        .expect("the daemon published no object");
    assert_eq!(hex(&add), hex(&lines[1].bytes), "registration");

    // status: the same table (uptime aside, and the fields added since
    // 0.1.0 was recorded); the STATUS in the same bytes.
    let live = replay(&broker, daemon, &caller, objid, requests[0]).await;
    let then = answers(requests[0]);
    assert_eq!(live.len(), then.len());
    let mut now = live[0].data().unwrap().clone();
    if let Value::Table(t) = &mut now {
        let added: Vec<&str> = t
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| STATUS_SINCE_CAPTURE.contains(n))
            .collect();
        assert_eq!(added, STATUS_SINCE_CAPTURE, "status: the added fields");
        t.retain(|(n, _)| !STATUS_SINCE_CAPTURE.contains(&n.as_str()));
    }
    assert_eq!(
        live[0]
            .data()
            .and_then(|d| d.get("new_mappings"))
            .and_then(Value::as_str),
        Some("allowed")
    );
    same_meaning(then[0].data().unwrap(), &now, &["uptime"], "status");
    assert_eq!(
        hex(&with_ids_of(&then[1], &live[1]).encode()),
        hex(&live[1].encode())
    );

    // upnpc's mapping, as in the capture: the add event means the same.
    let from = broker.frames().len();
    let (code, text) = bed.soap(
        CLIENT_IP,
        "WANIPConnection:2",
        "AddPortMapping",
        &add_args("18080", "TCP", "8080", CLIENT_IP, "3600", "cap"),
    );
    assert_eq!(code, 200, "{text}");
    let ev = mapping_event(&broker, daemon, from, "add").await;
    same_meaning(
        events[0].data().unwrap(),
        ev.data().unwrap(),
        &["expires"],
        "add event",
    );

    // list: the same mapping (seconds left aside).
    let live = replay(&broker, daemon, &caller, objid, requests[1]).await;
    let then = answers(requests[1]);
    same_meaning(
        then[0].data().unwrap(),
        live[0].data().unwrap(),
        &["expires"],
        "list",
    );
    let left = live[0]
        .data()
        .unwrap()
        .get("mappings")
        .unwrap()
        .as_array()
        .unwrap()[0]
        .get("expires")
        .and_then(Value::as_u32)
        .unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    assert_eq!(
        hex(&with_ids_of(&then[1], &live[1]).encode()),
        hex(&live[1].encode())
    );

    // set with ubus_rpc_session, as uhttpd forwards it: 0.1.0 refused it
    // (status 2 after an error text); now the toggle is applied.
    let then = answers(requests[2]);
    assert_eq!(
        then.last().unwrap().status(),
        Some(status::INVALID_ARGUMENT)
    );
    let live = replay(&broker, daemon, &caller, objid, requests[2]).await;
    assert_eq!(live[0].data(), Some(&Value::table()));
    assert_eq!(live[1].status(), Some(status::OK));
    let st = caller
        .call("rupnpd", "status", Value::table())
        .await
        .unwrap();
    assert_eq!(
        st[0].get("enable_pcp").and_then(Value::as_bool),
        Some(false)
    );

    // delete, found: `{}` then STATUS 0, the same bytes; the event means
    // the same.
    let from = broker.frames().len();
    let live = replay(&broker, daemon, &caller, objid, requests[3]).await;
    let then = answers(requests[3]);
    assert_eq!(live.len(), 2);
    for (t, l) in then.iter().zip(&live) {
        assert_eq!(hex(&with_ids_of(t, l).encode()), hex(&l.encode()), "delete");
    }
    let ev = mapping_event(&broker, daemon, from, "delete").await;
    same_meaning(
        events[1].data().unwrap(),
        ev.data().unwrap(),
        &["expires"],
        "delete event",
    );

    // delete, not found: the error text then STATUS 4, the same bytes.
    let live = replay(&broker, daemon, &caller, objid, requests[4]).await;
    let then = answers(requests[4]);
    assert_eq!(then.last().unwrap().status(), Some(status::NOT_FOUND));
    assert_eq!(live.len(), then.len());
    for (t, l) in then.iter().zip(&live) {
        assert_eq!(
            hex(&with_ids_of(t, l).encode()),
            hex(&l.encode()),
            "delete again"
        );
    }
    drop(bed);
}
