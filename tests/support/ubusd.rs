//! A small ubus broker for tests, plus a test-side client that does what
//! `ubus call`, `ubus listen`, `ubus send` and a publishing daemon (netifd)
//! do. Both speak through [`super::wire`], a codec of their own written from
//! the wire format, never the daemon's (src/proto). The messages the real
//! ubusd sent in the recorded session (tests/fixtures/ubusd-capture.txt) are
//! built here by the same functions the broker uses at run time, and
//! tests/ubusd_capture.rs checks them byte for byte.
//!
//! The broker runs on its own thread with its own current-thread runtime,
//! so tests can stop it and start it again on the same path. It records
//! every frame it reads and writes ([`Broker::frames`]), so a test can look
//! at the daemon's own bytes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use super::wire::{Attr, EVENT_OBJECT, FIRST_CLIENT_OBJECT, Msg, PREFIX, Value, kind, status};

/// `ubus call rupnpd status` through the broker at `sock`, once the
/// daemon's object is there.
pub async fn rupnpd_status(sock: &Path) -> Value {
    let caller = Peer::connect(sock).await;
    caller.wait_for("rupnpd", Duration::from_secs(5)).await;
    caller
        .call("rupnpd", "status", Value::table())
        .await
        .unwrap()
        .pop()
        .unwrap()
}

/// A unique socket path for one test.
pub fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rupnpd-ubus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.sock"))
}

// ---------------------------------------------------------------------------
// What ubusd sends, one function per message, as the capture shows it

/// HELLO: the new client's id in `peer`, an empty container.
pub fn hello(client: u32) -> Msg {
    Msg::new(kind::HELLO, 0, client)
}

/// The final answer to a request: STATUS alone, with the request's seq and
/// peer.
pub fn status_reply(seq: u16, peer: u32, st: u32) -> Msg {
    Msg::new(kind::STATUS, seq, peer).with(Attr::Status(st))
}

/// The DATA answering ADD_OBJECT: the new object's id, and its type's id
/// when the object was published with a signature.
pub fn add_object_reply(seq: u16, peer: u32, objid: u32, objtype: Option<u32>) -> Msg {
    let m = Msg::new(kind::DATA, seq, peer).with(Attr::ObjId(objid));
    match objtype {
        Some(t) => m.with(Attr::ObjType(t)),
        None => m,
    }
}

/// The INVOKE ubusd hands to an object's owner: the caller's seq, the
/// caller's id as peer, then OBJID, METHOD, the caller's USER and GROUP
/// names and the arguments.
#[allow(clippy::too_many_arguments)]
pub fn forwarded_invoke(
    seq: u16,
    caller: u32,
    objid: u32,
    method: &str,
    user: &str,
    group: &str,
    no_reply: bool,
    data: Option<&Value>,
) -> Msg {
    let mut m = Msg::new(kind::INVOKE, seq, caller)
        .with(Attr::ObjId(objid))
        .with(Attr::Method(method.to_owned()))
        .with(Attr::User(user.to_owned()))
        .with(Attr::Group(group.to_owned()));
    if no_reply {
        m = m.with(Attr::NoReply(true));
    }
    if let Some(d) = data {
        m = m.with(Attr::Data(d.clone()));
    }
    m
}

// ---------------------------------------------------------------------------
// Broker

/// Which way a recorded frame went, seen from the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    FromClient,
    ToClient,
}

/// One recorded frame: the client, the direction, the bytes.
pub type Frame = (u32, Dir, Vec<u8>);
type Tap = Arc<Mutex<Vec<Frame>>>;

/// A running broker. Stopping it closes every connection and removes the
/// socket, as a ubusd restart does.
pub struct Broker {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    tap: Tap,
}

impl Broker {
    /// Binds `path` (the socket exists when this returns) and serves it.
    pub fn start(path: &Path) -> Broker {
        let _ = std::fs::remove_file(path);
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let (stop_tx, stop_rx) = oneshot::channel();
        // Ids differ between runs so a client that reused stale ids would
        // be caught.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let first_id = FIRST_CLIENT_OBJECT + (nanos % 0x10_0000) * 16;
        let tap: Tap = Arc::default();
        let tap2 = tap.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, stop_rx, first_id, tap2));
        });
        Broker {
            path: path.to_owned(),
            stop: Some(stop_tx),
            thread: Some(thread),
            tap,
        }
    }

    /// Every frame read or written so far, in order.
    pub fn frames(&self) -> Vec<Frame> {
        self.tap.lock().unwrap().clone()
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

enum Ev {
    Frame(u32, Vec<u8>),
    Closed(u32),
}

/// The name of a uid or gid in /etc/passwd or /etc/group, as ubusd names
/// its clients; the number itself where the file has none.
fn id_name(file: &str, id: u32) -> String {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            (f.nth(1)?.parse::<u32>().ok()? == id).then(|| name.to_owned())
        })
        .unwrap_or_else(|| id.to_string())
}

