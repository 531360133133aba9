//! One connection to ubusd: registering our object, event listeners and
//! subscriptions, serving calls of our object, making calls, and matching
//! every STATUS and DATA to the request it answers.
//!
//! Owns: [`Session`] and the requests in flight on it. Everything that
//! outlives a connection is in [`Client`].

use std::collections::HashMap;

use log::{debug, info, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use super::{
    CallReply, Client, Command, End, Incoming, MAX_REQUESTS, MAX_SERVING, OBJECT_ADD_EVENT, Reply,
    pattern_matches, without_session,
};
use crate::proto::blob::{self, Value};
use crate::proto::ubus::{
    self as wire, Attr, Message, MsgType, PREFIX_LEN, SYSTEM_OBJECT_EVENT, Status, UBUS_MAX_MSGLEN,
    frame_len,
};

/// Our requests to ubusd awaiting their STATUS, by what they are for.
enum Pending {
    /// ADD_OBJECT for the published object.
    AddObject,
    /// ADD_OBJECT for the anonymous event listener object.
    AddListener,
    /// ADD_OBJECT for the anonymous subscriber object of a path.
    AddSubscriber(String),
    /// LOOKUP of a path we want to subscribe to.
    LookupTarget(String),
    /// SUBSCRIBE of a subscriber object to a target.
    Subscribe { path: String, target: u32 },
    /// INVOKE event `register`.
    Register(String),
    /// INVOKE event `send`.
    SendEvent(String),
    /// LOOKUP of a call's target; the INVOKE follows.
    LookupCall {
        path: String,
        method: String,
        args: Value,
        reply: oneshot::Sender<Result<Value, Status>>,
    },
    /// INVOKE of a call.
    Invoke {
        path: String,
        reply: oneshot::Sender<Result<Value, Status>>,
    },
}

struct Request {
    what: Pending,
    deadline: Instant,
    /// OBJID of the DATA answers to LOOKUP and ADD_OBJECT.
    objid: Option<u32>,
    /// DATA of the first answer to INVOKE.
    data: Option<Value>,
}

/// A call from a ubus client waiting for the daemon's answer.
struct Serving {
    method: String,
    seq: u16,
    peer: u32,
    objid: u32,
    deadline: Instant,
}

/// One subscription's state on this connection.
struct Sub {
    path: String,
    /// Our anonymous object receiving its notifications.
    objid: Option<u32>,
    /// The object subscribed to, once SUBSCRIBE succeeded.
    target: Option<u32>,
    /// A LOOKUP or SUBSCRIBE is under way.
    busy: bool,
}

/// State of one connection.
struct Session {
    wr: OwnedWriteHalf,
    seq: u16,
    requests: HashMap<u16, Request>,
    serving: HashMap<u64, Serving>,
    object: Option<u32>,
    listener: Option<u32>,
    /// Patterns registered on this connection (ours included).
    registered: Vec<String>,
    subs: Vec<Sub>,
    /// `Connected` was delivered.
    announced: bool,
}

pub(super) async fn session(client: &mut Client, stream: UnixStream) -> End {
    let (mut rd, wr) = stream.into_split();
    let mut s = Session {
        wr,
        seq: 0,
        requests: HashMap::new(),
        serving: HashMap::new(),
        object: None,
        listener: None,
        registered: Vec::new(),
        subs: Vec::new(),
        announced: false,
    };
    let end = match s.start(client).await {
        Ok(()) => s.run(client, &mut rd).await,
        Err(end) => end,
    };
    // Whatever was in flight fails with the connection.
    for (_, req) in s.requests.drain() {
        match req.what {
            Pending::LookupCall { reply, .. } | Pending::Invoke { reply, .. } => {
                let _ = reply.send(Err(Status::ConnectionFailed));
            }
            _ => {}
        }
    }
    end
}

impl Session {
    async fn run(&mut self, client: &mut Client, rd: &mut tokio::net::unix::OwnedReadHalf) -> End {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut inbuf: Vec<u8> = Vec::new();
        loop {
            let deadline = self.next_deadline();
            let step = tokio::select! {
                r = rd.read(&mut chunk) => match r {
                    Ok(0) => Err(End::Lost("closed by ubusd".into())),
                    Err(e) => Err(End::Lost(format!("read: {e}"))),
                    Ok(n) => {
                        inbuf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                        self.drain_frames(client, &mut inbuf).await
                    }
                },
                cmd = client.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.on_command(client, cmd).await,
                    None => Err(End::Shutdown),
                },
                Some(reply) = client.reply_rx.recv() => self.on_reply(client, reply).await,
                _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    self.expire(client).await
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Decodes every complete message in `inbuf`. The buffer never holds
    /// more than one message plus one read, as `frame_len` bounds each.
    async fn drain_frames(&mut self, client: &mut Client, inbuf: &mut Vec<u8>) -> Result<(), End> {
        while inbuf.len() >= PREFIX_LEN {
            let total = frame_len(inbuf).map_err(malformed)?;
            if inbuf.len() < total {
                inbuf.reserve(total - inbuf.len());
                break;
            }
            let decoded = Message::decode(inbuf.get(..total).unwrap_or(&[]));
            inbuf.drain(..total);
            match decoded {
                Ok(msg) => self.on_message(client, msg).await?,
                Err(wire::Error::UnknownType { kind, .. }) => {
                    debug!("ubus: ignoring message of unknown type {kind}");
                }
                Err(e) => return Err(malformed(e)),
            }
        }
        Ok(())
    }

    fn next_seq(&mut self) -> u16 {
        // Skips sequence numbers still awaiting an answer; there are at
        // most MAX_REQUESTS of them, so this ends quickly.
        loop {
            self.seq = self.seq.wrapping_add(1);
            if self.seq != 0 && !self.requests.contains_key(&self.seq) {
                return self.seq;
            }
        }
    }

    async fn write(&mut self, msg: &Message) -> Result<(), End> {
        let bytes = match msg.encode() {
            Ok(b) => b,
            Err(e) => {
                warn!("ubus: cannot encode {:?} message: {e}", msg.kind);
                return Ok(());
            }
        };
        self.wr
            .write_all(&bytes)
            .await
            .map_err(|e| End::Lost(format!("write: {e}")))
    }

    /// Sends a request and remembers what its answer is for.
    async fn request(
        &mut self,
        client: &Client,
        kind: MsgType,
        peer: u32,
        attrs: Vec<Attr>,
        what: Pending,
    ) -> Result<(), End> {
        let deadline = Instant::now() + client.opts.call_timeout;
        self.request_until(deadline, kind, peer, attrs, what).await
    }

    async fn request_until(
        &mut self,
        deadline: Instant,
        kind: MsgType,
        peer: u32,
        attrs: Vec<Attr>,
        what: Pending,
    ) -> Result<(), End> {
        if self.requests.len() >= MAX_REQUESTS {
            warn!("ubus: too many requests in flight");
            fail_pending(what, Status::UnknownError);
            return Ok(());
        }
        let seq = self.next_seq();
        let msg = Message {
            kind,
            seq,
            peer,
            attrs,
        };
        let req = Request {
            what,
            deadline,
            objid: None,
            data: None,
        };
        self.requests.insert(seq, req);
        self.write(&msg).await
    }

    /// Registers everything the connection needs: our object first, then
    /// the listener object (patterns and subscriptions follow its answer).
    async fn start(&mut self, client: &mut Client) -> Result<(), End> {
        let attrs = vec![
            Attr::ObjPath(client.object.name.clone()),
            Attr::Signature(client.signature.clone()),
        ];
        self.request(client, MsgType::AddObject, 0, attrs, Pending::AddObject)
            .await?;
        if !client.listens.is_empty() || !client.subs.is_empty() {
            self.add_listener(client).await?;
        }
        Ok(())
    }

    async fn add_listener(&mut self, client: &Client) -> Result<(), End> {
        if self.listener.is_some()
            || self
                .requests
                .values()
                .any(|r| matches!(r.what, Pending::AddListener))
        {
            return Ok(());
        }
        self.request(client, MsgType::AddObject, 0, vec![], Pending::AddListener)
            .await
    }

    /// Registers every wanted pattern not yet registered, ours included,
    /// then starts the subscriptions: ubusd handles our messages in order,
    /// so `ubus.object.add` is registered before any LOOKUP can miss it.
    async fn sync_listener(&mut self, client: &Client) -> Result<(), End> {
        let Some(listener) = self.listener else {
            return self.add_listener(client).await;
        };
        let mut wanted = client.listens.clone();
        if !client.subs.is_empty() {
            wanted.push(OBJECT_ADD_EVENT.to_owned());
        }
        for pattern in wanted {
            if self.registered.contains(&pattern) {
                continue;
            }
            self.registered.push(pattern.clone());
            let data = Value::table()
                .with("object", listener)
                .with("pattern", pattern.as_str());
            let attrs = vec![
                Attr::ObjId(SYSTEM_OBJECT_EVENT),
                Attr::Method("register".into()),
                Attr::Data(data),
            ];
            self.request(
                client,
                MsgType::Invoke,
                SYSTEM_OBJECT_EVENT,
                attrs,
                Pending::Register(pattern),
            )
            .await?;
        }
        for path in &client.subs {
            if !self.subs.iter().any(|s| &s.path == path) {
                self.subs.push(Sub {
                    path: path.clone(),
                    objid: None,
                    target: None,
                    busy: false,
                });
            }
        }
        for i in 0..self.subs.len() {
            self.advance_sub(client, i).await?;
        }
        Ok(())
    }

    /// Moves subscription `i` one step on: create its object, then look up
    /// its target (the SUBSCRIBE follows the LOOKUP's answer).
    async fn advance_sub(&mut self, client: &Client, i: usize) -> Result<(), End> {
        let Some(sub) = self.subs.get_mut(i) else {
            return Ok(());
        };
        if sub.busy || sub.target.is_some() {
            return Ok(());
        }
        sub.busy = true;
        let path = sub.path.clone();
        if sub.objid.is_none() {
            let what = Pending::AddSubscriber(path);
            self.request(client, MsgType::AddObject, 0, vec![], what)
                .await
        } else {
            let attrs = vec![Attr::ObjPath(path.clone())];
            let what = Pending::LookupTarget(path);
            self.request(client, MsgType::Lookup, 0, attrs, what).await
        }
    }

    async fn subscribe_to(&mut self, client: &Client, path: &str, target: u32) -> Result<(), End> {
        let Some(sub) = self.subs.iter_mut().find(|s| s.path == path) else {
            return Ok(());
        };
        let Some(objid) = sub.objid else {
            return Ok(());
        };
        sub.busy = true;
        let attrs = vec![Attr::ObjId(objid), Attr::Target(target)];
        let what = Pending::Subscribe {
            path: path.to_owned(),
            target,
        };
        self.request(client, MsgType::Subscribe, 0, attrs, what)
            .await
    }

    async fn on_command(&mut self, client: &mut Client, cmd: Command) -> Result<(), End> {
        match cmd {
            Command::SendEvent { name, data } => {
                if data.as_table().is_none() {
                    warn!("ubus: event {name} needs a table of data");
                    return Ok(());
                }
                let payload = Value::table().with("id", name.as_str()).with("data", data);
                let attrs = vec![
                    Attr::ObjId(SYSTEM_OBJECT_EVENT),
                    Attr::Method("send".into()),
                    Attr::Data(payload),
                ];
                self.request(
                    client,
                    MsgType::Invoke,
                    SYSTEM_OBJECT_EVENT,
                    attrs,
                    Pending::SendEvent(name),
                )
                .await
            }
            Command::Subscribe(path) => {
                if client.remember_sub(&path) {
                    self.sync_listener(client).await?;
                }
                Ok(())
            }
            Command::Listen(pattern) => {
                if client.remember_listen(&pattern) {
                    self.sync_listener(client).await?;
                }
                Ok(())
            }
            Command::Call {
                path,
                method,
                args,
                reply,
            } => {
                // Refuse what could never be sent, before asking ubusd.
                let fits = blob::encode_blobmsg(&args)
                    .map(|b| b.len() + 256 <= UBUS_MAX_MSGLEN)
                    .unwrap_or(false);
                if !fits {
                    let _ = reply.send(Err(Status::InvalidArgument));
                    return Ok(());
                }
                let attrs = vec![Attr::ObjPath(path.clone())];
                let what = Pending::LookupCall {
                    path,
                    method,
                    args,
                    reply,
                };
                self.request(client, MsgType::Lookup, 0, attrs, what).await
            }
        }
    }

    async fn on_message(&mut self, client: &mut Client, msg: Message) -> Result<(), End> {
        match msg.kind {
            MsgType::Data => {
                if let Some(req) = self.requests.get_mut(&msg.seq) {
                    if req.objid.is_none() {
                        req.objid = msg.objid();
                    }
                    if req.data.is_none() {
                        req.data = msg.data().cloned();
                    }
                }
                Ok(())
            }
            MsgType::Status => {
                let status = msg.status().unwrap_or(Status::InvalidArgument.code());
                match self.requests.remove(&msg.seq) {
                    Some(req) => self.complete(client, req, status).await,
                    None => Ok(()),
                }
            }
            MsgType::Invoke => self.on_invoke(client, msg).await,
            MsgType::Unsubscribe => {
                // ubusd: the target went away (`ubus_notify_unsubscribe`).
                let objid = msg.objid();
                if let Some(sub) = self
                    .subs
                    .iter_mut()
                    .find(|s| s.objid.is_some() && s.objid == objid)
                {
                    info!("ubus: {} went away; waiting for it to return", sub.path);
                    sub.target = None;
                }
                Ok(())
            }
            // Subscribers to our object came or went (ACTIVE); nothing to do.
            MsgType::Notify => Ok(()),
            other => {
                debug!("ubus: ignoring {other:?} from ubusd");
                Ok(())
            }
        }
    }

    /// A request's STATUS arrived (or its deadline passed, with TIMEOUT).
    async fn complete(
        &mut self,
        client: &mut Client,
        req: Request,
        status: u32,
    ) -> Result<(), End> {
        let ok = status == Status::Ok.code();
        let st = Status::from_code(status);
        match req.what {
            Pending::AddObject => {
                match (ok, req.objid) {
                    (true, Some(id)) => {
                        self.object = Some(id);
                        info!("ubus: published object {} ({id:08x})", client.object.name);
                    }
                    _ => warn!("ubus: cannot publish object {}: {st}", client.object.name),
                }
                if !self.announced {
                    self.announced = true;
                    client.deliver(Incoming::Connected)?;
                }
                Ok(())
            }
            Pending::AddListener => match (ok, req.objid) {
                (true, Some(id)) => {
                    self.listener = Some(id);
                    self.sync_listener(client).await
                }
                _ => {
                    warn!("ubus: cannot create the event listener: {st}");
                    Ok(())
                }
            },
            Pending::Register(pattern) => {
                if !ok {
                    warn!("ubus: cannot listen for {pattern}: {st}");
                }
                Ok(())
            }
            Pending::SendEvent(name) => {
                if !ok {
                    debug!("ubus: event {name} refused: {st}");
                }
                Ok(())
            }
            Pending::AddSubscriber(path) => {
                let Some(i) = self.subs.iter().position(|s| s.path == path) else {
                    return Ok(());
                };
                let objid = req.objid.filter(|_| ok);
                if let Some(sub) = self.subs.get_mut(i) {
                    sub.busy = false;
                    sub.objid = objid;
                }
                match objid {
                    Some(_) => self.advance_sub(client, i).await,
                    None => {
                        warn!("ubus: cannot create a subscriber for {path}: {st}");
                        Ok(())
                    }
                }
            }
            Pending::LookupTarget(path) => {
                if let Some(sub) = self.subs.iter_mut().find(|s| s.path == path) {
                    sub.busy = false;
                }
                match (ok, req.objid) {
                    (true, Some(target)) => self.subscribe_to(client, &path, target).await,
                    _ => {
                        info!("ubus: {path} not there yet ({st}); waiting for it");
                        Ok(())
                    }
                }
            }
            Pending::Subscribe { path, target } => {
                if let Some(sub) = self.subs.iter_mut().find(|s| s.path == path) {
                    sub.busy = false;
                    if ok {
                        sub.target = Some(target);
                        info!("ubus: subscribed to {path}");
                    } else {
                        info!("ubus: cannot subscribe to {path} ({st}); waiting for it");
                    }
                }
                Ok(())
            }
            Pending::LookupCall {
                path,
                method,
                args,
                reply,
            } => match (ok, req.objid) {
                (true, Some(objid)) => {
                    let attrs = vec![Attr::ObjId(objid), Attr::Method(method), Attr::Data(args)];
                    // The INVOKE keeps the call's deadline.
                    let what = Pending::Invoke { path, reply };
                    self.request_until(req.deadline, MsgType::Invoke, objid, attrs, what)
                        .await
                }
                (true, None) => {
                    let _ = reply.send(Err(Status::NotFound));
                    Ok(())
                }
                (false, _) => {
                    let _ = reply.send(Err(st));
                    Ok(())
                }
            },
            Pending::Invoke { path, reply } => {
                let result = if ok {
                    Ok(req.data.unwrap_or_else(Value::table))
                } else {
                    debug!("ubus: call to {path} failed: {st}");
                    Err(st)
                };
                let _ = reply.send(result);
                Ok(())
            }
        }
    }

    async fn on_invoke(&mut self, client: &mut Client, msg: Message) -> Result<(), End> {
        let objid = msg.objid().unwrap_or(0);
        let method = msg.method().unwrap_or_default().to_owned();
        let no_reply = msg.no_reply();
        let data = msg.data().cloned().unwrap_or_else(Value::table);
        if Some(objid) == self.listener {
            // Events come from ubusd itself (peer 0): nobody awaits a STATUS.
            return self.on_event(client, method, data).await;
        }
        if let Some(sub) = self.subs.iter().find(|s| s.objid == Some(objid)) {
            let object = sub.path.clone();
            client.deliver(Incoming::Notify {
                object,
                kind: method,
                data,
            })?;
            return self.status(&msg, objid, Status::Ok, no_reply).await;
        }
        if Some(objid) != self.object || objid == 0 {
            return self.status(&msg, objid, Status::NotFound, no_reply).await;
        }
        if !client.object.methods.iter().any(|(m, _)| *m == method) {
            return self
                .status(&msg, objid, Status::MethodNotFound, no_reply)
                .await;
        }
        // The one place every call to our object passes: rpcd's session key
        // goes, so a call through uhttpd means what the same `ubus call` means.
        let data = without_session(data);
        if !no_reply && self.serving.len() >= MAX_SERVING {
            warn!("ubus: too many calls waiting for an answer, refusing {method}");
            return self.status(&msg, objid, Status::UnknownError, false).await;
        }
        client.next_serial += 1;
        let serial = client.next_serial;
        let tx = if no_reply {
            None
        } else {
            self.serving.insert(
                serial,
                Serving {
                    method: method.clone(),
                    seq: msg.seq,
                    peer: msg.peer,
                    objid,
                    deadline: Instant::now() + client.opts.serve_timeout,
                },
            );
            Some(client.reply_tx.clone())
        };
        let reply = CallReply {
            tx,
            generation: client.generation,
            serial,
            explain: None,
        };
        client.deliver(Incoming::Call {
            method,
            args: data,
            reply,
        })
    }

    async fn on_event(
        &mut self,
        client: &mut Client,
        name: String,
        data: Value,
    ) -> Result<(), End> {
        if name == OBJECT_ADD_EVENT {
            let path = data.get("path").and_then(Value::as_str).unwrap_or_default();
            let id = data.get("id").and_then(Value::as_u32);
            let waiting = self
                .subs
                .iter()
                .any(|s| s.path == path && s.target.is_none() && !s.busy);
            if let (true, Some(id)) = (waiting, id) {
                let path = path.to_owned();
                self.subscribe_to(client, &path, id).await?;
            }
        }
        if client.listens.iter().any(|p| pattern_matches(p, &name)) {
            client.deliver(Incoming::Event { name, data })?;
        }
        Ok(())
    }

    /// STATUS for an INVOKE we received, unless the caller wants no reply.
    async fn status(
        &mut self,
        to: &Message,
        objid: u32,
        st: Status,
        no_reply: bool,
    ) -> Result<(), End> {
        if no_reply {
            return Ok(());
        }
        let msg = Message::new(MsgType::Status, to.seq, to.peer)
            .with(Attr::Status(st.code()))
            .with(Attr::ObjId(objid));
        self.write(&msg).await
    }

    async fn on_reply(&mut self, client: &Client, reply: Reply) -> Result<(), End> {
        if reply.generation != client.generation {
            return Ok(());
        }
        let Some(call) = self.serving.remove(&reply.serial) else {
            return Ok(()); // answered after its timeout
        };
        let result = match (reply.result, reply.explain) {
            (Err(st), Some(why)) => {
                let data = Message::new(MsgType::Data, call.seq, call.peer)
                    .with(Attr::ObjId(call.objid))
                    .with(Attr::Data(why));
                if let Ok(bytes) = data.encode() {
                    self.wr
                        .write_all(&bytes)
                        .await
                        .map_err(|e| End::Lost(format!("write: {e}")))?;
                }
                Err(st)
            }
            (r, _) => r,
        };
        let status = match result {
            Ok(value) => {
                let data = Message::new(MsgType::Data, call.seq, call.peer)
                    .with(Attr::ObjId(call.objid))
                    .with(Attr::Data(value));
                match data.encode() {
                    Ok(bytes) => {
                        self.wr
                            .write_all(&bytes)
                            .await
                            .map_err(|e| End::Lost(format!("write: {e}")))?;
                        Status::Ok
                    }
                    Err(e) => {
                        warn!("ubus: reply cannot be sent: {e}");
                        Status::UnknownError
                    }
                }
            }
            Err(st) => st,
        };
        let msg = Message::new(MsgType::Status, call.seq, call.peer)
            .with(Attr::Status(status.code()))
            .with(Attr::ObjId(call.objid));
        self.write(&msg).await
    }

    fn next_deadline(&self) -> Option<Instant> {
        let a = self.requests.values().map(|r| r.deadline).min();
        let b = self.serving.values().map(|s| s.deadline).min();
        match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn expire(&mut self, client: &mut Client) -> Result<(), End> {
        let now = Instant::now();
        let late: Vec<u16> = self
            .requests
            .iter()
            .filter(|(_, r)| r.deadline <= now)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in late {
            if let Some(req) = self.requests.remove(&seq) {
                debug!("ubus: request {seq} timed out");
                self.complete(client, req, Status::Timeout.code()).await?;
            }
        }
        let late: Vec<u64> = self
            .serving
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(&k, _)| k)
            .collect();
        for key in late {
            if let Some(call) = self.serving.remove(&key) {
                warn!("ubus: no answer to {} in time", call.method);
                let msg = Message::new(MsgType::Status, call.seq, call.peer)
                    .with(Attr::Status(Status::Timeout.code()))
                    .with(Attr::ObjId(call.objid));
                self.write(&msg).await?;
            }
        }
        Ok(())
    }
}

fn fail_pending(what: Pending, st: Status) {
    if let Pending::LookupCall { reply, .. } | Pending::Invoke { reply, .. } = what {
        let _ = reply.send(Err(st));
    }
}

fn malformed(e: wire::Error) -> End {
    End::Lost(format!("malformed message from ubusd: {e}"))
}
