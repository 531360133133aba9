//! The HTTP server's sockets: accepting connections on the LAN addresses,
//! reading bounded requests under deadlines, and writing responses. What
//! a request means is decided by the daemon's loop, reached through a
//! channel. A request that is whole when its connection is accepted and
//! asks to close (libminiupnpc's) costs no task: its connection goes to
//! the loop with it, and the answer is written from there
//! ([`Reply::Socket`]).
//!
//! Owns: the listening socket (bound to its LAN device), the connection
//! caps (in all, and per client as `core::policy::ClientKey` counts it:
//! an IPv6 client is its /64) with the closing of the oldest idle
//! connection when the server is full, the per-request deadline
//! (slowloris), the keep-alive idle timeout, and the byte limits of
//! `proto::http`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};

use crate::core::policy::ClientKey;
use crate::proto::http::{self, MAX_BODY, MAX_HEAD, Method, Request, Response};
use crate::sys::task;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Concurrent connections; more are answered 503 and closed.
    pub max_connections: usize,
    /// Concurrent connections from one client address, so that one LAN
    /// host holding idle or slow connections cannot lock out the others.
    pub max_per_client: usize,
    /// Time from the first byte of a request to its last byte.
    pub request_deadline: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle: Duration,
    /// Time the loop may take to answer.
    pub answer: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            max_per_client: 8,
            request_deadline: Duration::from_secs(10),
            idle: Duration::from_secs(15),
            answer: Duration::from_secs(30),
        }
    }
}

/// The connections open across every listener: in all and per client,
/// and those waiting for a request (idle), oldest first.
#[derive(Default)]
pub struct Gate {
    total: Cell<usize>,
    per_client: RefCell<HashMap<ClientKey, usize>>,
    /// Idle connections by the order they became idle.
    idle: RefCell<BTreeMap<u64, Rc<SlotState>>>,
    next_idle: Cell<u64>,
}

/// One admitted connection's place in the [`Gate`].
struct SlotState {
    client: ClientKey,
    /// Its key in [`Gate::idle`] while it waits for a request.
    idle_at: Cell<Option<u64>>,
    /// Its place was given back (closed for a newcomer, or ended).
    released: Cell<bool>,
    /// Woken when the connection is to close for a newcomer.
    closing: Notify,
}

/// An admitted connection's place, given back when it ends, however it
/// ends.
pub struct Slot {
    gate: Rc<Gate>,
    state: Rc<SlotState>,
}

impl Gate {
    /// Admits one more connection from `ip`, or says why not. A client at
    /// its own cap is refused; when the server as a whole is full, the
    /// connection that has waited longest for a request is closed to make
    /// room (HTTP/1.1 lets a server close an idle connection at any
    /// time), so hosts holding idle keep-alive connections cannot lock
    /// another out. Connections in the middle of a request are never
    /// closed for it.
    fn enter(self: &Rc<Self>, ip: IpAddr, limits: &Limits) -> Result<Slot, &'static str> {
        let key = ClientKey::of(ip);
        let held = self.per_client.borrow().get(&key).copied().unwrap_or(0);
        if held >= limits.max_per_client {
            return Err("too many connections from this address");
        }
        if self.total.get() >= limits.max_connections && !self.close_oldest_idle() {
            return Err("too many connections");
        }
        *self.per_client.borrow_mut().entry(key).or_insert(0) += 1;
        self.total.set(self.total.get() + 1);
        Ok(Slot {
            gate: self.clone(),
            state: Rc::new(SlotState {
                client: key,
                idle_at: Cell::new(None),
                released: Cell::new(false),
                closing: Notify::new(),
            }),
        })
    }

    /// Closes the oldest idle connection and gives its place back at
    /// once. False if none is idle.
    fn close_oldest_idle(&self) -> bool {
        let Some((_, state)) = self.idle.borrow_mut().pop_first() else {
            return false;
        };
        state.idle_at.set(None);
        self.release(&state);
        state.closing.notify_one();
        true
    }

    fn release(&self, state: &SlotState) {
        if state.released.replace(true) {
            return;
        }
        if let Some(at) = state.idle_at.take() {
            self.idle.borrow_mut().remove(&at);
        }
        self.total.set(self.total.get().saturating_sub(1));
        let mut per = self.per_client.borrow_mut();
        if let Some(n) = per.get_mut(&state.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&state.client);
            }
        }
    }
}

impl Slot {
    /// The connection waits for a request: it may be closed for a
    /// newcomer from now on.
    fn idle(&self) {
        let at = self.gate.next_idle.get();
        self.gate.next_idle.set(at.wrapping_add(1));
        self.state.idle_at.set(Some(at));
        self.gate.idle.borrow_mut().insert(at, self.state.clone());
    }

