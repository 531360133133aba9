//! The HTTP server's sockets: accepting connections on the LAN addresses,
//! reading bounded requests under deadlines, and writing responses. What
//! a request means is decided by the daemon's loop, reached through a
//! channel.
//!
//! Owns: the listening socket (bound to its LAN device), the connection
//! caps (in all, and per client as `core::policy::ClientKey` counts it:
//! an IPv6 client is its /64) with the closing of the oldest idle
//! connection when the server is full, the per-request deadline
//! (slowloris), the keep-alive idle timeout, and the byte limits of
//! `proto::http`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};

use crate::core::policy::ClientKey;
use crate::proto::http::{self, MAX_BODY, MAX_HEAD, Method, Request, Response};

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
    pub reply: oneshot::Sender<Response>,
}

/// The HTTP listener of one LAN device: `addr:port`, bound to device `dev`
/// like the UDP sockets (`sys::udp`), so a WAN host routing to the LAN
/// address finds no socket (its SYN is reset by the kernel) instead of an
/// HTTP server that reads its request and answers 403. Must be called
/// inside the runtime.
pub fn listener(dev: &str, addr: IpAddr, port: u16) -> io::Result<TcpListener> {
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
    s.bind_device(Some(dev.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("binding HTTP to {dev}: {e}")))?;
    s.bind(&SocketAddr::from((addr, port)).into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    TcpListener::from_std(s.into())
}

/// Accepts connections on `listener` until the task running it is
/// dropped. Each connection is a task of its own owned by this one, so
/// they end with it: closing a listener closes its connections.
pub async fn serve(
    listener: TcpListener,
    jobs: mpsc::Sender<Job>,
    limits: Limits,
    gate: Rc<Gate>,
    server: Rc<str>,
) {
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
        let jobs = jobs.clone();
        let server = server.clone();
        let slot = match gate.enter(peer.ip(), &limits) {
            Ok(slot) => slot,
            Err(why) => {
                // Tell the client why rather than leave it hanging.
                conns.spawn_local(async move {
                    let mut s = stream;
                    let r = Response::error(503, why).header("Retry-After", "1");
                    let bytes = r.emit(&server, &now_date(), false);
                    let _ = timeout(Duration::from_secs(2), s.write_all(&bytes)).await;
                });
                continue;
            }
        };
        conns.spawn_local(async move {
            let _ = connection(stream, peer, jobs, limits, &server, &slot).await;
        });
    }
}

fn now_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    http::date(secs)
}

async fn connection(
    mut s: TcpStream,
    peer: SocketAddr,
    jobs: mpsc::Sender<Job>,
    limits: Limits,
    server: &str,
    slot: &Slot,
) -> std::io::Result<()> {
    let local = s.local_addr()?;
    let _ = s.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        // Wait for the first byte of the next request (idle timeout), then
        // the whole request must arrive within the request deadline.
        if buf.is_empty() {
            let mut chunk = [0u8; 2048];
            slot.idle();
            let read = tokio::select! {
                biased;
                // closed to make room for a newcomer
                () = slot.closing() => return Ok(()),
                r = timeout(limits.idle, s.read(&mut chunk)) => r,
            };
            slot.busy();
            let n = match read {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(e),
            };
            buf.extend_from_slice(&chunk[..n]);
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
            reply: tx,
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
    let mut chunk = [0u8; 4096];
    let room = (cap - buf.len()).min(chunk.len());
    match timeout_at(deadline, s.read(&mut chunk[..room])).await {
        Ok(Ok(0)) | Err(_) => Ok(false),
        Ok(Ok(n)) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(true)
        }
        Ok(Err(e)) => Err(e),
    }
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
