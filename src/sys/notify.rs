//! Sends GENA event messages: one short-lived HTTP connection per message,
//! on its own task with connect/write/read deadlines, so a slow or dead
//! subscriber never holds up the loop.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;

/// How long one delivery may take in all (connect, send, status line).
pub const DEADLINE: Duration = Duration::from_secs(3);

/// The outcome of one delivery, reported to the loop.
#[derive(Debug)]
pub struct Done {
    pub sid: String,
    pub ok: bool,
}

/// Delivers `request` to `to` and reports the outcome on `done`.
pub fn spawn(to: std::net::SocketAddr, sid: String, request: Vec<u8>, done: mpsc::Sender<Done>) {
    crate::sys::task::spawn_local(async move {
        let ok = matches!(timeout(DEADLINE, deliver(to, &request)).await, Ok(Ok(true)));
        if !ok {
            log::debug!("event to {to} for {sid} failed");
        }
        let _ = done.send(Done { sid, ok }).await;
    });
}

async fn deliver(to: std::net::SocketAddr, request: &[u8]) -> std::io::Result<bool> {
    let mut s = TcpStream::connect(to).await?;
    s.write_all(request).await?;
    // Only the status line matters: any 2xx is an acknowledgement.
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let status = &buf[..got];
    Ok(status.len() >= 12 && status.starts_with(b"HTTP/1.") && status[9] == b'2')
}