    /// A request has begun: the connection is no longer closed for
    /// others.
    fn busy(&self) {
        if let Some(at) = self.state.idle_at.take() {
            self.gate.idle.borrow_mut().remove(&at);
        }
    }

    /// Resolves when the connection is to close for a newcomer.
    async fn closing(&self) {
        self.state.closing.notified().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.gate.release(&self.state);
    }
}

/// One request for the loop to answer.
pub struct Job {
    pub req: Request,
    pub body: Vec<u8>,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub reply: Reply,
}

/// Where the answer to a [`Job`] goes.
pub enum Reply {
    /// To the task of its connection, which writes it (a keep-alive
    /// connection, or a request that arrived in pieces).
    Task(oneshot::Sender<Response>),
    /// Straight to the socket: a whole request that asked to close the
    /// connection, there already when it was accepted (what every
    /// libminiupnpc client sends). No task, no registration with the
    /// reactor: the answer is written at once and the socket closed.
    Socket(Direct),
}

impl Reply {
    /// Sends the answer on its way. Must be called inside the runtime.
    pub fn send(self, r: Response) {
        match self {
            Reply::Task(tx) => {
                let _ = tx.send(r);
            }
            Reply::Socket(d) => d.send(r),
        }
    }
}

/// A connection answered without a task of its own.
pub struct Direct {
    stream: std::net::TcpStream,
    head_only: bool,
    server: Rc<str>,
    deadline: Duration,
    _slot: Slot,
}

impl Direct {
    /// Writes the answer without waiting (the socket's buffer is empty, so
    /// it nearly always goes at once); what does not fit is left to a task
    /// that writes it within the request deadline. Then the connection
    /// closes.
    fn send(self, mut r: Response) {
        r.close = true;
        let bytes = r.emit(&self.server, &now_date(), self.head_only);
        let sent = match (&self.stream).write(&bytes) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => return,
        };
        if sent >= bytes.len() {
            return;
        }
        let Ok(mut s) = TcpStream::from_std(self.stream) else {
            return;
        };
        let (deadline, slot) = (self.deadline, self._slot);
        task::spawn_local(async move {
            let _ = timeout(deadline, s.write_all(bytes.get(sent..).unwrap_or_default())).await;
            drop(slot);
        });
    }
}

/// The HTTP listener of one LAN device: `addr:port`, bound to device `dev`
/// like the UDP sockets (`sys::udp`), so a WAN host routing to the LAN
/// address finds no socket (its SYN is reset by the kernel) instead of an
/// HTTP server that reads its request and answers 403. Must be called
/// inside the runtime.
pub fn listener(dev: &str, addr: IpAddr, port: u16) -> io::Result<Listener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::for_address(SocketAddr::from((addr, port))),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
        // a new prefix's address is tentative until duplicate address
        // detection ends; binding it must not fail meanwhile
        s.set_freebind_v6(true)?;
    }
    // as tokio's TcpListener::bind: a restart may rebind at once
    s.set_reuse_address(true)?;
    // Linux gives accepted connections the listener's TCP_NODELAY, so it
    // is set once here, not per connection: a reply leaves at once, and
    // the last segment of a long one does not wait for a delayed ACK.
    s.set_tcp_nodelay(true)?;
    s.bind_device(Some(dev.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("binding HTTP to {dev}: {e}")))?;
    s.bind(&SocketAddr::from((addr, port)).into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    let l: std::net::TcpListener = s.into();
    // SAFETY: the listener is moved in and stays open, unchanged, until
    // the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(Listener(fd))
}

/// A listening socket registered with the reactor. Connections are taken
/// with accept4(2) directly, so that one answered at once (see
/// [`Reply::Socket`]) is never registered with the reactor at all.
pub struct Listener(AsyncFd<std::net::TcpListener>);

impl Listener {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().local_addr()
    }

    /// The next connection: a non-blocking socket of its own, and the
    /// peer's address.
    async fn accept(&self) -> io::Result<(std::net::TcpStream, SocketAddr)> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|l| accept4(l.get_ref())) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }
}

/// accept(2) with the new socket non-blocking and close-on-exec at once
/// (std's accept would need an fcntl more).
fn accept4(l: &std::net::TcpListener) -> io::Result<(std::net::TcpStream, SocketAddr)> {
    // SAFETY: accept4 writes at most `len` bytes of address into the
    // storage socket2 hands it, and sets `len` to what it wrote; the new
    // descriptor is owned at once.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                l.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: a descriptor accept4 just returned, owned by nothing else.
    let stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("accept: not an IP peer"))?;
    Ok((stream, peer))
}

