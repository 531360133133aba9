//! Network interfaces: addresses, counters, link speed, uptime, the
//! sockets listening on the WAN side, and a netlink watch for address
//! changes (the fallback when netifd's ubus notifications are absent).
//!
//! Owns: reads of getifaddrs, /sys/class/net, /proc/net and br_netfilter's
//! sysctl. Returns plain values to the daemon; never touches the core's
//! state.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::core::facts::LinkCounters;
use crate::core::hairpin::BridgeFacts;
use crate::proto::Proto;
use crate::proto::netlink::route;
use crate::proto::netlink::sock_diag::{self, IPPROTO_TCP, IPPROTO_UDP, TCP_CLOSE, TCP_LISTEN};
use crate::sys::nfnl;

/// Every address of every interface, from getifaddrs(3).
fn for_each_addr(mut f: impl FnMut(&str, &libc::sockaddr, Option<&libc::sockaddr>)) {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below; every
    // pointer is checked for NULL before it is read.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null() && !ifa.ifa_name.is_null() {
                if let Ok(name) = CStr::from_ptr(ifa.ifa_name).to_str() {
                    let mask = (!ifa.ifa_netmask.is_null()).then(|| &*ifa.ifa_netmask);
                    f(name, &*ifa.ifa_addr, mask);
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
}

fn v4(sa: &libc::sockaddr) -> Option<Ipv4Addr> {
    if i32::from(sa.sa_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family says this is a sockaddr_in.
    let sin = unsafe { &*(sa as *const libc::sockaddr as *const libc::sockaddr_in) };
    Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
}

fn v6(sa: &libc::sockaddr) -> Option<Ipv6Addr> {
    if i32::from(sa.sa_family) != libc::AF_INET6 {
        return None;
    }
    // SAFETY: the family says this is a sockaddr_in6.
    let sin6 = unsafe { &*(sa as *const libc::sockaddr as *const libc::sockaddr_in6) };
    Some(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
}

/// IPv4 addresses and prefix lengths of `dev`.
pub fn ipv4_addrs(dev: &str) -> Vec<(Ipv4Addr, u8)> {
    let mut out = Vec::new();
    for_each_addr(|name, addr, mask| {
        if name == dev {
            if let Some(a) = v4(addr) {
                let prefix = mask
                    .and_then(v4)
                    .map_or(32, |m| u32::from(m).count_ones() as u8);
                out.push((a, prefix));
            }
        }
    });
    out
}

/// IPv6 addresses and prefix lengths of `dev`.
pub fn ipv6_addrs(dev: &str) -> Vec<(Ipv6Addr, u8)> {
    let mut out = Vec::new();
    for_each_addr(|name, addr, mask| {
        if name == dev {
            if let Some(a) = v6(addr) {
                let prefix = mask
                    .and_then(v6)
                    .map_or(128, |m| u128::from(m).count_ones() as u8);
                out.push((a, prefix));
            }
        }
    });
    out
}

/// The kernel's index of `dev`, if it exists.
pub fn ifindex(dev: &str) -> Option<u32> {
    let c = CString::new(dev).ok()?;
    // SAFETY: a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn sys_u64(dev: &str, file: &str) -> Option<u64> {
    if dev.contains('/') || dev.starts_with('.') {
        return None;
    }
    let s = std::fs::read_to_string(format!("/sys/class/net/{dev}/{file}")).ok()?;
    s.trim().parse().ok()
}

/// Whether a network device of this name exists.
pub fn exists(dev: &str) -> bool {
    ifindex(dev).is_some()
}

/// The device holding the IPv4 default route (from /proc/net/route), as
/// OpenWrt's `network_find_wan` finds the WAN when none is configured.
pub fn default_route_dev() -> Option<String> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).take(4096).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // Iface Destination Gateway Flags … Mask: destination and mask 0.
        (f.len() >= 8 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_string())
    })
}

