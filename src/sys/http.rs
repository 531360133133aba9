//! The HTTP server's sockets: accepting connections on the LAN addresses,
//! reading bounded requests under deadlines, and writing responses. What
//! a request means is decided by the daemon's loop, reached through a
//! channel.
//!
//! Owns: the listening socket (bound to its LAN device), the connection
//! caps (in all and per client address), the per-request deadline (slowloris), the keep-alive idle
//! timeout, and the byte limits of `proto::http`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout, timeout_at};

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

/// The connections open across every listener: in all and per client.
#[derive(Default)]
pub struct Gate {
    total: Cell<usize>,
    per_client: RefCell<HashMap<IpAddr, usize>>,
}

impl Gate {
    /// Admits one more connection from `ip`, or says why not.
    fn enter(&self, ip: IpAddr, limits: &Limits) -> Result<(), &'static str> {
        if self.total.get() >= limits.max_connections {
            return Err("too many connections");
        }
        let mut per = self.per_client.borrow_mut();
        let n = per.entry(ip).or_insert(0);
        if *n >= limits.max_per_client {
            return Err("too many connections from this address");
        }
        *n += 1;
        self.total.set(self.total.get() + 1);
        Ok(())
    }

    fn leave(&self, ip: IpAddr) {
        self.total.set(self.total.get().saturating_sub(1));
        let mut per = self.per_client.borrow_mut();
        if let Some(n) = per.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                per.remove(&ip);
            }
        }
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
    TcpListener::from_std(s.into())
}

/// One admitted connection's place in the [`Gate`], given back when it
/// ends, however it ends (an aborted task included).
struct Admitted {
    gate: Rc<Gate>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.gate.leave(self.ip);
    }
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
        let jobs = jobs.clone();
        let server = server.clone();
        let ip = peer.ip();
        if let Err(why) = gate.enter(ip, &limits) {
            // Tell the client why rather than leave it hanging.
            conns.spawn_local(async move {
                let mut s = stream;
                let r = Response::error(503, why).header("Retry-After", "1");
                let bytes = r.emit(&server, &now_date(), false);
                let _ = timeout(Duration::from_secs(2), s.write_all(&bytes)).await;
            });
            continue;
        }
        let admitted = Admitted {
            gate: gate.clone(),
            ip,
        };
        conns.spawn_local(async move {
            let _ = connection(stream, peer, local, jobs, limits, &server).await;
            drop(admitted);
        });
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

/// One connection's requests, one after the other. The connection's
/// future is what a task holds and tokio copies when it starts and ends
/// it, so it keeps no buffer of its own: bytes are read straight into
/// `buf`'s spare capacity.
async fn connection(
    mut s: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    jobs: mpsc::Sender<Job>,
    limits: Limits,
    server: &str,
) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(2048);
    loop {
        // Wait for the first byte of the next request (idle timeout), then
        // the whole request must arrive within the request deadline.
        if buf.is_empty() {
            match timeout(limits.idle, read_into(&mut s, &mut buf, MAX_HEAD + 1)).await {
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
