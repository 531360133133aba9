//! Trivial local responders used to measure the client's own cost: an
//! HTTP server that answers every POST with a fixed AddPortMappingResponse
//! (keeping the connection unless asked to close), and a UDP server that
//! answers every NAT-PMP request with a fixed success.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};

const RESPONSE_BODY: &str = "<?xml version=\"1.0\"?>\r\n<s:Envelope xmlns:s=\"http://schemas.xmlsoap.org/soap/envelope/\" \
s:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\"><s:Body>\
<u:AddPortMappingResponse xmlns:u=\"urn:schemas-upnp-org:service:WANIPConnection:2\"/></s:Body></s:Envelope>\r\n";

/// Starts the HTTP responder on an ephemeral loopback port.
pub fn http() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            serve(s);
        }
    });
    Ok(addr)
}

fn serve(s: TcpStream) {
    let _ = s.set_nodelay(true);
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    loop {
        let mut len = 0usize;
        let mut close = false;
        let mut first = true;
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
            first = false;
        }
        if first {
            return;
        }
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nContent-Length: {}\r\n{}\r\n",
            RESPONSE_BODY.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let mut out = head.into_bytes();
        out.extend_from_slice(RESPONSE_BODY.as_bytes());
        if w.write_all(&out).is_err() || close {
            return;
        }
    }
}

/// Starts the NAT-PMP responder on an ephemeral loopback port.
pub fn pmp() -> std::io::Result<SocketAddr> {
    let s = UdpSocket::bind("127.0.0.1:0")?;
    let addr = s.local_addr()?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut resp = [0u8; 16];
            resp[1] = 128 + buf[1];
            resp[8..10].copy_from_slice(&buf[4..6]);
            resp[10..12].copy_from_slice(&buf[6..8]);
            resp[12..16].copy_from_slice(&buf[8..12]);
            let _ = s.send_to(&resp, from);
        }
    });
    Ok(addr)
}
