//! The ubus connection: our object, calls to other objects, events and
//! notifications (openwrt.md §5.3), kept alive across ubusd restarts.
//!
//! Owns: one task holding the unix socket to ubusd. The daemon talks to it
//! through channels only: a [`Handle`] sends commands in, and a receiver
//! carries [`Incoming`] calls, notifications and events out, so the
//! daemon's single loop stays in charge. Uses `proto::ubus`/`proto::blob`
//! for every byte; must not import `core` or `daemon`.
//!
//! Failure policy: ubus is optional. Without ubusd the task warns once and
//! retries quietly; a dropped connection is re-made with backoff and the
//! object, event listeners and subscriptions are registered again. A
//! malformed message from the socket resets the connection; nothing here
//! panics or ends the daemon.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use log::{debug, info, warn};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};

pub use crate::proto::blob::{BlobType, Value};
use crate::proto::ubus::{self as wire, Message, MsgType, PREFIX_LEN, frame_len};
pub use crate::proto::ubus::{Status, UBUS_MAX_MSGLEN};

/// The socket of current OpenWrt releases.
pub const DEFAULT_SOCKET: &str = "/var/run/ubus/ubus.sock";
/// The socket of releases before 19.07, tried when the default is absent.
pub const LEGACY_SOCKET: &str = "/var/run/ubus.sock";

/// Event announcing a new object (`ubusd_send_obj_event`).
const OBJECT_ADD_EVENT: &str = "ubus.object.add";
/// Calls from ubus clients that may wait for the daemon at once; more are
/// answered UNKNOWN_ERROR at once.
const MAX_SERVING: usize = 32;
/// Our own requests awaiting a STATUS at once.
const MAX_REQUESTS: usize = 256;
/// Commands queued from [`Handle`]s.
const COMMAND_QUEUE: usize = 64;
/// Messages queued for the daemon; past this, new ones are dropped.
const INCOMING_QUEUE: usize = 256;
/// Subscriptions and event patterns kept (each costs an object in ubusd).
const MAX_SUBSCRIPTIONS: usize = 32;
const MAX_PATTERNS: usize = 32;
/// How long ubusd has to send HELLO after we connect.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// The object we publish: its path and, per method, the arguments with
/// their blobmsg types (what `ubus -v list` shows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSpec {
    pub name: String,
    pub methods: Vec<(String, Vec<(String, BlobType)>)>,
}

/// Connection settings; [`Options::new`] gives the production values.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--ubus-socket`; `None` tries [`DEFAULT_SOCKET`] then [`LEGACY_SOCKET`].
    pub socket: Option<PathBuf>,
    /// First delay before reconnecting; doubles up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How long a [`Handle::call`] waits for the callee's STATUS.
    pub call_timeout: Duration,
    /// How long a caller of our object waits for the daemon's answer before
    /// it gets UBUS_STATUS_TIMEOUT.
    pub serve_timeout: Duration,
}

impl Options {
    pub fn new(socket: Option<PathBuf>) -> Options {
        Options {
            socket,
            retry_min: Duration::from_secs(2),
            retry_max: Duration::from_secs(5),
            call_timeout: Duration::from_secs(5),
            serve_timeout: Duration::from_secs(5),
        }
    }

    fn paths(&self) -> Vec<PathBuf> {
        match &self.socket {
            Some(p) => vec![p.clone()],
            None => vec![DEFAULT_SOCKET.into(), LEGACY_SOCKET.into()],
        }
    }
}

/// What the connection hands to the daemon.
#[derive(Debug)]
pub enum Incoming {
    /// A method of our object was invoked; answer through `reply`.
    Call {
        method: String,
        args: Value,
        reply: CallReply,
    },
    /// A notification from an object we subscribed to (`object` is the path
    /// given to [`Handle::subscribe`], `kind` e.g. `interface.update`).
    Notify {
        object: String,
        kind: String,
        data: Value,
    },
    /// An event matching a pattern given to [`Handle::listen`].
    Event { name: String, data: Value },
    /// Connected (again) and our object is registered (or refused, which is
    /// logged): a good moment to re-read state such as the WAN status.
    Connected,
    /// The connection to ubusd was lost; reconnection is under way.
    Disconnected,
}