async fn serve(
    listener: std::os::unix::net::UnixListener,
    mut stop: oneshot::Receiver<()>,
    first_id: u32,
    tap: Tap,
) {
    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut core = Core::new(first_id, tap);
    let mut tasks = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
                // ubusd names a client by the credentials of its socket.
                let (user, group) = match stream.peer_cred() {
                    Ok(c) => (id_name("/etc/passwd", c.uid()), id_name("/etc/group", c.gid())),
                    Err(_) => ("?".into(), "?".into()),
                };
                let id = core.alloc_id();
                let (rd, mut wr) = stream.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
                tasks.push(tokio::spawn(async move {
                    while let Some(bytes) = rx.recv().await {
                        if wr.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                }));
                tasks.push(tokio::spawn(read_frames(id, rd, ev_tx.clone())));
                core.connect(id, tx, user, group);
            }
            Some(ev) = ev_rx.recv() => match ev {
                Ev::Frame(id, bytes) => core.on_frame(id, &bytes),
                Ev::Closed(id) => core.disconnect(id),
            },
        }
    }
    for t in tasks {
        t.abort();
    }
}

/// Reads whole frames; a bad header or EOF ends the client (as ubusd
/// drops a client whose header it cannot accept).
async fn read_frames(id: u32, mut rd: OwnedReadHalf, ev: mpsc::UnboundedSender<Ev>) {
    loop {
        let mut buf = vec![0u8; PREFIX];
        if rd.read_exact(&mut buf).await.is_err() {
            break;
        }
        let Ok(total) = Msg::frame_len(&buf) else {
            break;
        };
        buf.resize(total, 0);
        if rd.read_exact(&mut buf[PREFIX..]).await.is_err() {
            break;
        }
        if ev.send(Ev::Frame(id, buf)).is_err() {
            return;
        }
    }
    let _ = ev.send(Ev::Closed(id));
}

struct Client {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    user: String,
    group: String,
}

struct Object {
    path: Option<String>,
    owner: u32,
    type_id: Option<u32>,
    /// Subscriber object ids.
    subscribers: Vec<u32>,
}

struct Pattern {
    prefix: String,
    partial: bool,
    objid: u32,
}

struct Core {
    next_id: u32,
    clients: HashMap<u32, Client>,
    objects: HashMap<u32, Object>,
    paths: BTreeMap<String, u32>,
    types: HashMap<u32, Value>,
    patterns: Vec<Pattern>,
    event_seq: u16,
    tap: Tap,
}

impl Core {
    fn new(first_id: u32, tap: Tap) -> Core {
        Core {
            next_id: first_id,
            clients: HashMap::new(),
            objects: HashMap::new(),
            paths: BTreeMap::new(),
            types: HashMap::new(),
            patterns: Vec::new(),
            event_seq: 0,
            tap,
        }
    }

    fn alloc_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn connect(
        &mut self,
        id: u32,
        tx: mpsc::UnboundedSender<Vec<u8>>,
        user: String,
        group: String,
    ) {
        self.clients.insert(id, Client { tx, user, group });
        self.send(id, &hello(id));
    }

    fn send(&self, client: u32, msg: &Msg) {
        if let Some(c) = self.clients.get(&client) {
            let bytes = msg.encode();
            self.tap
                .lock()
                .unwrap()
                .push((client, Dir::ToClient, bytes.clone()));
            let _ = c.tx.send(bytes);
        }
    }

    fn disconnect(&mut self, client: u32) {
        self.clients.remove(&client);
        let owned: Vec<u32> = self
            .objects
            .iter()
            .filter(|(_, o)| o.owner == client)
            .map(|(&id, _)| id)
            .collect();
        for id in owned {
            self.free_object(id);
        }
    }

