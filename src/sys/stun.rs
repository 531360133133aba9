//! The STUN client's way out: two UDP sockets on the WAN address, the
//! tasks that read them, and the resolution of the server's name off the
//! loop.
//!
//! Owns: [`Sockets`] and [`Input`], what reaches the loop from them and
//! from [`resolve`]. What to send and what an answer means is decided in
//! `core::stun`.
//!
//! Why two sockets: the second one, a second local port with no history,
//! shows whether the NAT in front maps every local port the same way
//! (keeping the port number and the public address), which one socket
//! cannot show; the filtering tests of RFC 5780 §4.4 run on the first,
//! whose mapping exists by then. Both are bound on the WAN address, with
//! ports the kernel picks, so their datagrams leave by the WAN and the
//! answers come back to an address fw4's input chain can accept by
//! (`upnp_stun`).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::stun::SOCKETS;

/// Largest datagram read; a STUN answer is a few hundred bytes, anything
/// longer is cut and then refused by the parser.
const MAX_DATAGRAM: usize = 1500;

/// How long a name may take to resolve before the try counts as failed.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(30);

/// What reaches the loop from the STUN side.
#[derive(Debug)]
pub enum Input {
    /// A datagram on socket `socket` (0 or 1).
    Datagram {
        socket: usize,
        from: SocketAddr,
        data: Vec<u8>,
    },
    /// The answer for `host`: its first IPv4 address with the port, or
    /// why there is none.
    Resolved {
        host: String,
        addr: Result<SocketAddrV4, String>,
    },
}

/// The two sockets and their readers; dropping them closes both.
pub struct Sockets {
    socks: [std::rc::Rc<UdpSocket>; SOCKETS],
    /// The same sockets for sending: a send on tokio's socket fails until
    /// the reactor has seen it writable, which a socket bound in this
    /// very turn has not (both are non-blocking, so neither waits).
    senders: [std::net::UdpSocket; SOCKETS],
    readers: Vec<JoinHandle<()>>,
    addr: Ipv4Addr,
}

impl Sockets {
    /// Binds both sockets on `addr` (ports picked by the kernel) and
    /// starts their readers.
    pub fn open(addr: Ipv4Addr, tx: &mpsc::Sender<Input>) -> io::Result<Sockets> {
        let bind = || -> io::Result<(UdpSocket, std::net::UdpSocket)> {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.bind(&SocketAddr::from((addr, 0)).into())
                .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}:0: {e}")))?;
            s.set_nonblocking(true)?;
            let s: std::net::UdpSocket = s.into();
            let sender = s.try_clone()?;
            Ok((UdpSocket::from_std(s)?, sender))
        };
        let ((a, a_tx), (b, b_tx)) = (bind()?, bind()?);
        let socks = [std::rc::Rc::new(a), std::rc::Rc::new(b)];
        let readers = socks
            .iter()
            .enumerate()
            .map(|(i, s)| spawn_reader(s.clone(), i, tx.clone()))
            .collect();
        Ok(Sockets {
            socks,
            senders: [a_tx, b_tx],
            readers,
            addr,
        })
    }

    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The local ports, in socket order.
    pub fn ports(&self) -> [u16; SOCKETS] {
        self.socks
            .each_ref()
            .map(|s| s.local_addr().map(|a| a.port()).unwrap_or(0))
    }

    /// Sends without waiting: a full socket buffer loses the datagram,
    /// which the client's retransmission covers.
    pub fn send(&self, socket: usize, to: SocketAddrV4, bytes: &[u8]) {
        if let Some(s) = self.senders.get(socket) {
            log::debug!("STUN: request to {to} from socket {socket}");
            if let Err(e) = s.send_to(bytes, SocketAddr::V4(to)) {
                log::debug!("STUN: sending to {to}: {e}");
            }
        }
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

/// Reads datagrams of socket `socket` and forwards them; when the loop is
/// busy (channel full) they are dropped, as the client retransmits.
fn spawn_reader(
    sock: std::rc::Rc<UdpSocket>,
    socket: usize,
    tx: mpsc::Sender<Input>,
) -> JoinHandle<()> {
    crate::sys::task::spawn_local(async move {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => {
                    let data = buf[..n].to_vec();
                    let input = Input::Datagram { socket, from, data };
                    if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(input) {
                        return;
                    }
                }
                Err(e) => {
                    log::debug!("STUN socket {socket}: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// Resolves `host` on tokio's blocking pool (getaddrinfo blocks; the
/// pool exists in the current-thread runtime too) and sends the first
/// IPv4 address back as [`Input::Resolved`]. The loop is never blocked:
/// a slow resolver only delays the answer, and after
/// [`RESOLVE_DEADLINE`] the try counts as failed.
pub fn resolve(host: String, port: u16, tx: mpsc::Sender<Input>) {
    crate::sys::task::spawn_local(async move {
        let lookup = tokio::net::lookup_host((host.clone(), port));
        let addr = match tokio::time::timeout(RESOLVE_DEADLINE, lookup).await {
            Err(_) => Err(format!(
                "resolving {host} took more than {} s",
                RESOLVE_DEADLINE.as_secs()
            )),
            Ok(Err(e)) => Err(format!("resolving {host}: {e}")),
            Ok(Ok(addrs)) => addrs
                .filter_map(|a| match a {
                    SocketAddr::V4(a) => Some(a),
                    SocketAddr::V6(_) => None,
                })
                .next()
                .ok_or_else(|| format!("{host} has no IPv4 address")),
        };
        let _ = tx.send(Input::Resolved { host, addr }).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A name resolves on the blocking pool of a current-thread runtime
    /// with a LocalSet, as the daemon runs, and comes back as an Input.
    #[test]
    fn a_name_resolves_off_the_loop() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        let got = local.block_on(&rt, async {
            let (tx, mut rx) = mpsc::channel(1);
            resolve("localhost".into(), 3478, tx);
            rx.recv().await
        });
        match got {
            Some(Input::Resolved { host, addr }) => {
                assert_eq!(host, "localhost");
                assert_eq!(addr, Ok(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3478)));
            }
            other => panic!("{other:?}"),
        }
    }
}