/// The answer to one [`Incoming::Call`]. Dropping it unanswered answers
/// UBUS_STATUS_UNKNOWN_ERROR; answering after the serve timeout does nothing.
pub struct CallReply {
    tx: Option<mpsc::Sender<Reply>>,
    generation: u64,
    serial: u64,
    explain: Option<Value>,
}

impl CallReply {
    /// `Ok(table)` sends DATA then STATUS 0; `Err(status)` sends STATUS only.
    /// A call made with NO_REPLY ignores this.
    pub fn reply(mut self, result: Result<Value, Status>) {
        self.send(result);
    }

    /// Fails the call with `status`, after a DATA `{"error": message}`
    /// that says what was wrong (`ubus call` prints it).
    pub fn fail(mut self, status: Status, message: &str) {
        self.explain = Some(Value::table().with("error", message));
        self.send(Err(status));
    }

    /// Whether the caller asked for no answer (NO_REPLY).
    pub fn is_no_reply(&self) -> bool {
        self.tx.is_none()
    }

    fn send(&mut self, result: Result<Value, Status>) {
        if let Some(tx) = self.tx.take() {
            let r = Reply {
                generation: self.generation,
                serial: self.serial,
                result,
                explain: self.explain.take(),
            };
            // Full only if far more replies than MAX_SERVING are in flight;
            // the serve timeout then answers the caller.
            let _ = tx.try_send(r);
        }
    }
}

impl Drop for CallReply {
    fn drop(&mut self) {
        self.send(Err(Status::UnknownError));
    }
}

impl fmt::Debug for CallReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallReply")
            .field("serial", &self.serial)
            .field("no_reply", &self.tx.is_none())
            .finish()
    }
}

struct Reply {
    generation: u64,
    serial: u64,
    result: Result<Value, Status>,
    /// With an error: a table sent as DATA before the STATUS.
    explain: Option<Value>,
}

enum Command {
    SendEvent {
        name: String,
        data: Value,
    },
    Subscribe(String),
    Listen(String),
    Call {
        path: String,
        method: String,
        args: Value,
        reply: oneshot::Sender<Result<Value, Status>>,
    },
}

/// Sends commands to the connection task. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Command>,
    call_timeout: Duration,
}

impl Handle {
    /// Broadcasts event `name` with `data` (a table). Dropped, with a debug
    /// log, while disconnected: events describe the present.
    pub fn send_event(&self, name: &str, data: Value) {
        self.command(Command::SendEvent {
            name: name.to_owned(),
            data,
        });
    }

    /// Follows the notifications of `object_path`, now and whenever it
    /// (re)appears; they arrive as [`Incoming::Notify`].
    pub fn subscribe(&self, object_path: &str) {
        self.command(Command::Subscribe(object_path.to_owned()));
    }

    /// Receives events named `event_pattern` (a trailing `*` matches a
    /// prefix) as [`Incoming::Event`].
    pub fn listen(&self, event_pattern: &str) {
        self.command(Command::Listen(event_pattern.to_owned()));
    }

    /// `ubus call path method args`: the callee's DATA (an empty table if it
    /// sent none) or its status. Not connected → CONNECTION_FAILED; no
    /// STATUS within the call timeout → TIMEOUT; `args` over the message
    /// limit → INVALID_ARGUMENT.
    pub async fn call(&self, path: &str, method: &str, args: Value) -> Result<Value, Status> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Call {
            path: path.to_owned(),
            method: method.to_owned(),
            args,
            reply,
        };
        if self.tx.send(cmd).await.is_err() {
            return Err(Status::ConnectionFailed);
        }
        // The task answers every call itself; this bound only guards
        // against a task that has gone away.
        match timeout(self.call_timeout + Duration::from_secs(1), rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(Status::ConnectionFailed),
            Err(_) => Err(Status::Timeout),
        }
    }

    fn command(&self, cmd: Command) {
        if let Err(e) = self.tx.try_send(cmd) {
            warn!("ubus: command queue unavailable, dropping a command: {e}");
        }
    }
}

/// Starts the connection task with production [`Options`]. Must be called
/// inside the tokio runtime. The task ends when every [`Handle`] and the
/// receiver are dropped.
pub fn spawn(socket: Option<PathBuf>, object: ObjectSpec) -> (Handle, mpsc::Receiver<Incoming>) {
    spawn_with(Options::new(socket), object)
}

