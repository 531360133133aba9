//! A small ubus broker for tests, written from the protocol description in
//! openwrt.md §5 (not a port of ubusd), plus a test-side client that does
//! what `ubus call`, `ubus listen`, `ubus send` and a publishing daemon
//! (netifd) do.
//!
//! The broker runs on its own thread with its own current-thread runtime,
//! so tests can stop it and start it again on the same path.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rupnpd::proto::blob::Value;
use rupnpd::proto::ubus::{
    self as wire, Attr, Message, MsgType, PREFIX_LEN, SYSTEM_OBJECT_EVENT, SYSTEM_OBJECT_MAX,
    Status, frame_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// A unique socket path for one test.
pub fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rupnpd-ubus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.sock"))
}

// ---------------------------------------------------------------------------
// Broker

/// A running broker. Stopping it closes every connection and removes the
/// socket, as a ubusd restart does.
pub struct Broker {
    path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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
        let first_id = 0x1000 + (nanos % 0x10_0000) * 16;
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(serve(listener, stop_rx, first_id));
        });
        Broker {
            path: path.to_owned(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
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

async fn serve(
    listener: std::os::unix::net::UnixListener,
    mut stop: oneshot::Receiver<()>,
    first_id: u32,
) {
    let listener = tokio::net::UnixListener::from_std(listener).unwrap();
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut core = Core::new(first_id);
    let mut tasks = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            acc = listener.accept() => {
                let Ok((stream, _)) = acc else { continue };
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
                core.connect(id, tx);
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
/// drops a client whose header fails `ubus_validate_hdr`).
async fn read_frames(id: u32, mut rd: OwnedReadHalf, ev: mpsc::UnboundedSender<Ev>) {
    loop {
        let mut buf = vec![0u8; PREFIX_LEN];
        if rd.read_exact(&mut buf).await.is_err() {
            break;
        }
        let Ok(total) = frame_len(&buf) else { break };
        buf.resize(total, 0);
        if rd.read_exact(&mut buf[PREFIX_LEN..]).await.is_err() {
            break;
        }
        if ev.send(Ev::Frame(id, buf)).is_err() {
            return;
        }
    }
    let _ = ev.send(Ev::Closed(id));
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
    clients: HashMap<u32, mpsc::UnboundedSender<Vec<u8>>>,
    objects: HashMap<u32, Object>,
    paths: BTreeMap<String, u32>,
    types: HashMap<u32, Value>,
    patterns: Vec<Pattern>,
    event_seq: u16,
}

impl Core {
    fn new(first_id: u32) -> Core {
        Core {
            next_id: first_id,
            clients: HashMap::new(),
            objects: HashMap::new(),
            paths: BTreeMap::new(),
            types: HashMap::new(),
            patterns: Vec::new(),
            event_seq: 0,
        }
    }

    fn alloc_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    fn connect(&mut self, id: u32, tx: mpsc::UnboundedSender<Vec<u8>>) {
        self.clients.insert(id, tx);
        self.send(id, &Message::new(MsgType::Hello, 0, id));
    }

    fn send(&self, client: u32, msg: &Message) {
        if let Some(tx) = self.clients.get(&client) {
            let _ = tx.send(msg.encode().unwrap());
        }
    }

    fn status(&self, client: u32, req: &Message, st: u32) {
        let msg = Message::new(MsgType::Status, req.seq, req.peer).with(Attr::Status(st));
        self.send(client, &msg);
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
        let msg = match Message::decode(bytes) {
            Ok(m) => m,
            Err(wire::Error::UnknownType { seq, peer, .. }) => {
                let m = Message::new(MsgType::Status, seq, peer);
                self.status(client, &m, Status::InvalidCommand.code());
                return;
            }
            Err(_) => {
                // A client that cannot frame its messages is dropped.
                self.clients.remove(&client);
                self.disconnect(client);
                return;
            }
        };
        let st = match msg.kind {
            MsgType::Ping => {
                let mut pong = msg.clone();
                pong.kind = MsgType::Data;
                self.send(client, &pong);
                Some(0)
            }
            MsgType::AddObject => self.add_object(client, &msg),
            MsgType::RemoveObject => self.remove_object(client, &msg),
            MsgType::Lookup => Some(self.lookup(client, &msg)),
            MsgType::Invoke => self.invoke(client, &msg),
            MsgType::Status | MsgType::Data => {
                self.relay(client, msg.clone());
                None
            }
            MsgType::Subscribe => Some(self.subscribe(client, &msg)),
            MsgType::Unsubscribe => Some(self.unsubscribe(client, &msg)),
            MsgType::Notify => self.notify(client, &msg),
            _ => Some(Status::InvalidCommand.code()),
        };
        if let Some(st) = st {
            self.status(client, &msg, st);
        }
    }

    fn add_object(&mut self, client: u32, msg: &Message) -> Option<u32> {
        let type_id = if let Some(t) = msg.objtype() {
            if !self.types.contains_key(&t) {
                return Some(Status::InvalidArgument.code());
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
                return Some(Status::InvalidArgument.code());
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
        let mut reply = Message::new(MsgType::Data, msg.seq, msg.peer).with(Attr::ObjId(id));
        if let (Some(t), Some(_)) = (type_id, msg.signature()) {
            reply = reply.with(Attr::ObjType(t));
        }
        self.send(client, &reply);
        if let Some(p) = path {
            let data = Value::table().with("id", id).with("path", p.as_str());
            self.broadcast_event(None, "ubus.object.add", &data);
        }
        Some(0)
    }

    fn remove_object(&mut self, client: u32, msg: &Message) -> Option<u32> {
        let Some(id) = msg.objid() else {
            return Some(Status::InvalidArgument.code());
        };
        match self.objects.get(&id) {
            None => return Some(Status::NotFound.code()),
            Some(o) if o.owner != client => return Some(Status::PermissionDenied.code()),
            Some(_) => {}
        }
        let reply = Message::new(MsgType::Data, msg.seq, msg.peer).with(Attr::ObjId(id));
        self.send(client, &reply);
        self.free_object(id);
        Some(0)
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
                let m = Message::new(MsgType::Unsubscribe, 0, 0)
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

    fn describe(&self, id: u32) -> Option<Message> {
        let obj = self.objects.get(&id)?;
        let t = obj.type_id?;
        Some(
            Message::new(MsgType::Data, 0, 0)
                .with(Attr::ObjPath(obj.path.clone()?))
                .with(Attr::ObjId(id))
                .with(Attr::ObjType(t))
                .with(Attr::Signature(self.types.get(&t)?.clone())),
        )
    }

    fn lookup(&mut self, client: u32, msg: &Message) -> u32 {
        let ids: Vec<u32> = match msg.objpath() {
            None => self.paths.values().copied().collect(),
            Some("") => return Status::InvalidArgument.code(),
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
            return Status::NotFound.code();
        }
        for id in ids {
            if let Some(mut d) = self.describe(id) {
                d.seq = msg.seq;
                d.peer = msg.peer;
                self.send(client, &d);
            }
        }
        0
    }

    fn invoke(&mut self, client: u32, msg: &Message) -> Option<u32> {
        let (Some(id), Some(method)) = (msg.objid(), msg.method()) else {
            return Some(Status::InvalidArgument.code());
        };
        if id == SYSTEM_OBJECT_EVENT {
            return Some(self.event_object(client, method, msg.data()));
        }
        let Some(obj) = self.objects.get(&id) else {
            return Some(Status::NotFound.code());
        };
        // Forwarded with the caller's seq and the caller's id as peer.
        let mut fwd = Message::new(MsgType::Invoke, msg.seq, client)
            .with(Attr::ObjId(id))
            .with(Attr::Method(method.to_owned()));
        if msg.no_reply() {
            fwd = fwd.with(Attr::NoReply(true));
        }
        if let Some(d) = msg.data() {
            fwd = fwd.with(Attr::Data(d.clone()));
        }
        self.send(obj.owner, &fwd);
        None
    }

    /// DATA/STATUS from an object's owner go back to the caller named in
    /// `peer`, with `peer` rewritten to the object id.
    fn relay(&mut self, client: u32, mut msg: Message) {
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
                    return Status::InvalidArgument.code();
                };
                if objid < SYSTEM_OBJECT_MAX {
                    return Status::PermissionDenied.code();
                }
                match self.objects.get(&objid) {
                    None => return Status::NotFound.code(),
                    Some(o) if o.owner != client => return Status::PermissionDenied.code(),
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
                0
            }
            "send" => {
                let (Some(name), Some(payload)) = (
                    data.get("id").and_then(Value::as_str),
                    data.get("data").filter(|d| d.as_table().is_some()),
                ) else {
                    return Status::InvalidArgument.code();
                };
                if name.starts_with("ubus.") {
                    return Status::PermissionDenied.code();
                }
                let (name, payload) = (name.to_owned(), payload.clone());
                self.broadcast_event(Some(client), &name, &payload);
                0
            }
            _ => Status::InvalidCommand.code(),
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
            let m = Message::new(MsgType::Invoke, self.event_seq, 0)
                .with(Attr::ObjId(objid))
                .with(Attr::Method(name.to_owned()))
                .with(Attr::Data(data.clone()));
            self.send(owner, &m);
        }
    }

    fn subscribe(&mut self, client: u32, msg: &Message) -> u32 {
        let (Some(objid), Some(target)) = (msg.objid(), msg.target()) else {
            return Status::InvalidArgument.code();
        };
        match self.objects.get(&objid) {
            None => return Status::NotFound.code(),
            Some(o) if o.owner != client => return Status::InvalidArgument.code(),
            Some(_) => {}
        }
        let Some(t) = self.objects.get_mut(&target) else {
            return Status::NotFound.code();
        };
        if t.owner == client {
            return Status::InvalidArgument.code();
        }
        let first = t.subscribers.is_empty();
        t.subscribers.push(objid);
        let owner = t.owner;
        if first {
            let m = Message::new(MsgType::Notify, 0, 0)
                .with(Attr::ObjId(target))
                .with(Attr::Active(true));
            self.send(owner, &m);
        }
        0
    }

    fn drop_subscription(&mut self, objid: u32, target: u32) -> bool {
        let Some(t) = self.objects.get_mut(&target) else {
            return false;
        };
        let before = t.subscribers.len();
        t.subscribers.retain(|&s| s != objid);
        let removed = t.subscribers.len() != before;
        if removed && t.subscribers.is_empty() {
            let m = Message::new(MsgType::Notify, 0, 0)
                .with(Attr::ObjId(target))
                .with(Attr::Active(false));
            let owner = t.owner;
            self.send(owner, &m);
        }
        removed
    }

    fn unsubscribe(&mut self, client: u32, msg: &Message) -> u32 {
        let (Some(objid), Some(target)) = (msg.objid(), msg.target()) else {
            return Status::InvalidArgument.code();
        };
        match self.objects.get(&objid).map(|o| o.owner) {
            None => Status::NotFound.code(),
            Some(owner) if owner != client => Status::InvalidArgument.code(),
            Some(_) if self.drop_subscription(objid, target) => 0,
            Some(_) => Status::NotFound.code(),
        }
    }

    fn notify(&mut self, client: u32, msg: &Message) -> Option<u32> {
        let (Some(id), Some(method)) = (msg.objid(), msg.method()) else {
            return Some(Status::InvalidArgument.code());
        };
        let Some(obj) = self.objects.get(&id) else {
            return Some(Status::NotFound.code());
        };
        if obj.owner != client {
            return Some(Status::PermissionDenied.code());
        }
        let subs = obj.subscribers.clone();
        if !msg.no_reply() {
            let m = Message::new(MsgType::Status, msg.seq, msg.peer)
                .with(Attr::ObjId(id))
                .with(Attr::Subscribers(subs.clone()))
                .with(Attr::Status(0));
            self.send(client, &m);
        }
        for sub in subs {
            let Some(owner) = self.objects.get(&sub).map(|o| o.owner) else {
                continue;
            };
            let mut m = Message::new(MsgType::Invoke, msg.seq, client);
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
type Answer = oneshot::Sender<(Vec<Message>, Message)>;
type Handler = Box<dyn FnMut(&str, &Value) -> Result<Value, u32> + Send>;

enum PeerCmd {
    Request { msg: Message, reply: Answer },
    Send(Message),
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
    inbound: mpsc::UnboundedReceiver<Message>,
    events: mpsc::UnboundedReceiver<(String, Value)>,
    listener: Option<u32>,
}

impl Peer {
    pub async fn connect(path: &Path) -> Peer {
        let mut stream = UnixStream::connect(path).await.unwrap();
        let hello = read_msg(&mut stream).await.unwrap();
        assert_eq!(hello.kind, MsgType::Hello);
        let (cmd, cmd_rx) = mpsc::unbounded_channel();
        let (in_tx, inbound) = mpsc::unbounded_channel();
        let (ev_tx, events) = mpsc::unbounded_channel();
        tokio::spawn(peer_task(stream, cmd_rx, in_tx, ev_tx));
        Peer {
            id: hello.peer,
            cmd,
            inbound,
            events,
            listener: None,
        }
    }

    /// Sends a request; returns its DATA messages and final status.
    pub async fn request(&self, msg: Message) -> (Vec<Message>, u32) {
        self.request_within(msg, Duration::from_secs(5))
            .await
            .expect("no STATUS within 5 s")
    }

    pub async fn request_within(
        &self,
        msg: Message,
        wait: Duration,
    ) -> Option<(Vec<Message>, u32)> {
        let (data, status) = self.request_full(msg, wait).await?;
        Some((data, status.status().unwrap_or(u32::MAX)))
    }

    /// The DATA messages and the STATUS message itself.
    pub async fn request_full(
        &self,
        msg: Message,
        wait: Duration,
    ) -> Option<(Vec<Message>, Message)> {
        let (reply, rx) = oneshot::channel();
        self.cmd.send(PeerCmd::Request { msg, reply }).unwrap();
        timeout(wait, rx).await.ok().and_then(Result::ok)
    }

    /// Sends a message without waiting for anything.
    pub fn send(&self, msg: Message) {
        self.cmd.send(PeerCmd::Send(msg)).unwrap();
    }

    pub fn send_raw(&self, bytes: Vec<u8>) {
        self.cmd.send(PeerCmd::Raw(bytes)).unwrap();
    }

    /// `ubus -v list <path>`: the DATA messages, or the status.
    pub async fn lookup(&self, path: &str) -> Result<Vec<Message>, u32> {
        let msg = Message::new(MsgType::Lookup, 0, 0).with(Attr::ObjPath(path.into()));
        match self.request(msg).await {
            (data, 0) => Ok(data),
            (_, st) => Err(st),
        }
    }

    pub async fn lookup_id(&self, path: &str) -> Result<u32, u32> {
        let data = self.lookup(path).await?;
        Ok(data.first().and_then(Message::objid).unwrap())
    }

    /// `ubus call <path> <method> <args>`: the DATA payloads, or the status.
    pub async fn call(&self, path: &str, method: &str, args: Value) -> Result<Vec<Value>, u32> {
        let id = self.lookup_id(path).await?;
        let (data, st) = self.invoke(id, method, args).await;
        if st == 0 { Ok(data) } else { Err(st) }
    }

    pub async fn invoke(&self, objid: u32, method: &str, args: Value) -> (Vec<Value>, u32) {
        let msg = Message::new(MsgType::Invoke, 0, objid)
            .with(Attr::ObjId(objid))
            .with(Attr::Method(method.into()))
            .with(Attr::Data(args));
        let (data, st) = self.request(msg).await;
        (data.iter().filter_map(|m| m.data().cloned()).collect(), st)
    }

    /// Publishes an object with a signature; returns its id.
    pub async fn publish(&self, path: &str, signature: Value) -> u32 {
        let msg = Message::new(MsgType::AddObject, 0, 0)
            .with(Attr::ObjPath(path.into()))
            .with(Attr::Signature(signature));
        let (data, st) = self.request(msg).await;
        assert_eq!(st, 0, "publishing {path}");
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
        let msg = Message::new(MsgType::Notify, 0, objid)
            .with(Attr::ObjId(objid))
            .with(Attr::Method(kind.into()))
            .with(Attr::Data(data));
        let (_, status) = self
            .request_full(msg, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(status.status(), Some(0));
        status.subscribers().unwrap_or_default().to_vec()
    }

    /// `ubus listen <pattern>`: registers the pattern on this peer's
    /// listener object.
    pub async fn listen(&mut self, pattern: &str) {
        let objid = match self.listener {
            Some(id) => id,
            None => {
                let (data, st) = self.request(Message::new(MsgType::AddObject, 0, 0)).await;
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
        let msg = Message::new(MsgType::Invoke, 0, SYSTEM_OBJECT_EVENT)
            .with(Attr::ObjId(SYSTEM_OBJECT_EVENT))
            .with(Attr::Method("register".into()))
            .with(Attr::Data(data));
        assert_eq!(self.request(msg).await.1, 0);
    }

    /// `ubus send <name> <data>`.
    pub async fn send_event(&self, name: &str, data: Value) -> u32 {
        let payload = Value::table().with("id", name).with("data", data);
        let msg = Message::new(MsgType::Invoke, 0, SYSTEM_OBJECT_EVENT)
            .with(Attr::ObjId(SYSTEM_OBJECT_EVENT))
            .with(Attr::Method("send".into()))
            .with(Attr::Data(payload));
        self.request(msg).await.1
    }

    pub async fn next_event(&mut self, wait: Duration) -> Option<(String, Value)> {
        timeout(wait, self.events.recv()).await.ok().flatten()
    }

    pub async fn next_inbound(&mut self, wait: Duration) -> Option<Message> {
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

async fn read_msg(stream: &mut UnixStream) -> Option<Message> {
    let mut buf = vec![0u8; PREFIX_LEN];
    stream.read_exact(&mut buf).await.ok()?;
    let total = frame_len(&buf).ok()?;
    buf.resize(total, 0);
    stream.read_exact(&mut buf[PREFIX_LEN..]).await.ok()?;
    Message::decode(&buf).ok()
}

async fn peer_task(
    stream: UnixStream,
    mut cmd_rx: mpsc::UnboundedReceiver<PeerCmd>,
    in_tx: mpsc::UnboundedSender<Message>,
    ev_tx: mpsc::UnboundedSender<(String, Value)>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (frame_tx, mut frame_rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let mut buf = vec![0u8; PREFIX_LEN];
            if rd.read_exact(&mut buf).await.is_err() {
                break;
            }
            let Ok(total) = frame_len(&buf) else { break };
            buf.resize(total, 0);
            if rd.read_exact(&mut buf[PREFIX_LEN..]).await.is_err() {
                break;
            }
            match Message::decode(&buf) {
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
    let mut pending: HashMap<u16, (Vec<Message>, Answer)> = HashMap::new();
    let mut handlers: HashMap<u32, Handler> = HashMap::new();
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
                        msg.encode().unwrap()
                    }
                    PeerCmd::Send(mut msg) => {
                        seq = seq.wrapping_add(1);
                        msg.seq = seq;
                        msg.encode().unwrap()
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
                    MsgType::Data if pending.contains_key(&m.seq) => {
                        if let Some(p) = pending.get_mut(&m.seq) {
                            p.0.push(m);
                        }
                    }
                    MsgType::Status if pending.contains_key(&m.seq) => {
                        if let Some((data, reply)) = pending.remove(&m.seq) {
                            let _ = reply.send((data, m));
                        }
                    }
                    MsgType::Invoke if m.objid().is_some_and(|id| event_objs.contains(&id)) => {
                        let name = m.method().unwrap_or_default().to_owned();
                        let _ = ev_tx.send((name, m.data().cloned().unwrap_or_else(Value::table)));
                    }
                    MsgType::Invoke if m.objid().is_some_and(|id| handlers.contains_key(&id)) => {
                        let objid = m.objid().unwrap();
                        let h = handlers.get_mut(&objid).unwrap();
                        let args = m.data().cloned().unwrap_or_else(Value::table);
                        let result = h(m.method().unwrap_or_default(), &args);
                        let mut out = Vec::new();
                        let st = match result {
                            Ok(v) => {
                                let d = Message::new(MsgType::Data, m.seq, m.peer)
                                    .with(Attr::ObjId(objid))
                                    .with(Attr::Data(v));
                                out.extend(d.encode().unwrap());
                                0
                            }
                            Err(st) => st,
                        };
                        let s = Message::new(MsgType::Status, m.seq, m.peer)
                            .with(Attr::Status(st))
                            .with(Attr::ObjId(objid));
                        out.extend(s.encode().unwrap());
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

// ---------------------------------------------------------------------------
// JSON-ish values, as typed on the `ubus` command line

/// Parses JSON into a [`Value`] the way `blobmsg_add_json_from_string`
/// types it: integers as INT32 when they fit (else INT64), booleans as
/// INT8, `null` as UNSPEC. Panics on bad input (tests only).
pub fn json(s: &str) -> Value {
    let mut p = Json {
        b: s.as_bytes(),
        i: 0,
    };
    let v = p.value();
    p.ws();
    assert_eq!(p.i, p.b.len(), "trailing JSON in {s:?}");
    v
}

struct Json<'a> {
    b: &'a [u8],
    i: usize,
}

impl Json<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Value {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut t = Value::table();
                if self.eat(b'}') {
                    return t;
                }
                loop {
                    self.ws();
                    let k = self.string();
                    assert!(self.eat(b':'));
                    let v = self.value();
                    t.push(&k, v);
                    if self.eat(b'}') {
                        return t;
                    }
                    assert!(self.eat(b','));
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.eat(b']') {
                    return Value::Array(items);
                }
                loop {
                    items.push(self.value());
                    if self.eat(b']') {
                        return Value::Array(items);
                    }
                    assert!(self.eat(b','));
                }
            }
            b'"' => Value::String(self.string()),
            b't' => self.word("true", Value::Bool(true)),
            b'f' => self.word("false", Value::Bool(false)),
            b'n' => self.word("null", Value::Unspec),
            _ => {
                let start = self.i;
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).unwrap();
                if let Ok(n) = s.parse::<i64>() {
                    match i32::try_from(n) {
                        Ok(n) => Value::Int32(n),
                        Err(_) => Value::Int64(n),
                    }
                } else {
                    Value::Double(s.parse().unwrap())
                }
            }
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Value {
        assert!(self.b[self.i..].starts_with(w.as_bytes()));
        self.i += w.len();
        v
    }

    fn string(&mut self) -> String {
        assert_eq!(self.b[self.i], b'"');
        self.i += 1;
        let mut out = String::new();
        loop {
            let c = self.b[self.i];
            self.i += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    let e = self.b[self.i];
                    self.i += 1;
                    out.push(match e {
                        b'n' => '\n',
                        b't' => '\t',
                        other => other as char,
                    });
                }
                _ => {
                    // Copy a whole UTF-8 sequence.
                    let start = self.i - 1;
                    while self.b.get(self.i).is_some_and(|b| b & 0xc0 == 0x80) {
                        self.i += 1;
                    }
                    out.push_str(std::str::from_utf8(&self.b[start..self.i]).unwrap());
                }
            }
        }
    }
}
