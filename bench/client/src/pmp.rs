//! A NAT-PMP (RFC 6886) mapping client: one UDP socket, one request in
//! flight. Retransmission as RFC 6886 §3.1 (250 ms, doubling) is
//! available, but the benchmark waits once and long instead: a daemon
//! that takes over a second per request would otherwise receive
//! duplicates and do each mapping several times.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

#[derive(Clone, Copy)]
pub enum Proto {
    Udp,
    Tcp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "udp" => Some(Proto::Udp),
            "tcp" => Some(Proto::Tcp),
            _ => None,
        }
    }

    /// RFC 6886 §3.3: opcode 1 maps UDP, 2 maps TCP.
    fn opcode(self) -> u8 {
        match self {
            Proto::Udp => 1,
            Proto::Tcp => 2,
        }
    }
}

pub struct Client {
    sock: UdpSocket,
    /// First wait for an answer; doubled for each retransmission.
    pub rto: Duration,
    /// Transmissions per request (1 = no retransmission).
    pub tries: u32,
    /// Retransmissions sent over the whole run.
    pub retransmits: u64,
}

/// What the gateway granted.
pub struct Granted {
    pub result: u16,
    pub external_port: u16,
    pub lifetime: u32,
}

impl Client {
    pub fn new(gw: SocketAddr) -> io::Result<Client> {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(gw)?;
        Ok(Client {
            sock,
            rto: Duration::from_millis(250),
            tries: 4,
            retransmits: 0,
        })
    }

    /// RFC 6886 §3.3 mapping request; lifetime 0 deletes (§3.4, with
    /// suggested external port 0).
    pub fn map(
        &mut self,
        proto: Proto,
        internal: u16,
        external: u16,
        lifetime: u32,
    ) -> io::Result<Granted> {
        let mut req = [0u8; 12];
        req[1] = proto.opcode();
        req[4..6].copy_from_slice(&internal.to_be_bytes());
        req[6..8].copy_from_slice(&external.to_be_bytes());
        req[8..12].copy_from_slice(&lifetime.to_be_bytes());
        let mut wait = self.rto;
        for attempt in 0..self.tries.max(1) {
            if attempt > 0 {
                self.retransmits += 1;
            }
            self.sock.send(&req)?;
            let deadline = Instant::now() + wait;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                self.sock.set_read_timeout(Some(left))?;
                let mut buf = [0u8; 64];
                let n = match self.sock.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::TimedOut =>
                    {
                        break;
                    }
                    Err(e) => return Err(e),
                };
                // RFC 6886 §3.3 response: 16 bytes, opcode 128 + request
                // opcode, same internal port.
                if n >= 16
                    && buf[0] == 0
                    && buf[1] == 128 + proto.opcode()
                    && buf[8..10] == internal.to_be_bytes()
                {
                    return Ok(Granted {
                        result: u16::from_be_bytes([buf[2], buf[3]]),
                        external_port: u16::from_be_bytes([buf[10], buf[11]]),
                        lifetime: u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]),
                    });
                }
            }
            wait *= 2;
        }
        Err(io::Error::new(io::ErrorKind::TimedOut, "no NAT-PMP answer"))
    }
}