/// [`spawn`] with explicit options (tests use short timeouts).
pub fn spawn_with(opts: Options, object: ObjectSpec) -> (Handle, mpsc::Receiver<Incoming>) {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
    let (in_tx, in_rx) = mpsc::channel(INCOMING_QUEUE);
    let (reply_tx, reply_rx) = mpsc::channel(MAX_SERVING * 2);
    let handle = Handle {
        tx: cmd_tx,
        call_timeout: opts.call_timeout,
    };
    let signature = wire::signature(&object.methods);
    let client = Client {
        opts,
        object,
        signature,
        listens: Vec::new(),
        subs: Vec::new(),
        cmd_rx,
        in_tx,
        reply_tx,
        reply_rx,
        generation: 0,
        next_serial: 0,
    };
    tokio::spawn(run(client));
    (handle, in_rx)
}

/// State that outlives a connection: what we want registered, and the
/// channels.
struct Client {
    opts: Options,
    object: ObjectSpec,
    signature: Value,
    /// Patterns the daemon asked for.
    listens: Vec<String>,
    /// Object paths the daemon subscribed to.
    subs: Vec<String>,
    cmd_rx: mpsc::Receiver<Command>,
    in_tx: mpsc::Sender<Incoming>,
    reply_tx: mpsc::Sender<Reply>,
    reply_rx: mpsc::Receiver<Reply>,
    /// Counts connections, so replies meant for an old one are ignored.
    generation: u64,
    next_serial: u64,
}

/// Why a connection ended.
enum End {
    /// Every handle (or the receiver) is gone: stop for good.
    Shutdown,
    /// Reconnect.
    Lost(String),
}

impl Client {
    /// Hands a message to the daemon without ever blocking the connection
    /// (the daemon may itself be waiting on a [`Handle::call`]).
    fn deliver(&self, msg: Incoming) -> Result<(), End> {
        match self.in_tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m)) => {
                warn!("ubus: daemon queue full, dropping {}", describe(&m));
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(End::Shutdown),
        }
    }

    /// A command while not connected: calls fail at once, events are
    /// dropped, wishes are remembered for the next connection.
    fn offline_command(&mut self, cmd: Command) {
        match cmd {
            Command::Call { reply, path, .. } => {
                debug!("ubus: not connected, call to {path} fails");
                let _ = reply.send(Err(Status::ConnectionFailed));
            }
            Command::SendEvent { name, .. } => debug!("ubus: not connected, event {name} dropped"),
            Command::Subscribe(path) => {
                self.remember_sub(&path);
            }
            Command::Listen(pattern) => {
                self.remember_listen(&pattern);
            }
        }
    }

    /// Adds a subscription wish; false if it was known or over the limit.
    fn remember_sub(&mut self, path: &str) -> bool {
        if self.subs.iter().any(|p| p == path) {
            return false;
        }
        if self.subs.len() >= MAX_SUBSCRIPTIONS {
            warn!("ubus: too many subscriptions, ignoring {path}");
            return false;
        }
        self.subs.push(path.to_owned());
        true
    }

    fn remember_listen(&mut self, pattern: &str) -> bool {
        if self.listens.iter().any(|p| p == pattern) {
            return false;
        }
        if self.listens.len() >= MAX_PATTERNS {
            warn!("ubus: too many event patterns, ignoring {pattern}");
            return false;
        }
        self.listens.push(pattern.to_owned());
        true
    }

    /// Sleeps `delay` while still answering commands.
    async fn idle(&mut self, delay: Duration) -> Result<(), End> {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = sleep_until(until) => return Ok(()),
                cmd = self.cmd_rx.recv() => match cmd {
                    Some(cmd) => self.offline_command(cmd),
                    None => return Err(End::Shutdown),
                },
                // Answers for a connection that no longer exists.
                Some(_) = self.reply_rx.recv() => {}
            }
        }
    }
}

fn describe(m: &Incoming) -> String {
    match m {
        Incoming::Call { method, .. } => format!("call {method}"),
        Incoming::Notify { object, kind, .. } => format!("notification {kind} from {object}"),
        Incoming::Event { name, .. } => format!("event {name}"),
        Incoming::Connected => "connected".into(),
        Incoming::Disconnected => "disconnected".into(),
    }
}