    fn on_frame(&mut self, client: u32, bytes: &[u8]) {
        self.tap
            .lock()
            .unwrap()
            .push((client, Dir::FromClient, bytes.to_vec()));
        let msg = match Msg::decode(bytes) {
            Ok(m) => m,
            Err(_) => {
                // A client that cannot frame its messages is dropped.
                self.disconnect(client);
                return;
            }
        };
        let st = match msg.kind {
            kind::PING => {
                let mut pong = msg.clone();
                pong.kind = kind::DATA;
                self.send(client, &pong);
                Some(status::OK)
            }
            kind::ADD_OBJECT => self.add_object(client, &msg),
            kind::REMOVE_OBJECT => self.remove_object(client, &msg),
            kind::LOOKUP => Some(self.lookup(client, &msg)),
            kind::INVOKE => self.invoke(client, &msg),
            kind::STATUS | kind::DATA => {
                self.relay(client, msg.clone());
                None
            }
            kind::SUBSCRIBE => Some(self.subscribe(client, &msg)),
            kind::UNSUBSCRIBE => Some(self.unsubscribe(client, &msg)),
            kind::NOTIFY => self.notify(client, &msg),
            _ => Some(status::INVALID_COMMAND),
        };
        if let Some(st) = st {
            self.send(client, &status_reply(msg.seq, msg.peer, st));
        }
    }

    fn add_object(&mut self, client: u32, msg: &Msg) -> Option<u32> {
        let type_id = if let Some(t) = msg.objtype() {
            if !self.types.contains_key(&t) {
                return Some(status::INVALID_ARGUMENT);
            }
            Some(t)
        } else if let Some(sig) = msg.signature() {
            let t = self.alloc_id();
            self.types.insert(t, sig.clone());
            Some(t)
        } else {
            None
        };
        let path = msg.objpath().map(str::to_owned);
        if let Some(p) = &path {
            if self.paths.contains_key(p) {
                return Some(status::INVALID_ARGUMENT);
            }
        }
        let id = self.alloc_id();
        if let Some(p) = &path {
            self.paths.insert(p.clone(), id);
        }
        self.objects.insert(
            id,
            Object {
                path: path.clone(),
                owner: client,
                type_id,
                subscribers: Vec::new(),
            },
        );
        let objtype = type_id.filter(|_| msg.signature().is_some());
        self.send(client, &add_object_reply(msg.seq, msg.peer, id, objtype));
        if let Some(p) = path {
            let data = Value::table().with("id", id).with("path", p.as_str());
            self.broadcast_event(None, "ubus.object.add", &data);
        }
        Some(status::OK)
    }

    fn remove_object(&mut self, client: u32, msg: &Msg) -> Option<u32> {
        let Some(id) = msg.objid() else {
            return Some(status::INVALID_ARGUMENT);
        };
        match self.objects.get(&id) {
            None => return Some(status::NOT_FOUND),
            Some(o) if o.owner != client => return Some(status::PERMISSION_DENIED),
            Some(_) => {}
        }
        let reply = Msg::new(kind::DATA, msg.seq, msg.peer).with(Attr::ObjId(id));
        self.send(client, &reply);
        self.free_object(id);
        Some(status::OK)
    }

    fn free_object(&mut self, id: u32) {
        let Some(obj) = self.objects.remove(&id) else {
            return;
        };
        // Subscriptions this object made.
        let targets: Vec<u32> = self
            .objects
            .iter()
            .filter(|(_, o)| o.subscribers.contains(&id))
            .map(|(&t, _)| t)
            .collect();
        for t in targets {
            self.drop_subscription(id, t);
        }
        // Subscribers of this object learn that it is gone.
        for sub in &obj.subscribers {
            if let Some(owner) = self.objects.get(sub).map(|o| o.owner) {
                let m = Msg::new(kind::UNSUBSCRIBE, 0, 0)
                    .with(Attr::ObjId(*sub))
                    .with(Attr::Target(id));
                self.send(owner, &m);
            }
        }
        self.patterns.retain(|p| p.objid != id);
        if let Some(path) = obj.path {
            self.paths.remove(&path);
            let data = Value::table().with("id", id).with("path", path.as_str());
            self.broadcast_event(None, "ubus.object.remove", &data);
        }
    }

