//! bench-client: the benchmark's own client for bench/compare.sh. It speaks
//! UPnP SOAP over HTTP/1.1 and NAT-PMP with nothing but std, so its own
//! cost is small and measured (`overhead`), and it drives rupnpd and
//! miniupnpd with byte-identical requests. Every command prints one JSON
//! object on stdout.
//!
//! ```text
//! bench-client soap --addr IP:PORT --mode keepalive|close --op add|del|generic|listall
//!                   [--from PORT] [--count K] [--proto TCP] [--client IP] [--desc TEXT]
//!                   [--lease SECS] [--abort-after 3]
//! bench-client pmp --gw IP [--op map|del] [--from PORT] [--count K] [--proto udp|tcp]
//!                  [--lifetime SECS]
//! bench-client connrate --lan-ns NS --wan-ns NS --listen IP:PORT --dst IP:PORT
//!                       [--secs 2] [--warmup 200]
//! bench-client wait-ready --addr IP:PORT [--path /rootDesc.xml] [--timeout-ms 10000]
//! bench-client overhead [--count 5000]
//! bench-client restore-probe --lan-ns NS --wan-ns NS --listen IP:PORT --dst IP:PORT
//!                            [--timeout-ms 30000] -- RELOAD COMMAND...
//! bench-client mupnp-fill --wan-ifindex N [--from PORT] [--count K] [--client IP] [--desc TEXT]
//!                         [--table filter] [--nat-chain prerouting_miniupnpd] [--fwd-chain miniupnpd]
//! ```

mod conn;
mod nftfill;
mod pmp;
mod responder;
mod soap;
mod stats;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use soap::{IPCONN_PATH, IPCONN_URN, Mode, Session};
use stats::{Errors, Samples, jstr};

struct Args {
    cmd: String,
    opts: HashMap<String, String>,
    /// Everything after `--` (a command to run).
    rest: Vec<String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().ok_or("missing command")?;
        let mut opts = HashMap::new();
        let mut rest = Vec::new();
        while let Some(k) = it.next() {
            if k == "--" {
                rest = it.by_ref().collect();
                break;
            }
            let name = k
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
            opts.insert(name.to_string(), v);
        }
        Ok(Args { cmd, opts, rest })
    }

    fn str(&self, name: &str, default: &str) -> String {
        self.opts
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn req(&self, name: &str) -> Result<String, String> {
        self.opts
            .get(name)
            .cloned()
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.opts.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: bad number {v:?}")),
        }
    }

    fn addr(&self, name: &str) -> Result<SocketAddr, String> {
        let v = self.req(name)?;
        v.parse()
            .map_err(|_| format!("--{name}: bad address {v:?}"))
    }
}

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("bench-client: {e}");
            return ExitCode::from(2);
        }
    };
    let r = match args.cmd.as_str() {
        "soap" => cmd_soap(&args),
        "pmp" => cmd_pmp(&args),
        "connrate" => cmd_connrate(&args),
        "wait-ready" => cmd_wait_ready(&args),
        "overhead" => cmd_overhead(&args),
        "mupnp-fill" => cmd_mupnp_fill(&args),
        "restore-probe" => cmd_restore_probe(&args),
        other => Err(format!("unknown command {other:?}")),
    };
    match r {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-client {}: {e}", args.cmd);
            ExitCode::from(1)
        }
    }
}

/// Parameters of a SOAP workload.
struct SoapWork {
    op: String,
    from: u16,
    count: u32,
    proto: String,
    client: String,
    desc: String,
    lease: u32,
    abort_after: u32,
    /// Stop after this long (0 = never) once `min_count` calls were made;
    /// the output then says `"truncated":true`.
    max_secs: f64,
    min_count: u64,
}

