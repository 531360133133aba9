//! UDP sockets on the LAN side: SSDP (239.255.255.250:1900) and
//! NAT-PMP/PCP (port 5351), one of each per LAN device, and the reader
//! that hands their datagrams to the loop.
//!
//! Owns: socket options (device binding, multicast membership, TTL). The
//! sockets never listen on the WAN side: SSDP is bound to each LAN device
//! and NAT-PMP/PCP to each LAN address (RFC 6886 §3.1 forbids answering
//! on the external interface).

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

pub const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const SSDP_PORT: u16 = 1900;
pub const NATPMP_PCP_PORT: u16 = 5351;
/// Where NAT-PMP and PCP announcements go (RFC 6886 §3.2.1, RFC 6887 §14.1).
pub const ALL_HOSTS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 5350);

/// Largest datagram read: SSDP requests and PCP messages (1100 bytes)
/// are far smaller; anything longer is cut and then refused by the parser.
const MAX_DATAGRAM: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ssdp,
    NatPmpPcp,
}

/// A datagram received by the front end `front` (an id the daemon gave
/// the socket's reader).
#[derive(Debug)]
pub struct Datagram {
    pub kind: Kind,
    pub front: u32,
    pub src: SocketAddrV4,
    pub data: Vec<u8>,
}

/// The SSDP socket of one LAN device: port 1900 on that device only, in
/// the SSDP group, sending multicast from `addr` with TTL 2 (UDA 1.1).
pub fn ssdp_socket(dev: &str, addr: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(dev.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("binding SSDP to {dev}: {e}")))?;
    s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, SSDP_PORT)).into())?;
    s.join_multicast_v4(&SSDP_GROUP, &addr)
        .map_err(|e| io::Error::new(e.kind(), format!("joining SSDP group on {dev}: {e}")))?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_ttl_v4(2)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The NAT-PMP/PCP socket of one LAN address.
pub fn natpmp_pcp_socket(dev: &str, addr: Ipv4Addr) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(dev.as_bytes()))?;
    s.bind(&SocketAddr::from((addr, NATPMP_PCP_PORT)).into())
        .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}:{NATPMP_PCP_PORT}: {e}")))?;
    s.set_multicast_if_v4(&addr)?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_loop_v4(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// Reads datagrams and forwards them, tagged `front`, until the task
/// running it is dropped; when the loop is busy (channel full), datagrams
/// are dropped rather than queued without bound.
pub async fn reader(sock: Rc<UdpSocket>, kind: Kind, front: u32, tx: mpsc::Sender<Datagram>) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, SocketAddr::V4(src))) => {
                let dg = Datagram {
                    kind,
                    front,
                    src,
                    data: buf[..n].to_vec(),
                };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(dg) {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                log::debug!("{kind:?} socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