    fn describe(&self, id: u32, seq: u16, peer: u32) -> Option<Msg> {
        let obj = self.objects.get(&id)?;
        let t = obj.type_id?;
        Some(
            Msg::new(kind::DATA, seq, peer)
                .with(Attr::ObjPath(obj.path.clone()?))
                .with(Attr::ObjId(id))
                .with(Attr::ObjType(t))
                .with(Attr::Signature(self.types.get(&t)?.clone())),
        )
    }

    fn lookup(&mut self, client: u32, msg: &Msg) -> u32 {
        let ids: Vec<u32> = match msg.objpath() {
            None => self.paths.values().copied().collect(),
            Some("") => return status::INVALID_ARGUMENT,
            Some(p) => match p.strip_suffix('*') {
                Some(prefix) => self
                    .paths
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .map(|(_, &v)| v)
                    .collect(),
                None => self.paths.get(p).copied().into_iter().collect(),
            },
        };
        if ids.is_empty() && msg.objpath().is_some() {
            return status::NOT_FOUND;
        }
        for id in ids {
            if let Some(d) = self.describe(id, msg.seq, msg.peer) {
                self.send(client, &d);
            }
        }
        status::OK
    }

    fn invoke(&mut self, client: u32, msg: &Msg) -> Option<u32> {
        let (Some(id), Some(method)) = (msg.objid(), msg.method()) else {
            return Some(status::INVALID_ARGUMENT);
        };
        if id == EVENT_OBJECT {
            return Some(self.event_object(client, method, msg.data()));
        }
        let Some(obj) = self.objects.get(&id) else {
            return Some(status::NOT_FOUND);
        };
        let caller = self.clients.get(&client)?;
        let fwd = forwarded_invoke(
            msg.seq,
            client,
            id,
            method,
            &caller.user,
            &caller.group,
            msg.no_reply(),
            msg.data(),
        );
        self.send(obj.owner, &fwd);
        None
    }

    /// DATA/STATUS from an object's owner go back to the caller named in
    /// `peer`, with `peer` rewritten to the object id.
    fn relay(&mut self, client: u32, mut msg: Msg) {
        let Some(id) = msg.objid() else { return };
        let owned = self.objects.get(&id).is_some_and(|o| o.owner == client);
        if !owned || !self.clients.contains_key(&msg.peer) {
            return;
        }
        let to = msg.peer;
        msg.peer = id;
        self.send(to, &msg);
    }

    fn event_object(&mut self, client: u32, method: &str, data: Option<&Value>) -> u32 {
        let empty = Value::table();
        let data = data.unwrap_or(&empty);
        match method {
            "register" => {
                let (Some(objid), Some(pattern)) = (
                    data.get("object").and_then(Value::as_u32),
                    data.get("pattern").and_then(Value::as_str),
                ) else {
                    return status::INVALID_ARGUMENT;
                };
                if objid < FIRST_CLIENT_OBJECT {
                    return status::PERMISSION_DENIED;
                }
                match self.objects.get(&objid) {
                    None => return status::NOT_FOUND,
                    Some(o) if o.owner != client => return status::PERMISSION_DENIED,
                    Some(_) => {}
                }
                let (prefix, partial) = match pattern.strip_suffix('*') {
                    Some(p) => (p.to_owned(), true),
                    None => (pattern.to_owned(), false),
                };
                self.patterns.push(Pattern {
                    prefix,
                    partial,
                    objid,
                });
                status::OK
            }
            "send" => {
                let (Some(name), Some(payload)) = (
                    data.get("id").and_then(Value::as_str),
                    data.get("data").filter(|d| d.as_table().is_some()),
                ) else {
                    return status::INVALID_ARGUMENT;
                };
                if name.starts_with("ubus.") {
                    return status::PERMISSION_DENIED;
                }
                let (name, payload) = (name.to_owned(), payload.clone());
                self.broadcast_event(Some(client), &name, &payload);
                status::OK
            }
            _ => status::INVALID_COMMAND,
        }
    }

    /// Delivers an event once per matching listener object, never back to
    /// the sender's own objects.
    fn broadcast_event(&mut self, sender: Option<u32>, name: &str, data: &Value) {
        let mut seen = Vec::new();
        let targets: Vec<(u32, u32)> = self
            .patterns
            .iter()
            .filter(|p| {
                if p.partial {
                    name.starts_with(&p.prefix)
                } else {
                    name == p.prefix
                }
            })
            .filter_map(|p| self.objects.get(&p.objid).map(|o| (p.objid, o.owner)))
            .filter(|&(_, owner)| Some(owner) != sender)
            .collect();
        for (objid, owner) in targets {
            if seen.contains(&objid) {
                continue;
            }
            seen.push(objid);
            self.event_seq = self.event_seq.wrapping_add(1);
            let m = Msg::new(kind::INVOKE, self.event_seq, 0)
                .with(Attr::ObjId(objid))
                .with(Attr::Method(name.to_owned()))
                .with(Attr::Data(data.clone()));
            self.send(owner, &m);
        }
    }