fn cmd_soap(a: &Args) -> Result<String, String> {
    let addr = a.addr("addr")?;
    let mode = Mode::parse(&a.str("mode", "keepalive")).ok_or("--mode keepalive|close")?;
    let w = SoapWork {
        op: a.req("op")?,
        from: a.num("from", 20000)?,
        count: a.num("count", 100)?,
        proto: a.str("proto", "TCP"),
        client: a.str("client", "192.168.77.2"),
        desc: a.str("desc", "bench"),
        lease: a.num("lease", 3600)?,
        abort_after: a.num("abort-after", 3)?,
        max_secs: a.num("max-secs", 0.0)?,
        min_count: a.num("min-count", 10)?,
    };
    let mut s = Session::new(addr, IPCONN_PATH, IPCONN_URN, mode);
    run_soap(&mut s, &w)
}

/// Runs a SOAP workload on a session and describes it in JSON.
fn run_soap(s: &mut Session, w: &SoapWork) -> Result<String, String> {
    let mut run = Run {
        samples: Samples::with_capacity(w.count as usize),
        errors: Errors::default(),
        calls: 0,
        io_streak: 0,
    };
    let mut ok = 0u64;
    let mut entries = 0u64;
    let mut aborted = false;
    let mut truncated = false;
    let start = Instant::now();
    let out_of_time = |calls: u64| {
        w.max_secs > 0.0 && calls >= w.min_count && start.elapsed().as_secs_f64() > w.max_secs
    };
    let lease = w.lease.to_string();
    match w.op.as_str() {
        "add" | "del" => {
            for i in 0..w.count {
                let Some(p) = u16::try_from(u32::from(w.from) + i).ok() else {
                    break;
                };
                if out_of_time(run.calls) {
                    truncated = true;
                    break;
                }
                let port = p.to_string();
                let r = if w.op == "add" {
                    run.step(
                        s,
                        "AddPortMapping",
                        &[
                            ("NewRemoteHost", ""),
                            ("NewExternalPort", &port),
                            ("NewProtocol", &w.proto),
                            ("NewInternalPort", &port),
                            ("NewInternalClient", &w.client),
                            ("NewEnabled", "1"),
                            ("NewPortMappingDescription", &w.desc),
                            ("NewLeaseDuration", &lease),
                        ],
                    )
                } else {
                    run.step(
                        s,
                        "DeletePortMapping",
                        &[
                            ("NewRemoteHost", ""),
                            ("NewExternalPort", &port),
                            ("NewProtocol", &w.proto),
                        ],
                    )
                };
                match r {
                    Some(r) if r.status == 200 => ok += 1,
                    Some(r) => {
                        let code = r.fault_code().map(|c| c.to_string());
                        let kind = code.unwrap_or_else(|| format!("http{}", r.status));
                        run.errors
                            .add(&kind, || format!("port {p}: HTTP {}", r.status));
                    }
                    None if run.io_streak >= w.abort_after => {
                        aborted = true;
                        break;
                    }
                    None => {}
                }
            }
        }
        "generic" => {
            // GetGenericPortMappingEntry 0, 1, 2, … until 713, as upnpc -l.
            let mut i = 0u32;
            loop {
                let idx = i.to_string();
                match run.step(
                    s,
                    "GetGenericPortMappingEntry",
                    &[("NewPortMappingIndex", &idx)],
                ) {
                    Some(r) if r.status == 200 => {
                        ok += 1;
                        entries += 1;
                    }
                    Some(r) => {
                        let code = r.fault_code();
                        if code != Some(713) {
                            let kind = code
                                .map(|c| c.to_string())
                                .unwrap_or_else(|| format!("http{}", r.status));
                            run.errors
                                .add(&kind, || format!("index {i}: HTTP {}", r.status));
                        }
                        break;
                    }
                    None if run.io_streak >= w.abort_after => {
                        aborted = true;
                        break;
                    }
                    None => {}
                }
                i += 1;
                if i > 140_000 {
                    break;
                }
                if out_of_time(run.calls) {
                    truncated = true;
                    break;
                }
            }
        }
        "listall" => {
            // GetListOfPortMappings over the whole port range, TCP then
            // UDP as upnpc -L, 1000 entries per call (upnpc's
            // NewNumberOfPorts), continuing after the last port returned.
            'protos: for proto in ["TCP", "UDP"] {
                let mut from = 0u32;
                while from <= 65535 {
                    let start_port = from.to_string();
                    match run.step(
                        s,
                        "GetListOfPortMappings",
                        &[
                            ("NewStartPort", &start_port),
                            ("NewEndPort", "65535"),
                            ("NewProtocol", proto),
                            ("NewManage", "1"),
                            ("NewNumberOfPorts", "1000"),
                        ],
                    ) {
                        Some(r) if r.status == 200 => {
                            ok += 1;
                            let ports = soap::listing_ports(&r.body);
                            entries += ports.len() as u64;
                            match ports.iter().max() {
                                Some(&m) if ports.len() >= 1000 => from = u32::from(m) + 1,
                                _ => break,
                            }
                        }
                        Some(r) => {
                            let code = r.fault_code();
                            // 730: nothing (more) in range.
                            if code != Some(730) {
                                let kind = code
                                    .map(|c| c.to_string())
                                    .unwrap_or_else(|| format!("http{}", r.status));
                                run.errors
                                    .add(&kind, || format!("{proto} from {from}: {}", r.status));
                            }
                            break;
                        }
                        None => {
                            // A listing that breaks the connection is a
                            // failure of the whole listing.
                            aborted = true;
                            break 'protos;
                        }
                    }
                }
            }
        }
        other => return Err(format!("unknown --op {other:?}")),
    }
    let total = start.elapsed();
    let secs = total.as_secs_f64();
    Ok(format!(
        "{{\"op\":{},\"mode\":{},\"count\":{},\"calls\":{},\"ok\":{ok},\"entries\":{entries},\
\"aborted\":{aborted},\"truncated\":{truncated},\"connects\":{},\"total_ms\":{:.3},\"ops_per_s\":{:.1},{},{}}}",
        jstr(&w.op),
        jstr(s.mode().as_str()),
        w.count,
        run.calls,
        s.connects,
        secs * 1000.0,
        if secs > 0.0 {
            run.calls as f64 / secs
        } else {
            0.0
        },
        run.samples.json_fields(),
        run.errors.json_fields()
    ))
}

