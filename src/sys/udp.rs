//! UDP sockets on the LAN side: SSDP (239.255.255.250:1900, and over
//! IPv6 [ff02::c] and [ff05::c]) and NAT-PMP/PCP (port 5351; PCP alone
//! over IPv6), per LAN device, and the reader that hands their datagrams
//! to the loop.
//!
//! Owns: socket options (device binding, multicast membership, TTL and
//! hop limit). The sockets never listen on the WAN side: SSDP is bound to
//! each LAN device and NAT-PMP/PCP to each LAN address (RFC 6886 §3.1
//! forbids answering on the external interface). IPv6 sockets are IPv6
//! only, so an IPv4 datagram never reaches them as a mapped address.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::rc::Rc;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::proto::ssdp::Group;

pub const SSDP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 250);
pub const SSDP_PORT: u16 = 1900;
pub const NATPMP_PCP_PORT: u16 = 5351;
/// Where NAT-PMP and PCP announcements go (RFC 6886 §3.2.1, RFC 6887 §14.1).
pub const ALL_HOSTS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 1), 5350);
/// All nodes of a link (RFC 4291 §2.7.1), where PCP announces over IPv6
/// (RFC 6887 §14.1).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// UDA 1.1 §1.1.2: multicast TTL 2 by default; Annex A leaves discovery
/// as it is over IPv6, so the hop limit is 2 too (FF02::C never leaves
/// the link anyway; this bounds FF05::C).
const SSDP_HOPS: u32 = 2;

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
    pub src: SocketAddr,
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

/// The IPv6 SSDP socket of one LAN device: port 1900 on that device
/// only, in FF02::C and FF05::C (UDA Annex A) on its interface index,
/// sending multicast there with hop limit 2.
pub fn ssdp_socket6(dev: &str, ifindex: u32) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.bind_device(Some(dev.as_bytes()))
        .map_err(|e| io::Error::new(e.kind(), format!("binding SSDP to {dev}: {e}")))?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, SSDP_PORT)).into())?;
    for g in Group::V6 {
        if let std::net::IpAddr::V6(a) = g.addr() {
            s.join_multicast_v6(&a, ifindex)
                .map_err(|e| io::Error::new(e.kind(), format!("joining [{a}] on {dev}: {e}")))?;
        }
    }
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_hops_v6(SSDP_HOPS)?;
    s.set_multicast_loop_v6(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// The PCP socket of one LAN IPv6 address (global or unique-local),
/// sending announcements to the LAN device. Bound even while the address
/// is still tentative (duplicate address detection after a new prefix).
pub fn pcp_socket6(dev: &str, addr: Ipv6Addr, ifindex: u32) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    s.set_freebind_v6(true)?;
    s.bind_device(Some(dev.as_bytes()))?;
    s.bind(&SocketAddr::from((addr, NATPMP_PCP_PORT)).into())
        .map_err(|e| {
            io::Error::new(e.kind(), format!("binding [{addr}]:{NATPMP_PCP_PORT}: {e}"))
        })?;
    s.set_multicast_if_v6(ifindex)?;
    s.set_multicast_hops_v6(1)?;
    s.set_multicast_loop_v6(false)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

/// `group`'s address and port on interface `ifindex`.
pub fn to_group(group: Group, ifindex: u32) -> SocketAddr {
    match group.addr() {
        std::net::IpAddr::V4(a) => SocketAddr::V4(SocketAddrV4::new(a, SSDP_PORT)),
        std::net::IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, SSDP_PORT, 0, ifindex)),
    }
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
            Ok((n, src)) => {
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
            Err(e) => {
                log::debug!("{kind:?} socket: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