    fn subscribe(&mut self, client: u32, msg: &Msg) -> u32 {
        let (Some(objid), Some(target)) = (msg.objid(), msg.target()) else {
            return status::INVALID_ARGUMENT;
        };
        match self.objects.get(&objid) {
            None => return status::NOT_FOUND,
            Some(o) if o.owner != client => return status::INVALID_ARGUMENT,
            Some(_) => {}
        }
        let Some(t) = self.objects.get_mut(&target) else {
            return status::NOT_FOUND;
        };
        if t.owner == client {
            return status::INVALID_ARGUMENT;
        }
        let first = t.subscribers.is_empty();
        t.subscribers.push(objid);
        let owner = t.owner;
        if first {
            let m = Msg::new(kind::NOTIFY, 0, 0)
                .with(Attr::ObjId(target))
                .with(Attr::Active(true));
            self.send(owner, &m);
        }
        status::OK
    }

    fn drop_subscription(&mut self, objid: u32, target: u32) -> bool {
        let Some(t) = self.objects.get_mut(&target) else {
            return false;
        };
        let before = t.subscribers.len();
        t.subscribers.retain(|&s| s != objid);
        let removed = t.subscribers.len() != before;
        if removed && t.subscribers.is_empty() {
            let m = Msg::new(kind::NOTIFY, 0, 0)
                .with(Attr::ObjId(target))
                .with(Attr::Active(false));
            let owner = t.owner;
            self.send(owner, &m);
        }
        removed
    }

    fn unsubscribe(&mut self, client: u32, msg: &Msg) -> u32 {
        let (Some(objid), Some(target)) = (msg.objid(), msg.target()) else {
            return status::INVALID_ARGUMENT;
        };
        match self.objects.get(&objid).map(|o| o.owner) {
            None => status::NOT_FOUND,
            Some(owner) if owner != client => status::INVALID_ARGUMENT,
            Some(_) if self.drop_subscription(objid, target) => status::OK,
            Some(_) => status::NOT_FOUND,
        }
    }

    fn notify(&mut self, client: u32, msg: &Msg) -> Option<u32> {
        let (Some(id), Some(method)) = (msg.objid(), msg.method()) else {
            return Some(status::INVALID_ARGUMENT);
        };
        let Some(obj) = self.objects.get(&id) else {
            return Some(status::NOT_FOUND);
        };
        if obj.owner != client {
            return Some(status::PERMISSION_DENIED);
        }
        let subs = obj.subscribers.clone();
        if !msg.no_reply() {
            let m = Msg::new(kind::STATUS, msg.seq, msg.peer)
                .with(Attr::ObjId(id))
                .with(Attr::Subscribers(subs.iter().map(|&s| (0, s)).collect()))
                .with(Attr::Status(status::OK));
            self.send(client, &m);
        }
        for sub in subs {
            let Some(owner) = self.objects.get(&sub).map(|o| o.owner) else {
                continue;
            };
            let mut m = Msg::new(kind::INVOKE, msg.seq, client);
            if msg.no_reply() {
                m = m.with(Attr::NoReply(true));
            }
            m = m
                .with(Attr::ObjId(sub))
                .with(Attr::Method(method.to_owned()));
            if let Some(d) = msg.data() {
                m = m.with(Attr::Data(d.clone()));
            }
            self.send(owner, &m);
        }
        None
    }
}

// ---------------------------------------------------------------------------
// Test-side client

/// Where a request's DATA messages and STATUS go.
type Answer = oneshot::Sender<(Vec<Msg>, Msg)>;
type Handler = Box<dyn FnMut(&str, &Value) -> Result<Value, u32> + Send>;

enum PeerCmd {
    Request {
        msg: Msg,
        reply: Answer,
    },
    /// ADD_OBJECT whose object is served by the handler from the moment
    /// ubusd names its id, before any INVOKE of it can be read.
    Publish {
        msg: Msg,
        reply: Answer,
        handler: Handler,
    },
    Send(Msg),
    Raw(Vec<u8>),
    Serve(u32, Handler),
    Events(u32),
}