/// The running tallies of one SOAP workload.
struct Run {
    samples: Samples,
    errors: Errors,
    calls: u64,
    /// Consecutive transport failures (a dead daemon refuses every call).
    io_streak: u32,
}

impl Run {
    /// One timed action; None after a transport error (tallied as "io").
    fn step(
        &mut self,
        s: &mut Session,
        action: &str,
        args: &[(&str, &str)],
    ) -> Option<soap::Reply> {
        self.calls += 1;
        let t = Instant::now();
        let r = s.call(action, args);
        self.samples.push(t.elapsed());
        match r {
            Ok(r) => {
                self.io_streak = 0;
                Some(r)
            }
            Err(e) => {
                self.io_streak += 1;
                self.errors.add("io", || format!("{action}: {e}"));
                None
            }
        }
    }
}

/// A time budget for a workload: stop after `max_secs` (0 = never) once
/// at least `min_count` operations were timed.
#[derive(Clone, Copy)]
struct Budget {
    max_secs: f64,
    min_count: u64,
}

fn cmd_pmp(a: &Args) -> Result<String, String> {
    let gw: std::net::Ipv4Addr = a.req("gw")?.parse().map_err(|_| "--gw: bad IPv4 address")?;
    let port: u16 = a.num("port", 5351)?;
    let op = a.str("op", "map");
    let from: u16 = a.num("from", 50000)?;
    let count: u32 = a.num("count", 100)?;
    let proto = pmp::Proto::parse(&a.str("proto", "udp")).ok_or("--proto udp|tcp")?;
    let lifetime: u32 = a.num("lifetime", 3600)?;
    let mut c = pmp::Client::new(SocketAddr::from((gw, port))).map_err(|e| e.to_string())?;
    c.rto = Duration::from_millis(a.num("rto-ms", 250)?);
    c.tries = a.num("tries", 4)?;
    let budget = Budget {
        max_secs: a.num("max-secs", 0.0)?,
        min_count: a.num("min-count", 10)?,
    };
    run_pmp(&mut c, &op, from, count, proto, lifetime, budget)
}

