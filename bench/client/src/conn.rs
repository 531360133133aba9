//! New-connection rate through the router: a LAN-side accept loop and a
//! WAN-side connect loop in one process, each thread inside its own
//! network namespace (setns on that thread only).

use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::stats::{Errors, Samples};

const CLONE_NEWNET: i32 = 0x4000_0000;
const SOL_SOCKET: i32 = 1;
const SO_LINGER: i32 = 13;

#[repr(C)]
struct Linger {
    l_onoff: i32,
    l_linger: i32,
}

unsafe extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
}

/// Moves the calling thread into the network namespace `/run/netns/<ns>`.
pub fn enter(ns: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: a valid namespace fd; affects only the calling thread.
    if unsafe { setns(f.as_raw_fd(), CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Close with RST (SO_LINGER 0): no TIME_WAIT on the WAN host, so the
/// loop never runs out of source ports; the router's conntrack entry
/// goes to CLOSE and a reused tuple is treated as a new connection.
fn reset_on_close(s: &TcpStream) {
    let l = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized struct linger.
    unsafe {
        setsockopt(
            s.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &l,
            std::mem::size_of::<Linger>() as u32,
        );
    }
}

pub struct Outcome {
    pub connects: u64,
    pub accepted: u32,
    pub secs: f64,
    /// Connect times (SYN out to handshake complete).
    pub samples: Samples,
    /// Whole loop iterations (connect and reset-close).
    pub iterations: Samples,
    pub errors: Errors,
}

/// Runs `warmup` untimed connections, then connects to `dst` from the WAN
/// namespace for `secs` seconds, one at a time, counting completed
/// handshakes; the LAN namespace accepts on `listen`.
pub fn run(
    lan_ns: &str,
    wan_ns: &str,
    listen: SocketAddr,
    dst: SocketAddr,
    secs: f64,
    warmup: u32,
) -> io::Result<Outcome> {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU32::new(0));
    let lan = lan_ns.to_string();
    {
        let stop = stop.clone();
        let accepted = accepted.clone();
        std::thread::spawn(move || {
            let l = enter(&lan).and_then(|()| TcpListener::bind(listen));
            let l = match l {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                if let Ok((s, _)) = l.accept() {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    drop(s);
                }
            }
        });
    }
    rx.recv()
        .map_err(|_| io::Error::other("accept thread died"))??;
    let wan = wan_ns.to_string();
    let out = std::thread::spawn(move || -> io::Result<Outcome> {
        enter(&wan)?;
        let mut errors = Errors::default();
        // (connect time, whole iteration: connect and reset-close)
        let once = |errors: &mut Errors| -> Option<(Duration, Duration)> {
            let t = Instant::now();
            match TcpStream::connect_timeout(&dst, Duration::from_secs(1)) {
                Ok(s) => {
                    let d = t.elapsed();
                    reset_on_close(&s);
                    drop(s);
                    Some((d, t.elapsed()))
                }
                Err(e) => {
                    errors.add(&format!("{:?}", e.kind()), || e.to_string());
                    None
                }
            }
        };
        for _ in 0..warmup {
            once(&mut errors);
        }
        if errors.total() >= u64::from(warmup.max(1)) {
            return Err(io::Error::other(format!(
                "no connection went through during warm-up: {}",
                errors.first.clone().unwrap_or_default()
            )));
        }
        let mut errors = Errors::default();
        let mut samples = Samples::with_capacity(100_000);
        let mut iterations = Samples::with_capacity(100_000);
        let start = Instant::now();
        let limit = Duration::from_secs_f64(secs);
        let mut connects = 0u64;
        while start.elapsed() < limit {
            if let Some((d, it)) = once(&mut errors) {
                samples.push(d);
                iterations.push(it);
                connects += 1;
            }
            if errors.total() > 100 {
                break;
            }
        }
        Ok(Outcome {
            connects,
            accepted: 0,
            secs: start.elapsed().as_secs_f64(),
            samples,
            iterations,
            errors,
        })
    })
    .join()
    .map_err(|_| io::Error::other("connect thread panicked"))??;
    stop.store(true, Ordering::Relaxed);
    // Wakes the accept loop so it sees `stop` (one last connection).
    let lan = lan_ns.to_string();
    let _ = std::thread::spawn(move || {
        if enter(&lan).is_ok() {
            let _ = TcpStream::connect_timeout(&listen, Duration::from_millis(200));
        }
    })
    .join();
    Ok(Outcome {
        accepted: accepted.load(Ordering::Relaxed),
        ..out
    })
}

/// Time until a mapping works again after `reload` (a firewall reload):
/// first checks that a connection from the WAN namespace to `dst`
/// reaches the LAN listener on `listen`, runs `reload`, then retries
/// fresh connections (each with a short timeout, since a dropped SYN is
/// not retransmitted soon enough) until one is accepted.
pub struct Restore {
    /// How long the reload command ran.
    pub reload_ms: f64,
    /// From the end of the reload command to the first connection through.
    pub restored_ms: f64,
    /// From the start of the reload command to the first connection
    /// through: the daemon may already be restoring while the reload
    /// command is still exiting, so this is the bound that always holds.
    pub since_start_ms: f64,
    pub attempts: u64,
}

pub fn restore_probe(
    lan_ns: &str,
    wan_ns: &str,
    listen: SocketAddr,
    dst: SocketAddr,
    reload: &[String],
    timeout: Duration,
) -> io::Result<Restore> {
    let lan = lan_ns.to_string();
    let listener = std::thread::spawn(move || -> io::Result<TcpListener> {
        enter(&lan)?;
        TcpListener::bind(listen)
    })
    .join()
    .map_err(|_| io::Error::other("listener thread panicked"))??;
    listener.set_nonblocking(true)?;
    let wan = wan_ns.to_string();
    let reload = reload.to_vec();
    let (tx, rx) = mpsc::channel::<()>();
    let prober = std::thread::spawn(move || -> io::Result<Restore> {
        enter(&wan)?;
        let attempt = |t: Duration| -> bool {
            match TcpStream::connect_timeout(&dst, t) {
                Ok(s) => {
                    reset_on_close(&s);
                    true
                }
                Err(_) => false,
            }
        };
        if !attempt(Duration::from_secs(1)) {
            return Err(io::Error::other(format!(
                "{dst} does not reach the LAN before the reload"
            )));
        }
        let (cmd, args) = reload
            .split_first()
            .ok_or_else(|| io::Error::other("empty reload command"))?;
        let t0 = Instant::now();
        let st = std::process::Command::new(cmd).args(args).status()?;
        if !st.success() {
            return Err(io::Error::other(format!("reload command failed: {st}")));
        }
        let t1 = Instant::now();
        let mut attempts = 0u64;
        loop {
            attempts += 1;
            if attempt(Duration::from_millis(5)) {
                let _ = tx.send(());
                return Ok(Restore {
                    reload_ms: (t1 - t0).as_secs_f64() * 1000.0,
                    restored_ms: t1.elapsed().as_secs_f64() * 1000.0,
                    since_start_ms: t0.elapsed().as_secs_f64() * 1000.0,
                    attempts,
                });
            }
            if t1.elapsed() > timeout {
                return Err(io::Error::other(format!(
                    "not restored within {timeout:?} ({attempts} attempts)"
                )));
            }
        }
    });
    // Drains accepted connections while the prober runs.
    loop {
        while let Ok((s, _)) = listener.accept() {
            drop(s);
        }
        if rx.try_recv().is_ok() || prober.is_finished() {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    prober
        .join()
        .map_err(|_| io::Error::other("probe thread panicked"))?
}