/// Reads what is already there into the spare capacity of `buf`, without
/// waiting and without zero-filling (one recv).
fn read_now(s: &std::net::TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    // SAFETY: recv writes at most `room` bytes into the spare capacity,
    // which has room for them.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().add(buf.len()).cast(),
            room,
            libc::MSG_DONTWAIT,
        )
    };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised the n ≤ room bytes it received.
    unsafe { buf.set_len(buf.len() + n.min(room)) };
    Ok(n)
}

/// The whole request in `buf`, if it is one that asks to close: head and
/// body, and the body's bytes.
fn whole_closing_request(buf: &[u8]) -> Option<(Request, Vec<u8>)> {
    let (req, head_len) = http::parse_head(buf).ok()??;
    let total = head_len.checked_add(req.content_length)?;
    if req.keep_alive || total != buf.len() {
        return None;
    }
    let body = buf.get(head_len..)?.to_vec();
    Some((req, body))
}

/// Accepts connections on `listener` until the task running it is
/// dropped. Each connection is a task of its own owned by this one, so
/// they end with it: closing a listener closes its connections.
pub async fn serve(
    listener: Listener,
    jobs: mpsc::Sender<Job>,
    limits: Limits,
    gate: Rc<Gate>,
    server: Rc<str>,
) {
    // Bound to one address: it is every connection's local address, so
    // no connection asks the kernel for it.
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            log::warn!("HTTP listener: {e}");
            return;
        }
    };
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        // Forget the connections that have ended.
        while conns.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                log::warn!("HTTP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match gate.enter(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(why) => {
                // Tell the client why rather than leave it hanging.
                let server = server.clone();
                conns.spawn_local(task::boxed(async move {
                    let Ok(mut s) = TcpStream::from_std(stream) else {
                        return;
                    };
                    let r = Response::error(503, why).header("Retry-After", "1");
                    let bytes = r.emit(&server, &now_date(), false);
                    let _ = timeout(Duration::from_secs(2), s.write_all(&bytes)).await;
                }));
                continue;
            }
        };
        // The request is usually there already: a client sends it right
        // after its connect returns, before we are woken for the accept.
        let mut buf = Vec::with_capacity(2048);
        let _ = read_now(&stream, &mut buf);
        if let Some((req, body)) = whole_closing_request(&buf) {
            let head_only = req.method() == Method::Head;
            let job = Job {
                req,
                body,
                peer,
                local,
                reply: Reply::Socket(Direct {
                    stream,
                    head_only,
                    server: server.clone(),
                    deadline: limits.request_deadline,
                    _slot: slot,
                }),
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(job)) => {
                    // The loop is busy: wait for room without holding up
                    // the accepts.
                    let jobs = jobs.clone();
                    conns.spawn_local(task::boxed(async move {
                        let _ = jobs.send(job).await;
                    }));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
            continue;
        }
        let Ok(stream) = TcpStream::from_std(stream) else {
            continue;
        };
        let jobs = jobs.clone();
        let server = server.clone();
        conns.spawn_local(task::boxed(async move {
            let _ = connection(stream, buf, (peer, local), jobs, limits, &server, &slot).await;
        }));
    }
}

/// The Date header's value: formatted once per second, not per response
/// (formatting it was 6 % of a GetGenericPortMappingEntry).
fn now_date() -> Rc<str> {
    thread_local! {
        static DATE: RefCell<(u64, Rc<str>)> = RefCell::new((u64::MAX, Rc::from("")));
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, http::date(secs).into());
        }
        d.1.clone()
    })
}