fn run_pmp(
    c: &mut pmp::Client,
    op: &str,
    from: u16,
    count: u32,
    proto: pmp::Proto,
    lifetime: u32,
    budget: Budget,
) -> Result<String, String> {
    let mut samples = Samples::with_capacity(count as usize);
    let mut errors = Errors::default();
    let (mut ok, mut moved) = (0u64, 0u64);
    let start = Instant::now();
    let mut truncated = false;
    for i in 0..count {
        let Some(p) = u16::try_from(u32::from(from) + i).ok() else {
            break;
        };
        if budget.max_secs > 0.0
            && samples.len() as u64 >= budget.min_count
            && start.elapsed().as_secs_f64() > budget.max_secs
        {
            truncated = true;
            break;
        }
        let t = Instant::now();
        // RFC 6886 §3.4: a delete carries lifetime 0 and external port 0.
        let r = match op {
            "map" => c.map(proto, p, p, lifetime),
            "del" => c.map(proto, p, 0, 0),
            other => return Err(format!("unknown --op {other:?}")),
        };
        samples.push(t.elapsed());
        match r {
            Ok(g) if g.result == 0 => {
                ok += 1;
                if op == "map" && (g.external_port != p || g.lifetime == 0) {
                    moved += 1;
                }
            }
            Ok(g) => errors.add(&format!("result{}", g.result), || {
                format!("port {p}: result {}", g.result)
            }),
            Err(e) => {
                errors.add("timeout", || format!("port {p}: {e}"));
                if errors.total() >= 3 && ok == 0 {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(format!(
        "{{\"op\":{},\"count\":{count},\"ok\":{ok},\"other_port\":{moved},\"truncated\":{truncated},\"calls\":{},\"retransmits\":{},\
\"total_ms\":{:.3},\"ops_per_s\":{:.1},{},{}}}",
        jstr(op),
        samples.len(),
        c.retransmits,
        secs * 1000.0,
        if secs > 0.0 {
            samples.len() as f64 / secs
        } else {
            0.0
        },
        samples.json_fields(),
        errors.json_fields()
    ))
}

fn cmd_connrate(a: &Args) -> Result<String, String> {
    let o = conn::run(
        &a.req("lan-ns")?,
        &a.req("wan-ns")?,
        a.addr("listen")?,
        a.addr("dst")?,
        a.num("secs", 2.0)?,
        a.num("warmup", 200)?,
    )
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{{\"connects\":{},\"accepted\":{},\"secs\":{:.3},\"per_s\":{:.1},\"iteration_median_us\":{:.1},\
\"per_s_at_median\":{:.1},{},{}}}",
        o.connects,
        o.accepted,
        o.secs,
        o.connects as f64 / o.secs.max(1e-9),
        o.iterations.median_us(),
        1e6 / o.iterations.median_us().max(1e-3),
        o.samples.json_fields(),
        o.errors.json_fields()
    ))
}

/// Polls the description until it is served (HTTP 200) and prints the
/// wall-clock time of that moment, for the caller to subtract its own
/// start time from.
fn cmd_wait_ready(a: &Args) -> Result<String, String> {
    let addr = a.addr("addr")?;
    let path = a.str("path", "/rootDesc.xml");
    let timeout = Duration::from_millis(a.num("timeout-ms", 10_000)?);
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let start = Instant::now();
    let mut polls = 0u64;
    while start.elapsed() < timeout {
        polls += 1;
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut head).is_ok()
                && head.starts_with(b"HTTP/1.")
                && &head[9..12] == b"200"
            {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_err(|e| e.to_string())?;
                return Ok(format!(
                    "{{\"ready_epoch_us\":{},\"polls\":{polls}}}",
                    now.as_micros()
                ));
            }
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Err(format!("{addr}{path} not served within {timeout:?}"))
}

/// The client's own cost: the same request loops against trivial local
/// responders on loopback.
fn cmd_overhead(a: &Args) -> Result<String, String> {
    let count: u32 = a.num("count", 5000)?;
    let http = responder::http().map_err(|e| e.to_string())?;
    let udp = responder::pmp().map_err(|e| e.to_string())?;
    let work = SoapWork {
        op: "add".into(),
        from: 20000,
        count,
        proto: "TCP".into(),
        client: "192.168.77.2".into(),
        desc: "bench".into(),
        lease: 3600,
        abort_after: 3,
        max_secs: 0.0,
        min_count: 0,
    };
    let mut ka = Session::new(http, IPCONN_PATH, IPCONN_URN, Mode::KeepAlive);
    let keepalive = run_soap(&mut ka, &work)?;
    // The responder serves one connection at a time: close this one first.
    drop(ka);
    let mut cl = Session::new(http, IPCONN_PATH, IPCONN_URN, Mode::Close);
    let close = run_soap(&mut cl, &work)?;
    let mut c = pmp::Client::new(udp).map_err(|e| e.to_string())?;
    let natpmp = run_pmp(
        &mut c,
        "map",
        50000,
        count,
        pmp::Proto::Udp,
        3600,
        Budget {
            max_secs: 0.0,
            min_count: 0,
        },
    )?;
    Ok(format!(
        "{{\"soap_keepalive\":{keepalive},\"soap_close\":{close},\"natpmp\":{natpmp}}}"
    ))
}

/// Installs TCP mappings as miniupnpd's own rules (see `nftfill`); run
/// inside the router namespace.
fn cmd_mupnp_fill(a: &Args) -> Result<String, String> {
    let spec = nftfill::Spec {
        table: a.str("table", "filter"),
        nat_chain: a.str("nat-chain", "prerouting_miniupnpd"),
        fwd_chain: a.str("fwd-chain", "miniupnpd"),
        wan_ifindex: a.num("wan-ifindex", 0)?,
        client: a
            .str("client", "192.168.77.2")
            .parse()
            .map_err(|_| "--client: bad IPv4 address")?,
        desc: a.str("desc", "bench"),
        from: a.num("from", 20000)?,
        count: a.num("count", 100)?,
    };
    if spec.wan_ifindex == 0 {
        return Err("--wan-ifindex is required".into());
    }
    let t = Instant::now();
    let rules = nftfill::fill(&spec).map_err(|e| e.to_string())?;
    Ok(format!(
        "{{\"rules\":{rules},\"mappings\":{},\"total_ms\":{:.3}}}",
        rules / 2,
        t.elapsed().as_secs_f64() * 1000.0
    ))
}

fn cmd_restore_probe(a: &Args) -> Result<String, String> {
    let r = conn::restore_probe(
        &a.req("lan-ns")?,
        &a.req("wan-ns")?,
        a.addr("listen")?,
        a.addr("dst")?,
        &a.rest,
        Duration::from_millis(a.num("timeout-ms", 30_000)?),
    )
    .map_err(|e| e.to_string())?;
    Ok(format!(
        "{{\"reload_ms\":{:.3},\"restored_ms\":{:.3},\"since_start_ms\":{:.3},\"attempts\":{}}}",
        r.reload_ms, r.restored_ms, r.since_start_ms, r.attempts
    ))
}