async fn run(mut client: Client) {
    let mut warned = false;
    let mut delay = client.opts.retry_min;
    loop {
        match connect(&client.opts).await {
            Ok((stream, client_id, path)) => {
                info!(
                    "ubus: connected to {} as client {client_id:08x}",
                    path.display()
                );
                delay = client.opts.retry_min;
                client.generation += 1;
                match session(&mut client, stream).await {
                    End::Shutdown => return,
                    End::Lost(why) => {
                        // The loss is the one warning of this outage.
                        warn!("ubus: connection lost ({why}); reconnecting");
                        warned = true;
                        if client.deliver(Incoming::Disconnected).is_err() {
                            return;
                        }
                    }
                }
            }
            Err(why) if !warned => {
                warn!("ubus: not available ({why}); will keep retrying quietly");
                warned = true;
            }
            Err(why) => debug!("ubus: still not available ({why})"),
        }
        if client.idle(delay).await.is_err() {
            return;
        }
        delay = (delay * 2).min(client.opts.retry_max);
    }
}

/// Connects to the first socket that answers and reads its HELLO.
async fn connect(opts: &Options) -> Result<(UnixStream, u32, PathBuf), String> {
    let mut why = String::new();
    for path in opts.paths() {
        match UnixStream::connect(&path).await {
            Ok(mut stream) => {
                let id = timeout(HELLO_TIMEOUT, read_hello(&mut stream))
                    .await
                    .map_err(|_| format!("{}: no HELLO from ubusd", path.display()))??;
                return Ok((stream, id, path));
            }
            Err(e) => {
                if !why.is_empty() {
                    why.push_str(", ");
                }
                why.push_str(&format!("{}: {e}", path.display()));
            }
        }
    }
    Err(why)
}

/// The first message must be HELLO; its peer is our client id.
async fn read_hello(stream: &mut UnixStream) -> Result<u32, String> {
    let mut buf = vec![0u8; PREFIX_LEN];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading HELLO: {e}"))?;
    let total = frame_len(&buf).map_err(|e| format!("bad HELLO: {e}"))?;
    buf.resize(total, 0);
    stream
        .read_exact(&mut buf[PREFIX_LEN..])
        .await
        .map_err(|e| format!("reading HELLO: {e}"))?;
    let msg = Message::decode(&buf).map_err(|e| format!("bad HELLO: {e}"))?;
    if msg.kind != MsgType::Hello || msg.peer == 0 {
        return Err(format!("expected HELLO, got {:?}", msg.kind));
    }
    Ok(msg.peer)
}

mod session;

use session::session;

/// The argument uhttpd's `/ubus` endpoint adds to every call it forwards
/// (rpcd's session id, already checked against the session's ACL before the
/// call reaches ubusd).
pub const RPC_SESSION_ARG: &str = "ubus_rpc_session";

/// `args` without the top-level [`RPC_SESSION_ARG`]: no method of ours takes
/// it, and one that refuses unknown keys would otherwise refuse every call
/// from LuCI.
fn without_session(args: Value) -> Value {
    match args {
        Value::Table(entries) => Value::Table(
            entries
                .into_iter()
                .filter(|(name, _)| name != RPC_SESSION_ARG)
                .collect(),
        ),
        other => other,
    }
}

/// ubusd's event matching: exact, or a prefix when the pattern ends in `*`.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rpc_session_argument_is_dropped_and_nothing_else() {
        let args = Value::table()
            .with(RPC_SESSION_ARG, "0123456789abcdef0123456789abcdef")
            .with("enable_pcp", false)
            .with("nested", Value::table().with(RPC_SESSION_ARG, "kept"));
        assert_eq!(
            without_session(args),
            Value::table()
                .with("enable_pcp", false)
                .with("nested", Value::table().with(RPC_SESSION_ARG, "kept"))
        );
        assert_eq!(without_session(Value::table()), Value::table());
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("network.interface", "network.interface"));
        assert!(!pattern_matches(
            "network.interface",
            "network.interface.wan"
        ));
        assert!(pattern_matches("network.*", "network.interface"));
        assert!(pattern_matches("*", "anything"));
        assert!(!pattern_matches("upnp.*", "network.interface"));
    }
}