/// One connection's requests, one after the other, starting with what
/// `buf` holds already. The connection's future is what a task holds and
/// tokio copies when it starts and ends it, so it keeps no buffer of its
/// own: bytes are read straight into `buf`'s spare capacity.
async fn connection(
    mut s: TcpStream,
    mut buf: Vec<u8>,
    (peer, local): (SocketAddr, SocketAddr),
    jobs: mpsc::Sender<Job>,
    limits: Limits,
    server: &str,
    slot: &Slot,
) -> std::io::Result<()> {
    loop {
        // Wait for the first byte of the next request (idle timeout), then
        // the whole request must arrive within the request deadline.
        if buf.is_empty() {
            slot.idle();
            let read = tokio::select! {
                biased;
                // closed to make room for a newcomer
                () = slot.closing() => return Ok(()),
                r = timeout(limits.idle, read_into(&mut s, &mut buf, MAX_HEAD + 1)) => r,
            };
            slot.busy();
            match read {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
        let deadline = Instant::now() + limits.request_deadline;
        let (req, head_len) = loop {
            match http::parse_head(&buf) {
                Ok(Some(r)) => break r,
                Ok(None) => {}
                Err(e) => {
                    let r = Response::error(e.status(), "malformed request head");
                    write(&mut s, &r, server, false, deadline).await;
                    return Ok(());
                }
            }
            if !read_more(&mut s, &mut buf, MAX_HEAD + 1, deadline).await? {
                if !buf.is_empty() && Instant::now() >= deadline {
                    let r = Response::error(408, "request not received in time");
                    write(&mut s, &r, server, false, deadline).await;
                }
                return Ok(());
            }
        };
        let total = head_len + req.content_length;
        while buf.len() < total {
            if !read_more(&mut s, &mut buf, head_len + MAX_BODY, deadline).await? {
                if Instant::now() >= deadline {
                    let r = Response::error(408, "request body not received in time");
                    write(&mut s, &r, server, false, deadline).await;
                }
                return Ok(());
            }
        }
        let body = buf[head_len..total].to_vec();
        buf.drain(..total);
        let head_only = req.method() == Method::Head;
        let keep_alive = req.keep_alive;
        let (tx, rx) = oneshot::channel();
        let job = Job {
            req,
            body,
            peer,
            local,
            reply: Reply::Task(tx),
        };
        let resp = if jobs.send(job).await.is_err() {
            Response::error(503, "shutting down")
        } else {
            match timeout(limits.answer, rx).await {
                Ok(Ok(r)) => r,
                _ => Response::error(503, "no answer"),
            }
        };
        let mut resp = resp;
        if !keep_alive {
            resp.close = true;
        }
        let close = resp.close;
        let wdl = Instant::now() + limits.request_deadline;
        if !write(&mut s, &resp, server, head_only, wdl).await || close {
            return Ok(());
        }
    }
}

/// Reads more bytes (never beyond `cap` in total). False on EOF, deadline
/// or a full buffer.
async fn read_more(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    cap: usize,
    deadline: Instant,
) -> std::io::Result<bool> {
    if buf.len() >= cap {
        return Ok(false);
    }
    match timeout_at(deadline, read_into(s, buf, cap)).await {
        Ok(Ok(0)) | Err(_) => Ok(false),
        Ok(Ok(_)) => Ok(true),
        Ok(Err(e)) => Err(e),
    }
}

/// Reads what has arrived into the spare capacity of `buf` (never
/// zero-filled, never copied), so that `buf` holds at most `cap` bytes.
async fn read_into(s: &mut TcpStream, buf: &mut Vec<u8>, cap: usize) -> std::io::Result<usize> {
    let room = cap.saturating_sub(buf.len()) as u64;
    s.take(room).read_buf(buf).await
}

async fn write(
    s: &mut TcpStream,
    r: &Response,
    server: &str,
    head_only: bool,
    deadline: Instant,
) -> bool {
    let bytes = r.emit(server, &now_date(), head_only);
    matches!(timeout_at(deadline, s.write_all(&bytes)).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// Full of idle connections, the server closes the oldest for a
    /// newcomer; full of busy ones, it refuses. A client is its /64.
    #[test]
    fn the_oldest_idle_connection_makes_way() {
        let gate = Rc::new(Gate::default());
        let l = Limits {
            max_connections: 4,
            max_per_client: 2,
            ..Limits::default()
        };
        let a = gate.enter(ip("192.168.1.2"), &l).unwrap();
        let b = gate.enter(ip("192.168.1.2"), &l).unwrap();
        assert_eq!(
            gate.enter(ip("192.168.1.2"), &l).err(),
            Some("too many connections from this address")
        );
        let c = gate.enter(ip("fd00::1"), &l).unwrap();
        let d = gate.enter(ip("fd00::2:3"), &l).unwrap();
        // the same /64 is the same client
        assert!(gate.enter(ip("fd00::9"), &l).is_err());
        assert_eq!(
            gate.enter(ip("192.168.1.3"), &l).err(),
            Some("too many connections")
        );
        b.idle();
        c.idle();
        let e = gate.enter(ip("192.168.1.3"), &l).unwrap();
        assert!(b.state.released.get() && !c.state.released.get());
        assert_eq!(gate.total.get(), 4);
        // a busy connection is not closed for anyone
        c.busy();
        assert!(gate.enter(ip("192.168.1.4"), &l).is_err());
        drop((a, b, c, d, e));
        assert_eq!(gate.total.get(), 0);
        assert!(gate.per_client.borrow().is_empty());
        assert!(gate.idle.borrow().is_empty());
    }
}