/// Reads a conntrack timeout in seconds (for GetOutboundPinholeTimeout).
pub fn conntrack_timeout(name: &str) -> Option<u32> {
    if name.contains('/') {
        return None;
    }
    std::fs::read_to_string(format!("/proc/sys/net/netfilter/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Byte and packet counters of `dev`.
pub fn link_counters(dev: &str) -> Option<LinkCounters> {
    Some(LinkCounters {
        tx_bytes: sys_u64(dev, "statistics/tx_bytes")?,
        rx_bytes: sys_u64(dev, "statistics/rx_bytes")?,
        tx_packets: sys_u64(dev, "statistics/tx_packets")?,
        rx_packets: sys_u64(dev, "statistics/rx_packets")?,
    })
}

/// Link speed in bit/s (0 if the driver does not say, e.g. veth or PPP).
pub fn link_speed_bps(dev: &str) -> u32 {
    sys_u64(dev, "speed")
        .filter(|m| *m > 0 && *m < 100_000_000)
        .map_or(0, |mbps| {
            u32::try_from(mbps * 1_000_000).unwrap_or(u32::MAX)
        })
}

/// Whether `dev` is administratively and operationally up.
pub fn is_up(dev: &str) -> bool {
    if dev.contains('/') {
        return false;
    }
    match std::fs::read_to_string(format!("/sys/class/net/{dev}/operstate")) {
        // veth and PPP report "unknown" while working.
        Ok(s) => matches!(s.trim(), "up" | "unknown"),
        Err(_) => false,
    }
}

/// What the kernel says of the bridges among the LAN devices `devs`
/// (for `core::hairpin`): br_netfilter's `bridge-nf-call-iptables` of
/// this network namespace (no file without br_netfilter), and each
/// bridge's own `nf_call_iptables` option.
pub fn bridge_facts<'a>(devs: impl IntoIterator<Item = &'a str>) -> BridgeFacts {
    let call_iptables = std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
        .ok()
        .map(|s| s.trim() != "0");
    let mut bridges: Vec<(String, bool)> = Vec::new();
    for d in devs {
        let is_bridge = !d.contains('/')
            && !d.starts_with('.')
            && std::path::Path::new(&format!("/sys/class/net/{d}/bridge")).is_dir();
        if is_bridge && !bridges.iter().any(|(b, _)| b == d) {
            bridges.push((
                d.to_string(),
                sys_u64(d, "bridge/nf_call_iptables") == Some(1),
            ));
        }
    }
    BridgeFacts {
        call_iptables,
        bridges,
    }
}

/// Seconds since boot.
pub fn system_uptime() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/uptime").ok()?;
    let secs = s.split(['.', ' ']).next()?;
    secs.parse().ok()
}

/// The netlink sockets the kernel facts are read through on the request
/// path, each opened on first use and kept for the next request:
/// sock_diag for the sockets listening on the WAN side, rtnetlink for the
/// neighbour table. Both are [`nfnl::Socket::open_dump`]'s: a reply is
/// waited for only within its bound, so the loop never stalls on them. A
/// socket that failed is closed and opened again when next asked.
#[derive(Default)]
pub struct Probe {
    diag: Option<nfnl::Socket>,
    route: Option<nfnl::Socket>,
}

impl Probe {
    /// Runs `f` on the socket kept in `slot`, opening one of `protocol`
    /// if there is none.
    fn with<T>(
        slot: &mut Option<nfnl::Socket>,
        protocol: libc::c_int,
        f: impl FnOnce(&mut nfnl::Socket) -> Result<T, nfnl::Error>,
    ) -> io::Result<T> {
        let sock = match slot {
            Some(s) => s,
            None => slot.insert(nfnl::Socket::open_dump(protocol)?),
        };
        let r = f(sock);
        if r.is_err() {
            *slot = None;
        }
        Ok(r?)
    }

    /// The kernel's neighbour table (ARP and NDP): address → link-layer
    /// address, from one RTM_GETNEIGH dump.
    pub fn neighbours(&mut self) -> io::Result<Vec<(IpAddr, [u8; 6])>> {
        let mut out = Vec::new();
        Probe::with(&mut self.route, libc::NETLINK_ROUTE, |sock| {
            sock.query(route::get_neighbours, &mut |m| {
                // An all-zero address is an entry still being resolved.
                if let Some(n) = route::parse_neighbour(m).filter(|n| n.lladdr != [0; 6]) {
                    out.push((n.addr, n.lladdr));
                }
            })
        })?;
        Ok(out)
    }

    /// Adds to `out` the local ports of `proto` held by a socket the WAN
    /// side can reach: TCP in LISTEN, bound UDP sockets (unconnected UDP
    /// is TCP_CLOSE), whose local address is a wildcard or the WAN
    /// address. One dump per family (an IPv6 wildcard socket takes IPv4
    /// too unless V6ONLY, and is only in the IPv6 dump); with `port` the
    /// kernel returns only the sockets on it. sock_diag walks only the
    /// listening hash for TCP, where /proc/net/tcp walks every socket of
    /// every namespace.
    fn wan_ports(
        &mut self,
        proto: Proto,
        port: Option<u16>,
        wan: Option<Ipv4Addr>,
        out: &mut HashSet<u16>,
    ) -> io::Result<()> {
        let (protocol, states) = match proto {
            Proto::Tcp => (IPPROTO_TCP, TCP_LISTEN),
            Proto::Udp => (IPPROTO_UDP, TCP_CLOSE),
        };
        for family in [sock_diag::AF_INET, sock_diag::AF_INET6] {
            Probe::with(&mut self.diag, libc::NETLINK_SOCK_DIAG, |sock| {
                sock.query(
                    |seq| sock_diag::get_sockets(seq, family, protocol, states, port),
                    &mut |m| {
                        if let Some(s) =
                            sock_diag::parse_socket(m).filter(|s| reachable(s.src, wan))
                        {
                            out.insert(s.sport);
                        }
                    },
                )
            })?;
        }
        Ok(())
    }
}

/// Whether a socket bound to local address `src` takes packets sent to
/// the WAN address.
fn reachable(src: IpAddr, wan: Option<Ipv4Addr>) -> bool {
    match src {
        IpAddr::V4(a) => a.is_unspecified() || Some(a) == wan,
        IpAddr::V6(a) => a.is_unspecified() || a.to_ipv4_mapped().is_some_and(|a| Some(a) == wan),
    }
}

/// What one request learnt of the sockets listening on the WAN side.
/// The first port asked of a protocol is read alone (two dumps the kernel
/// filters on it: what an add costs); a second port of the same protocol
/// reads every port at once, for a request that checks many (a reload
/// rechecking the whole table).
#[derive(Debug, Default)]
pub struct Listeners {
    tcp: Seen,
    udp: Seen,
}

#[derive(Debug, Default)]
enum Seen {
    #[default]
    Nothing,
    /// One port, and whether it is held.
    One(u16, bool),
    /// Every port held.
    All(HashSet<u16>),
}

impl Listeners {
    /// Whether a socket the WAN side can reach holds `port` of `proto`.
    /// Without sock_diag (a kernel without inet_diag), /proc/net is read.
    pub fn wan_listener(
        &mut self,
        probe: &mut Probe,
        proto: Proto,
        port: u16,
        wan: Option<Ipv4Addr>,
    ) -> bool {
        let seen = match proto {
            Proto::Tcp => &mut self.tcp,
            Proto::Udp => &mut self.udp,
        };
        let one = match seen {
            Seen::One(p, held) if *p == port => return *held,
            Seen::All(ports) => return ports.contains(&port),
            Seen::One(..) => false,
            Seen::Nothing => true,
        };
        let mut ports = HashSet::new();
        *seen = match probe.wan_ports(proto, one.then_some(port), wan, &mut ports) {
            Ok(()) if one => Seen::One(port, ports.contains(&port)),
            Ok(()) => Seen::All(ports),
            Err(e) => {
                log::debug!("sock_diag {}: {e}; reading /proc/net", proto.as_lower());
                Seen::All(read_proc(proto, wan))
            }
        };
        match seen {
            Seen::One(_, held) => *held,
            Seen::All(ports) => ports.contains(&port),
            Seen::Nothing => false,
        }
    }
}

/// The fallback for kernels without inet_diag: `/proc/net/{tcp,udp}[6]`.
fn read_proc(proto: Proto, wan: Option<Ipv4Addr>) -> HashSet<u16> {
    let mut out = HashSet::new();
    let (tcp, files) = match proto {
        Proto::Tcp => (true, ["/proc/net/tcp", "/proc/net/tcp6"]),
        Proto::Udp => (false, ["/proc/net/udp", "/proc/net/udp6"]),
    };
    for file in files {
        if let Ok(text) = std::fs::read_to_string(file) {
            parse_proc_net(&text, tcp, wan, &mut out);
        }
    }
    out
}

/// Parses `/proc/net/{tcp,udp}[6]` lines: `sl local_address rem_address st …`
/// with addresses in hex as the kernel stores them.
fn parse_proc_net(text: &str, tcp: bool, wan: Option<Ipv4Addr>, out: &mut HashSet<u16>) {
    for line in text.lines().skip(1).take(65536) {
        let mut f = line.split_whitespace();
        let (Some(_), Some(local), Some(_), Some(state)) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        // TCP_LISTEN = 0x0A; an unconnected UDP socket is TCP_CLOSE = 0x07.
        if (tcp && state != "0A") || (!tcp && state != "07") {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else {
            continue;
        };
        let Ok(port) = u16::from_str_radix(port, 16) else {
            continue;
        };
        let reachable = match addr.len() {
            8 => match u32::from_str_radix(addr, 16) {
                // The kernel prints the network-order address as a host
                // u32, so its native bytes are the address bytes.
                Ok(v) => {
                    let a = Ipv4Addr::from(v.to_ne_bytes());
                    a.is_unspecified() || Some(a) == wan
                }
                Err(_) => false,
            },
            32 => addr.bytes().all(|b| b == b'0'),
            _ => false,
        };
        if reachable {
            out.insert(port);
        }
    }
}

/// A non-blocking netlink socket subscribed to multicast groups and
/// registered with the loop: what the address watch here and the
/// nf_tables watch in `sys::nft` listen on.
pub struct McastSocket {
    fd: AsyncFd<OwnedFd>,
}

impl McastSocket {
    /// Opens a socket of netlink `protocol` bound to the `groups` bit mask.
    pub fn open(protocol: libc::c_int, groups: u32) -> io::Result<McastSocket> {
        // SAFETY: plain socket/bind calls; the fd is owned right away.
        let fd = unsafe {
            let raw = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                protocol,
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = groups;
        // SAFETY: `sa` is a valid sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_nl as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(McastSocket {
            // SAFETY: the OwnedFd is moved in and stays open, unchanged,
            // until the AsyncFd is dropped.
            fd: unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?,
        })
    }

    /// Waits until the socket is readable, then hands at most `max` queued
    /// datagrams to `f`: `Some(bytes)`, or `None` when the kernel dropped
    /// notifications for want of buffer space (ENOBUFS). `buf` is
    /// received into up to its capacity, never zero-filled: the caller
    /// keeps it from call to call.
    pub async fn recv_batch(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        mut f: impl FnMut(Option<&[u8]>),
    ) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        for _ in 0..max {
            let fd = self.fd.get_ref().as_raw_fd();
            match nfnl::recv_into(fd, buf, libc::MSG_DONTWAIT) {
                Ok(_) => f(Some(buf)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    break;
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => f(None),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A netlink socket that wakes when IPv4/IPv6 addresses or links change.
pub struct AddrWatch {
    sock: McastSocket,
    buf: Vec<u8>,
}

impl AddrWatch {
    pub fn new() -> io::Result<AddrWatch> {
        let groups = libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR | libc::RTMGRP_LINK;
        Ok(AddrWatch {
            sock: McastSocket::open(libc::NETLINK_ROUTE, groups as u32)?,
            buf: Vec::with_capacity(8192),
        })
    }

    /// Waits for at least one change notification and drains what is
    /// queued (at most 64 datagrams per call; a missed notification
    /// counts too: a re-read covers it).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut got = false;
            self.sock
                .recv_batch(&mut self.buf, 64, |_| got = true)
                .await?;
            if got {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_listeners() {
        // The kernel prints addresses as host-order u32s: build the lines
        // the same way so the test holds on big-endian MIPS too.
        let hex = |a: [u8; 4]| format!("{:08X}", u32::from_ne_bytes(a));
        let line = |i: u32, local: [u8; 4], port: u16, rem: [u8; 4], st: &str| {
            format!(
                "   {i}: {}:{port:04X} {}:0000 {st} 00000000:00000000 00:00000000 00000000     0        0 1 1\n",
                hex(local),
                hex(rem)
            )
        };
        let tcp = format!(
            "  sl  local_address rem_address   st\n{}{}{}{}",
            line(0, [0, 0, 0, 0], 5000, [0, 0, 0, 0], "0A"),
            line(1, [127, 0, 0, 1], 53, [0, 0, 0, 0], "0A"),
            line(2, [192, 0, 3, 1], 22, [0, 0, 0, 0], "0A"),
            line(3, [0, 0, 0, 0], 8080, [192, 168, 0, 2], "01"),
        );
        let mut out = HashSet::new();
        parse_proc_net(&tcp, true, Some(Ipv4Addr::new(192, 0, 3, 1)), &mut out);
        // 0.0.0.0:5000 and 192.0.3.1:22 are reachable; 127.0.0.1:53 is not;
        // an established connection is not a listener.
        let mut ports: Vec<_> = out.into_iter().collect();
        ports.sort();
        assert_eq!(ports, vec![22, 5000]);
    }

    /// Every kind of socket the WAN side reaches is seen, on IPv4 and
    /// IPv6, one port at a time (the filtered dumps) and all at once; a
    /// socket on loopback only is not.
    #[test]
    fn sock_diag_sees_listeners() {
        let tcp4 = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let tcp6 = std::net::TcpListener::bind("[::]:0").unwrap();
        let udp4 = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        let udp6 = std::net::UdpSocket::bind("[::]:0").unwrap();
        let lo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = |a: std::io::Result<std::net::SocketAddr>| a.unwrap().port();
        let held = [
            (Proto::Tcp, port(tcp4.local_addr())),
            (Proto::Tcp, port(tcp6.local_addr())),
            (Proto::Udp, port(udp4.local_addr())),
            (Proto::Udp, port(udp6.local_addr())),
        ];
        let lo = port(lo.local_addr());
        let mut probe = Probe::default();
        // the kernel filters a dump on the port: only that one comes back
        let mut got = HashSet::new();
        probe
            .wan_ports(Proto::Tcp, Some(held[0].1), None, &mut got)
            .unwrap();
        assert_eq!(got, HashSet::from([held[0].1]));
        for (proto, p) in held {
            // one port: the kernel filters on it
            let mut l = Listeners::default();
            assert!(l.wan_listener(&mut probe, proto, p, None), "{proto:?} {p}");
            assert!(matches!(l.tcp, Seen::Nothing | Seen::One(..)));
            assert!(matches!(l.udp, Seen::Nothing | Seen::One(..)));
        }
        let mut l = Listeners::default();
        assert!(!l.wan_listener(&mut probe, Proto::Tcp, lo, None));
        // a second port of the protocol reads them all
        for (proto, p) in held {
            assert!(l.wan_listener(&mut probe, proto, p, None), "{proto:?} {p}");
        }
        assert!(matches!(l.tcp, Seen::All(_)));
        assert!(!l.wan_listener(&mut probe, Proto::Tcp, lo, None));
        // bound to the WAN address (here loopback's) counts
        let wan = Some(Ipv4Addr::LOCALHOST);
        assert!(Listeners::default().wan_listener(&mut probe, Proto::Tcp, lo, wan));
        // the sockets were kept, not opened per request
        assert!(probe.diag.is_some());
    }

    #[test]
    fn loopback_exists() {
        assert!(ifindex("lo").is_some());
        assert!(ipv4_addrs("lo").contains(&(Ipv4Addr::LOCALHOST, 8)));
        assert!(ifindex("no-such-dev0").is_none());
    }
}