/// One ubus client as a test uses it. Requests get their own seq; INVOKEs
/// to objects with a handler are answered by it; events go to
/// [`Peer::next_event`]; everything else unsolicited to
/// [`Peer::next_inbound`].
pub struct Peer {
    pub id: u32,
    cmd: mpsc::UnboundedSender<PeerCmd>,
    inbound: mpsc::UnboundedReceiver<Msg>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    listener: Option<u32>,
}

impl Peer {
    pub async fn connect(path: &Path) -> Peer {
        let (peer, task) = Peer::open(path).await;
        tokio::spawn(task);
        peer
    }

    /// Like [`Peer::connect`], with the connection served on a thread of
    /// its own until the `Peer` is dropped: it answers calls while the
    /// test's thread blocks, as another process (netifd) would.
    pub async fn connect_detached(path: &Path) -> Peer {
        let path = path.to_path_buf();
        let (tx, rx) = oneshot::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let (peer, task) = Peer::open(&path).await;
                let _ = tx.send(peer);
                task.await;
            });
        });
        rx.await.expect("the peer's thread connected")
    }

    /// Connects and reads HELLO; the returned task serves the connection.
    async fn open(path: &Path) -> (Peer, impl Future<Output = ()> + use<>) {
        let mut stream = UnixStream::connect(path).await.unwrap();
        let hello = read_msg(&mut stream).await.unwrap();
        assert_eq!(hello.kind, kind::HELLO);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, inbound) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let peer = Peer {
            id: hello.peer,
            cmd,
            inbound,
            events,
            listener: None,
        };
        (peer, peer_task(stream, cmd_rx, in_tx, ev_tx))
    }

    /// Sends a request; returns its DATA messages and final status.
    pub async fn request(&self, msg: Msg) -> (Vec<Msg>, u32) {
        self.request_within(msg, Duration::from_secs(5))
            .await
            .expect("no STATUS within 5 s")
    }

    pub async fn request_within(&self, msg: Msg, wait: Duration) -> Option<(Vec<Msg>, u32)> {
        let (data, status) = self.request_full(msg, wait).await?;
        Some((data, status.status().unwrap_or(u32::MAX)))
    }

    /// The DATA messages and the STATUS message itself.
    pub async fn request_full(&self, msg: Msg, wait: Duration) -> Option<(Vec<Msg>, Msg)> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(PeerCmd::Request { msg, reply }).unwrap();
        timeout(wait, rx).await.ok().and_then(Result::ok)
    }

    /// Sends a message without waiting for anything.
    pub fn send(&self, msg: Msg) {
        self.cmd.send(PeerCmd::Send(msg)).unwrap();
    }

    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.cmd.send(PeerCmd::Raw(bytes)).unwrap();
    }

    /// `ubus -v list <path>`: the DATA messages, or the status.
    pub async fn lookup(&self, path: &str) -> Result<Vec<Msg>, u32> {
        let msg = Msg::new(kind::LOOKUP, 0, 0).with(Attr::ObjPath(path.into()));
        match self.request(msg).await {
            (data, 0) => Ok(data),
            (_, st) => Err(st),
        }
    }

    pub async fn lookup_id(&self, path: &str) -> Result<u32, u32> {
        let data = self.lookup(path).await?;
        Ok(data.first().and_then(Msg::objid).unwrap())
    }

    /// `ubus call <path> <method> <args>`: the DATA payloads, or the status.
    pub async fn call(&self, path: &str, method: &str, args: Value) -> Result<Vec<Value>, u32> {
        let id = self.lookup_id(path).await?;
        let (data, st) = self.invoke(id, method, args).await;
        if st == 0 { Ok(data) } else { Err(st) }
    }

    pub async fn invoke(&self, objid: u32, method: &str, args: Value) -> (Vec<Value>, u32) {
        let msg = Msg::new(kind::INVOKE, 0, objid)
            .with(Attr::ObjId(objid))
            .with(Attr::Method(method.into()))
            .with(Attr::Data(args));
        let (data, st) = self.request(msg).await;
        (data.iter().filter_map(|m| m.data().cloned()).collect(), st)
    }

    /// Publishes an object with a signature; returns its id.
    pub async fn publish(&self, path: &str, signature: Value) -> u32 {
        let msg = Msg::new(kind::ADD_OBJECT, 0, 0)
            .with(Attr::ObjPath(path.into()))
            .with(Attr::Signature(signature));
        let (data, st) = self.request(msg).await;
        assert_eq!(st, 0, "publishing {path}");
        data[0].objid().unwrap()
    }

    /// Publishes `path` and answers its INVOKEs with `handler` from the
    /// start (a caller that sees `ubus.object.add` and calls at once is
    /// answered); returns the object id.
    pub async fn publish_serving(
        &self,
        path: &str,
        signature: Value,
        handler: impl FnMut(&str, &Value) -> Result<Value, u32> + Send + 'static,
    ) -> u32 {
        let msg = Msg::new(kind::ADD_OBJECT, 0, 0)
            .with(Attr::ObjPath(path.into()))
            .with(Attr::Signature(signature));
        let (reply, rx) = oneshot::channel();
        let handler = Box::new(handler);
        self.cmd
            .send(PeerCmd::Publish {
                msg,
                reply,
                handler,
            })
            .unwrap();
        let (data, st) = timeout(Duration::from_secs(5), rx)
            .await
            .expect("no STATUS within 5 s")
            .unwrap();
        assert_eq!(st.status(), Some(0), "publishing {path}");
        data[0].objid().unwrap()
    }

    /// Answers INVOKEs of `objid` with `handler` (DATA + STATUS 0, or the
    /// error status).
    pub fn serve(
        &self,
        objid: u32,
        handler: impl FnMut(&str, &Value) -> Result<Value, u32> + Send + 'static,
    ) {
        self.cmd
            .send(PeerCmd::Serve(objid, Box::new(handler)))
            .unwrap();
    }

    /// NOTIFY subscribers of `objid`; returns the subscriber ids ubusd
    /// reported.
    pub async fn notify(&self, objid: u32, kind: &str, data: Value) -> Vec<u32> {
        let msg = Msg::new(kind::NOTIFY, 0, objid)
            .with(Attr::ObjId(objid))
            .with(Attr::Method(kind.into()))
            .with(Attr::Data(data));
        let (_, status) = self
            .request_full(msg, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status.status(), Some(0));
        status.subscribers().unwrap_or_default()
    }

    /// `ubus listen <pattern>`: registers the pattern on this peer's
    /// listener object.
    pub async fn listen(&mut self, pattern: &str) {
        let objid = match self.listener {
            Some(id) => id,
            None => {
                let (data, st) = self.request(Msg::new(kind::ADD_OBJECT, 0, 0)).await;
                assert_eq!(st, 0);
                let id = data[0].objid().unwrap();
                self.cmd.send(PeerCmd::Events(id)).unwrap();
                self.listener = Some(id);
                id
            }
        };
        let data = Value::table()
            .with("object", objid)
            .with("pattern", pattern);
        let msg = Msg::new(kind::INVOKE, 0, EVENT_OBJECT)
            .with(Attr::ObjId(EVENT_OBJECT))
            .with(Attr::Method("register".into()))
            .with(Attr::Data(data));
        assert_eq!(self.request(msg).await.1, 0);
    }

    /// `ubus send <name> <data>`.
    pub async fn send_event(&self, name: &str, data: Value) -> u32 {
        let payload = Value::table().with("id", name).with("data", data);
        let msg = Msg::new(kind::INVOKE, 0, EVENT_OBJECT)
            .with(Attr::ObjId(EVENT_OBJECT))
            .with(Attr::Method("send".into()))
            .with(Attr::Data(payload));
        self.request(msg).await.1
    }

    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, Value)> {
        timeout(wait, self.events.recv()).await.ok().flatten()
    }

    pub async fn next_inbound(&mut self, wait: Duration) -> Option<Msg> {
        timeout(wait, self.inbound.recv()).await.ok().flatten()
    }

    /// Waits until `path` can be looked up.
    pub async fn wait_for(&self, path: &str, wait: Duration) -> u32 {
        let end = tokio::time::Instant::now() + wait;
        loop {
            if let Ok(id) = self.lookup_id(path).await {
                return id;
            }
            assert!(tokio::time::Instant::now() < end, "{path} never appeared");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn read_msg(stream: &mut UnixStream) -> Option<Msg> {
    let mut buf = vec![0u8; PREFIX];
    stream.read_exact(&mut buf).await.ok()?;
    let total = Msg::frame_len(&buf).ok()?;
    buf.resize(total, 0);
    stream.read_exact(&mut buf[PREFIX..]).await.ok()?;
    Msg::decode(&buf).ok()
}

async fn peer_task(
    stream: UnixStream,
    mut cmd_rx: mpsc::UnboundedReceiver<PeerCmd>,
    in_tx: mpsc::UnboundedSender<Msg>,
    ev_tx: mpsc::UnboundedSender<(String, Value)>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (frame_tx, mut frame_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; PREFIX];
            if rd.read_exact(&mut buf).await.is_err() {
                break;
            }
            let Ok(total) = Msg::frame_len(&buf) else {
                break;
            };
            buf.resize(total, 0);
            if rd.read_exact(&mut buf[PREFIX..]).await.is_err() {
                break;
            }
            match Msg::decode(&buf) {
                Ok(m) => {
                    if frame_tx.send(m).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    let mut seq: u16 = 0;
    let mut pending: HashMap<u16, (Vec<Msg>, Answer)> = HashMap::new();
    let mut handlers: HashMap<u32, Handler> = HashMap::new();
    // Handlers of objects being published, by the request's seq.
    let mut publishing: HashMap<u16, Handler> = HashMap::new();
    let mut event_objs: Vec<u32> = Vec::new();
    loop {
        tokio::select! {
            cmd = cmd_rx.recv() => {
                let Some(cmd) = cmd else { break };
                let bytes = match cmd {
                    PeerCmd::Request { mut msg, reply } => {
                        seq = seq.wrapping_add(1);
                        msg.seq = seq;
                        pending.insert(seq, (Vec::new(), reply));
                        msg.encode()
                    }
                    PeerCmd::Publish { mut msg, reply, handler } => {
                        seq = seq.wrapping_add(1);
                        msg.seq = seq;
                        pending.insert(seq, (Vec::new(), reply));
                        publishing.insert(seq, handler);
                        msg.encode()
                    }
                    PeerCmd::Send(mut msg) => {
                        seq = seq.wrapping_add(1);
                        msg.seq = seq;
                        msg.encode()
                    }
                    PeerCmd::Raw(bytes) => bytes,
                    PeerCmd::Serve(id, h) => {
                        handlers.insert(id, h);
                        continue;
                    }
                    PeerCmd::Events(id) => {
                        event_objs.push(id);
                        continue;
                    }
                };
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            m = frame_rx.recv() => {
                let Some(m) = m else { break };
                match m.kind {
                    kind::DATA if pending.contains_key(&m.seq) => {
                        if let (Some(id), Some(h)) = (m.objid(), publishing.remove(&m.seq)) {
                            handlers.insert(id, h);
                        }
                        if let Some(p) = pending.get_mut(&m.seq) {
                            p.0.push(m);
                        }
                    }
                    kind::STATUS if pending.contains_key(&m.seq) => {
                        publishing.remove(&m.seq);
                        if let Some((data, reply)) = pending.remove(&m.seq) {
                            let _ = reply.send((data, m));
                        }
                    }
                    kind::INVOKE if m.objid().is_some_and(|id| event_objs.contains(&id)) => {
                        let name = m.method().unwrap_or_default().to_owned();
                        let _ = ev_tx.send((name, m.data().cloned().unwrap_or_else(Value::table)));
                    }
                    kind::INVOKE if m.objid().is_some_and(|id| handlers.contains_key(&id)) => {
                        let objid = m.objid().unwrap();
                        let h = handlers.get_mut(&objid).unwrap();
                        let args = m.data().cloned().unwrap_or_else(Value::table);
                        let result = h(m.method().unwrap_or_default(), &args);
                        let mut out = Vec::new();
                        let st = match result {
                            Ok(v) => {
                                let d = Msg::new(kind::DATA, m.seq, m.peer)
                                    .with(Attr::ObjId(objid))
                                    .with(Attr::Data(v));
                                out.extend(d.encode());
                                0
                            }
                            Err(st) => st,
                        };
                        let s = Msg::new(kind::STATUS, m.seq, m.peer)
                            .with(Attr::Status(st))
                            .with(Attr::ObjId(objid));
                        out.extend(s.encode());
                        if wr.write_all(&out).await.is_err() {
                            break;
                        }
                    }
                    _ => {
                        let _ = in_tx.send(m);
                    }
                }
            }
        }
    }
    reader.abort();
}
