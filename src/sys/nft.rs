//! The nftables firewall backend: every mapping becomes elements of named
//! maps and sets inside fw4's `table inet fw4` (or an equivalent table the
//! daemon creates where fw4 is absent).
//!
//! Owns: the ruleset structure, the text of every nft command, the
//! transaction per loop turn, restoring after a firewall reload, and the
//! netlink watch that notices such a reload. Commands go through
//! libnftables loaded at run time (no process per mapping); the `nft`
//! binary is only a fallback when the library is missing.
//!
//! Layout (per-packet cost is one hash lookup whatever the number of
//! mappings, the kernel expires leases even if the daemon dies, and every
//! element carries counters):
//!
//! ```text
//! map upnp_dnat    { proto . eport : iaddr . iport }          WAN → LAN DNAT
//! map upnp_dnat_rh { rhost/prefix . proto . eport : iaddr . iport }  same, for one remote host
//! set upnp_fwd     { iaddr . proto . iport }                  forward accept
//! map upnp_snat    { iaddr . proto . iport . peer . pport : ext . eport }  PCP PEER
//! set upnp_extaddr { external address }                      hairpin match
//! set upnp_alive   { 1 }                                      canary: gone = table was flushed
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use crate::config::NftNames;
use crate::core::firewall::{Counters, Firewall};
use crate::core::pinhole::{PinChange, Pinhole};
use crate::core::table::{Change, Key, Mapping, Millis};
use crate::proto::Proto;

/// Extra time the kernel keeps an element after its lease: the daemon
/// removes it itself while alive; the kernel only takes over if it died.
pub const GRACE_MS: u64 = 10_000;

/// Map and set names inside the table.
pub const DNAT: &str = "upnp_dnat";
pub const DNAT_RH: &str = "upnp_dnat_rh";
pub const FWD: &str = "upnp_fwd";
pub const SNAT: &str = "upnp_snat";
pub const EXTADDR: &str = "upnp_extaddr";
pub const ALIVE: &str = "upnp_alive";
/// IPv6 pinholes, one set per wildcard shape: any remote, remote host
/// (`_h`), remote port (`_p`), both (`_hp`).
pub const PIN6: &str = "upnp_pin6";
pub const PIN6_H: &str = "upnp_pin6_h";
pub const PIN6_P: &str = "upnp_pin6_p";
pub const PIN6_HP: &str = "upnp_pin6_hp";
/// Comment on our main DNAT rule: a firewall reload flushes every rule
/// (and, depending on the nft version, possibly set elements), so
/// "our rule is there and so is the canary element" means intact.
const MARKER: &str = "rupnpd";
/// Base chains the daemon adds when fw4 is absent.
const BASE_FORWARD: &str = "rupnpd_forward";
const BASE_DSTNAT: &str = "rupnpd_dstnat";
const BASE_SRCNAT: &str = "rupnpd_srcnat";

/// Declarations, identical to those of the fw4 include file
/// (`openwrt-pkg/rupnpd/files/nftables.d/table-post/20-rupnpd.nft`):
/// `add` of an existing map only succeeds if it is declared the same way.
pub const DECLARATIONS: [(&str, &str, &str); 10] = [
    (
        "map",
        DNAT,
        "type inet_proto . inet_service : ipv4_addr . inet_service; flags timeout; counter;",
    ),
    (
        "map",
        DNAT_RH,
        "type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; flags interval,timeout; counter;",
    ),
    (
        "set",
        FWD,
        "type ipv4_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "map",
        SNAT,
        "type ipv4_addr . inet_proto . inet_service . ipv4_addr . inet_service : ipv4_addr . inet_service; flags timeout; counter;",
    ),
    ("set", EXTADDR, "type ipv4_addr;"),
    ("set", ALIVE, "type inet_service;"),
    (
        "set",
        PIN6,
        "type ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_H,
        "type ipv6_addr . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_P,
        "type inet_service . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
    (
        "set",
        PIN6_HP,
        "type ipv6_addr . inet_service . ipv6_addr . inet_proto . inet_service; flags timeout; counter;",
    ),
];

/// What the rules in our chains depend on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    pub wan_dev: Option<String>,
    pub lan_devs: Vec<String>,
    pub ext_addr: Option<Ipv4Addr>,
    pub hairpin: bool,
    pub log_packets: bool,
    pub log_connections: bool,
}

/// Quotes a device name for nft: names come from configuration, so
/// anything outside the kernel's allowed characters is refused.
fn dev_ok(d: &str) -> bool {
    !d.is_empty()
        && d.len() < 16
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@:".contains(&b))
}

/// An nft identifier (table, chain) from configuration.
pub fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && s.as_bytes()[0].is_ascii_alphabetic()
}

fn dev_set(devs: &[String]) -> String {
    let quoted: Vec<String> = devs
        .iter()
        .filter(|d| dev_ok(d))
        .map(|d| format!("\"{d}\""))
        .collect();
    format!("{{ {} }}", quoted.join(", "))
}

/// The structure and rules: idempotent, so it serves at start and after
/// every firewall reload. `own_base` adds hooked base chains (no fw4).
pub fn structure(n: &NftNames, s: &Setup, own_base: bool) -> String {
    let t = &n.table;
    let mut c = String::with_capacity(2048);
    let _ = writeln!(c, "add table inet {t}");
    for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
        let _ = writeln!(c, "add chain inet {t} {chain}");
        let _ = writeln!(c, "flush chain inet {t} {chain}");
    }
    for (kind, name, decl) in DECLARATIONS {
        let _ = writeln!(c, "add {kind} inet {t} {name} {{ {decl} }}");
    }
    if own_base {
        let base = [
            (
                BASE_FORWARD,
                "filter hook forward priority filter",
                &n.forward_chain,
            ),
            (
                BASE_DSTNAT,
                "nat hook prerouting priority dstnat",
                &n.prerouting_chain,
            ),
            (
                BASE_SRCNAT,
                "nat hook postrouting priority srcnat",
                &n.postrouting_chain,
            ),
        ];
        for (name, hook, target) in base {
            let _ = writeln!(
                c,
                "add chain inet {t} {name} {{ type {hook}; policy accept; }}"
            );
            let _ = writeln!(c, "flush chain inet {t} {name}");
            let _ = writeln!(c, "add rule inet {t} {name} jump {target}");
        }
    }
    let (fw, pre, post) = (&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain);
    let lans = dev_set(&s.lan_devs);
    let have_lan = s.lan_devs.iter().any(|d| dev_ok(d));
    if let Some(w) = s.wan_dev.as_deref().filter(|w| dev_ok(w)) {
        let fwd_match = format!("ct status dnat ip daddr . meta l4proto . th dport @{FWD}");
        let _ = writeln!(
            c,
            "add rule inet {t} {pre} iifname \"{w}\" meta l4proto {{ tcp, udp }} dnat ip to ip saddr . meta l4proto . th dport map @{DNAT_RH}"
        );
        let _ = writeln!(
            c,
            "add rule inet {t} {pre} iifname \"{w}\" meta nfproto ipv4 meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @{DNAT} comment \"{MARKER}\""
        );
        if s.log_connections {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" ct state new {fwd_match} log prefix \"rupnpd conn: \" level info"
            );
        }
        if s.log_packets {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" {fwd_match} limit rate 20/second burst 50 packets log prefix \"rupnpd pkt: \" level info"
            );
        }
        let _ = writeln!(
            c,
            "add rule inet {t} {fw} iifname \"{w}\" {fwd_match} accept"
        );
        // IPv6 pinholes: no translation, one lookup per wildcard shape.
        for (set, key) in [
            (PIN6, "ip6 daddr . meta l4proto . th dport"),
            (PIN6_H, "ip6 saddr . ip6 daddr . meta l4proto . th dport"),
            (PIN6_P, "th sport . ip6 daddr . meta l4proto . th dport"),
            (
                PIN6_HP,
                "ip6 saddr . th sport . ip6 daddr . meta l4proto . th dport",
            ),
        ] {
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname \"{w}\" meta nfproto ipv6 {key} @{set} accept"
            );
        }
        if s.hairpin && have_lan {
            let _ = writeln!(
                c,
                "add rule inet {t} {pre} iifname {lans} ip daddr @{EXTADDR} meta l4proto {{ tcp, udp }} dnat ip to meta l4proto . th dport map @{DNAT}"
            );
            let _ = writeln!(
                c,
                "add rule inet {t} {fw} iifname {lans} {fwd_match} accept"
            );
            let _ = writeln!(
                c,
                "add rule inet {t} {post} iifname {lans} oifname {lans} {fwd_match} masquerade"
            );
        }
        let _ = writeln!(
            c,
            "add rule inet {t} {post} oifname \"{w}\" meta l4proto {{ tcp, udp }} snat ip to ip saddr . meta l4proto . th sport . ip daddr . th dport map @{SNAT}"
        );
    }
    let _ = writeln!(c, "flush set inet {t} {EXTADDR}");
    if let Some(a) = s.ext_addr {
        let _ = writeln!(c, "add element inet {t} {EXTADDR} {{ {a} }}");
    }
    let _ = writeln!(c, "add element inet {t} {ALIVE} {{ 1 }}");
    c
}

/// A forward-set key: internal address, protocol, internal port.
type FwdKey = (Ipv4Addr, Proto, u16);
/// The mappings referencing one forward element, with their lease ends.
type FwdRefs = Vec<(Key, Option<Millis>)>;

fn fwd_key(m: &Mapping) -> FwdKey {
    (m.iaddr, m.key.proto, m.iport)
}

fn timeout(expires: Option<Millis>, now: Millis) -> String {
    match expires {
        None => String::new(),
        // Whole seconds, rounded up: nft refuses large millisecond counts.
        Some(e) => format!(
            " timeout {}s",
            (e.saturating_sub(now).max(1000) + GRACE_MS).div_ceil(1000)
        ),
    }
}

/// `(map name, key text, value text)` of a mapping's DNAT element.
fn dnat_elem(m: &Mapping) -> (&'static str, String, String) {
    let value = format!("{} . {}", m.iaddr, m.iport);
    let p = m.key.proto.as_lower();
    match m.remote {
        Some(r) => (
            DNAT_RH,
            format!("{}/{} . {p} . {}", r.addr, r.prefix.min(32), m.key.eport),
            value,
        ),
        None => (DNAT, format!("{p} . {}", m.key.eport), value),
    }
}

/// The SNAT element of a PCP PEER mapping, if it is one.
fn snat_elem(m: &Mapping, ext: Option<Ipv4Addr>) -> Option<(String, String)> {
    let (pport, peer, ext) = (m.peer_port?, m.remote?, ext?);
    Some((
        format!(
            "{} . {} . {} . {} . {pport}",
            m.iaddr,
            m.key.proto.as_lower(),
            m.iport,
            peer.addr
        ),
        format!("{ext} . {}", m.key.eport),
    ))
}

/// `(set, key text)` of a pinhole's element.
fn pin_elem(p: &Pinhole) -> (&'static str, String) {
    let proto = match p.proto {
        6 => "tcp".to_string(),
        17 => "udp".to_string(),
        136 => "udplite".to_string(),
        n => n.to_string(),
    };
    let tail = format!("{} . {proto} . {}", p.iaddr, p.iport);
    match (p.remote, p.rport) {
        (None, 0) => (PIN6, tail),
        (Some(r), 0) => (PIN6_H, format!("{r} . {tail}")),
        (None, rp) => (PIN6_P, format!("{rp} . {tail}")),
        (Some(r), rp) => (PIN6_HP, format!("{r} . {rp} . {tail}")),
    }
}

fn fwd_text(k: &FwdKey) -> String {
    format!("{} . {} . {}", k.0, k.1.as_lower(), k.2)
}

/// The forward element an endpoint needs: present while any mapping
/// points at it, living as long as the longest of them (None inside
/// `Some` = permanent).
fn fwd_state(refs: &[(Key, Option<Millis>)]) -> Option<Option<Millis>> {
    if refs.is_empty() {
        return None;
    }
    if refs.iter().any(|(_, e)| e.is_none()) {
        return Some(None);
    }
    Some(refs.iter().filter_map(|(_, e)| *e).max())
}

/// Deleting an element that may already be gone (the kernel expired it,
/// or a reload flushed it) would fail the whole transaction. Adding it
/// first makes the delete succeed either way.
fn delete_idempotent(c: &mut String, t: &str, set: &str, key: &str, value: Option<&str>) {
    match value {
        Some(v) => {
            let _ = writeln!(c, "add element inet {t} {set} {{ {key} : {v} }}");
        }
        None => {
            let _ = writeln!(c, "add element inet {t} {set} {{ {key} }}");
        }
    }
    let _ = writeln!(c, "delete element inet {t} {set} {{ {key} }}");
}

/// libnftables, loaded with dlopen so the daemon still runs (through the
/// `nft` binary) where only nftables' command-line package is installed.
struct LibNft {
    ctx: *mut c_void,
    run: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
    output: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    error: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    free: unsafe extern "C" fn(*mut c_void),
}

impl LibNft {
    fn open() -> Option<LibNft> {
        // SAFETY: dlopen/dlsym with NUL-terminated names; every symbol is
        // checked for NULL and cast to the signature libnftables.h gives.
        unsafe {
            let mut handle = std::ptr::null_mut();
            for name in [c"libnftables.so.1", c"libnftables.so"] {
                handle = libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
                if !handle.is_null() {
                    break;
                }
            }
            if handle.is_null() {
                return None;
            }
            let sym = |n: &CStr| {
                let p = libc::dlsym(handle, n.as_ptr());
                (!p.is_null()).then_some(p)
            };
            let new = sym(c"nft_ctx_new")?;
            let buffer_output = sym(c"nft_ctx_buffer_output")?;
            let buffer_error = sym(c"nft_ctx_buffer_error")?;
            let run = sym(c"nft_run_cmd_from_buffer")?;
            let output = sym(c"nft_ctx_get_output_buffer")?;
            let error = sym(c"nft_ctx_get_error_buffer")?;
            let free = sym(c"nft_ctx_free")?;
            type New = unsafe extern "C" fn(u32) -> *mut c_void;
            type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
            let new = std::mem::transmute::<*mut c_void, New>(new);
            let buffer_output = std::mem::transmute::<*mut c_void, Buffer>(buffer_output);
            let buffer_error = std::mem::transmute::<*mut c_void, Buffer>(buffer_error);
            let ctx = new(0);
            if ctx.is_null() {
                return None;
            }
            buffer_output(ctx);
            buffer_error(ctx);
            type Run = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
            type Text = unsafe extern "C" fn(*mut c_void) -> *const c_char;
            type Free = unsafe extern "C" fn(*mut c_void);
            Some(LibNft {
                ctx,
                run: std::mem::transmute::<*mut c_void, Run>(run),
                output: std::mem::transmute::<*mut c_void, Text>(output),
                error: std::mem::transmute::<*mut c_void, Text>(error),
                free: std::mem::transmute::<*mut c_void, Free>(free),
            })
        }
    }

    fn run(&mut self, cmds: &str) -> Result<String, String> {
        let c = CString::new(cmds).map_err(|_| "command contains a NUL byte".to_string())?;
        // SAFETY: ctx is valid until Drop; the buffers returned by
        // libnftables stay valid until the next call on this context.
        unsafe {
            let rc = (self.run)(self.ctx, c.as_ptr());
            let out = text((self.output)(self.ctx));
            let err = text((self.error)(self.ctx));
            if rc == 0 { Ok(out) } else { Err(err) }
        }
    }
}

fn text(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: libnftables returns NUL-terminated buffers.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

impl Drop for LibNft {
    fn drop(&mut self) {
        // SAFETY: ctx came from nft_ctx_new and is freed once.
        unsafe { (self.free)(self.ctx) }
    }
}

enum Runner {
    Lib(LibNft),
    Cmd,
}

impl Runner {
    fn run(&mut self, cmds: &str) -> Result<String, String> {
        match self {
            Runner::Lib(l) => l.run(cmds),
            Runner::Cmd => {
                let mut child = Command::new("nft")
                    .args(["-f", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot run nft: {e}"))?;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin
                        .write_all(cmds.as_bytes())
                        .map_err(|e| format!("writing to nft: {e}"))?;
                }
                let out = child
                    .wait_with_output()
                    .map_err(|e| format!("waiting for nft: {e}"))?;
                if out.status.success() {
                    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            }
        }
    }
}

/// The first line of an nft error, for logs and SOAP failures.
fn first_line(e: &str) -> String {
    e.lines().next().unwrap_or("nft failed").trim().to_string()
}

/// The nftables backend.
pub struct Nft {
    runner: Runner,
    names: NftNames,
    setup: Setup,
    /// No fw4 chains in the table: we add hooked base chains ourselves.
    own_base: bool,
    /// The table did not exist before we started.
    created_table: bool,
    /// Mappings referencing each forward element.
    fwd: HashMap<FwdKey, Vec<(Key, Option<Millis>)>>,
}

impl Nft {
    /// Connects to nftables and decides whether fw4 provides the hooks.
    pub fn open(names: NftNames, setup: Setup) -> Result<Nft, String> {
        for id in [
            &names.table,
            &names.forward_chain,
            &names.prerouting_chain,
            &names.postrouting_chain,
        ] {
            if !ident_ok(id) {
                return Err(format!("invalid nftables name \"{}\"", id.escape_debug()));
            }
        }
        let runner = match LibNft::open() {
            Some(l) => Runner::Lib(l),
            None => {
                log::warn!("libnftables not found; falling back to the nft command");
                Runner::Cmd
            }
        };
        let mut nft = Nft {
            runner,
            names,
            setup,
            own_base: false,
            created_table: false,
            fwd: HashMap::new(),
        };
        let t = nft.names.table.clone();
        nft.created_table = nft.runner.run(&format!("list table inet {t}")).is_err();
        // fw4 (or a fw4-shaped ruleset) has a hooked `forward` chain that
        // jumps to ours; without it we hook in ourselves.
        let fw4 = !nft.created_table
            && nft
                .runner
                .run(&format!("list chain inet {t} forward"))
                .is_ok();
        nft.own_base = !fw4;
        Ok(nft)
    }

    /// True when libnftables is in use (no process per change).
    pub fn in_process(&self) -> bool {
        matches!(self.runner, Runner::Lib(_))
    }

    pub fn owns_hooks(&self) -> bool {
        self.own_base
    }

    fn run(&mut self, cmds: &str) -> Result<String, String> {
        self.runner.run(cmds).map_err(|e| first_line(&e))
    }

    /// Builds (or rebuilds after a reload) the structure and rules and
    /// installs exactly `all`, in one transaction.
    pub fn restore(
        &mut self,
        all: &[&Mapping],
        pins: &[&Pinhole],
        now: Millis,
    ) -> Result<(), String> {
        let mut c = structure(&self.names, &self.setup, self.own_base);
        self.fill(&mut c, all, pins, now);
        self.run(&c)?;
        self.rebuild_refs(all);
        Ok(())
    }

    /// Changes what the rules depend on (WAN device or address, LAN
    /// devices, toggles) and reinstalls everything.
    pub fn set_setup(
        &mut self,
        setup: Setup,
        all: &[&Mapping],
        pins: &[&Pinhole],
        now: Millis,
    ) -> Result<(), String> {
        self.setup = setup;
        self.restore(all, pins, now)
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Whether our structure is still in place (the canary element is
    /// gone after fw4 flushed the table).
    pub fn intact(&mut self) -> bool {
        let n = &self.names;
        let t = &n.table;
        let cmd = format!(
            "list chain inet {t} {}\nget element inet {t} {ALIVE} {{ 1 }}",
            n.prerouting_chain
        );
        let wants_rules = self.setup.wan_dev.is_some();
        match self.runner.run(&cmd) {
            Ok(out) => !wants_rules || out.contains(&format!("comment \"{MARKER}\"")),
            Err(_) => false,
        }
    }

    /// Removes everything we installed (clean stop).
    pub fn teardown(&mut self) {
        let t = self.names.table.clone();
        let n = self.names.clone();
        let mut c = String::new();
        for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
            let _ = writeln!(c, "flush chain inet {t} {chain}");
        }
        for (kind, name, _) in DECLARATIONS {
            let _ = writeln!(c, "flush {kind} inet {t} {name}");
        }
        if self.own_base {
            for chain in [BASE_FORWARD, BASE_DSTNAT, BASE_SRCNAT] {
                let _ = writeln!(c, "delete chain inet {t} {chain}");
            }
        }
        if let Err(e) = self.run(&c) {
            log::warn!("removing our nftables rules: {e}");
        }
        if self.own_base {
            // Delete the declarations too; the table goes if nothing else is in it.
            let mut d = String::new();
            for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
                let _ = writeln!(d, "delete chain inet {t} {chain}");
            }
            for (kind, name, _) in DECLARATIONS {
                let _ = writeln!(d, "delete {kind} inet {t} {name}");
            }
            let _ = self.run(&d);
            if let Ok(list) = self.runner.run(&format!("list table inet {t}")) {
                let empty = !list.lines().any(|l| {
                    let l = l.trim_start();
                    l.starts_with("chain ")
                        || l.starts_with("set ")
                        || l.starts_with("map ")
                        || l.starts_with("flowtable ")
                });
                if empty {
                    let _ = self.run(&format!("delete table inet {t}"));
                }
            }
        }
        self.fwd.clear();
    }

    fn rebuild_refs(&mut self, all: &[&Mapping]) {
        self.fwd.clear();
        for m in all {
            self.fwd
                .entry(fwd_key(m))
                .or_default()
                .push((m.key, m.expires));
        }
    }

    /// Flushes the element containers and adds every mapping, batched in
    /// one `add element` per container.
    fn fill(&self, c: &mut String, all: &[&Mapping], pins: &[&Pinhole], now: Millis) {
        let t = &self.names.table;
        for (kind, name, _) in DECLARATIONS
            .iter()
            .filter(|(_, n, _)| ![EXTADDR, ALIVE].contains(n))
        {
            let _ = writeln!(c, "flush {kind} inet {t} {name}");
        }
        let mut by_set: HashMap<&str, Vec<String>> = HashMap::new();
        for p in pins {
            let (set, k) = pin_elem(p);
            by_set
                .entry(set)
                .or_default()
                .push(format!("{k}{}", timeout(Some(p.expires), now)));
        }
        for (set, elems) in by_set {
            for chunk in elems.chunks(512) {
                let _ = writeln!(c, "add element inet {t} {set} {{ {} }}", chunk.join(", "));
            }
        }
        let mut dnat = Vec::new();
        let mut dnat_rh = Vec::new();
        let mut snat = Vec::new();
        let mut fwd: HashMap<FwdKey, Vec<(Key, Option<Millis>)>> = HashMap::new();
        for m in all {
            let (set, k, v) = dnat_elem(m);
            let e = format!("{k}{} : {v}", timeout(m.expires, now));
            if set == DNAT {
                dnat.push(e)
            } else {
                dnat_rh.push(e)
            }
            if let Some((k, v)) = snat_elem(m, self.setup.ext_addr) {
                snat.push(format!("{k}{} : {v}", timeout(m.expires, now)));
            }
            fwd.entry(fwd_key(m)).or_default().push((m.key, m.expires));
        }
        let fwd: Vec<String> = fwd
            .iter()
            .filter_map(|(k, refs)| {
                fwd_state(refs).map(|exp| format!("{}{}", fwd_text(k), timeout(exp, now)))
            })
            .collect();
        for (set, elems) in [(DNAT, dnat), (DNAT_RH, dnat_rh), (SNAT, snat), (FWD, fwd)] {
            // Chunks keep each command line of reasonable size.
            for chunk in elems.chunks(512) {
                let _ = writeln!(c, "add element inet {t} {set} {{ {} }}", chunk.join(", "));
            }
        }
    }

    /// Reads one element's counters (to carry them over a renewal).
    fn element_counters(&mut self, set: &str, key: &str) -> Option<Counters> {
        let t = &self.names.table;
        let out = self
            .runner
            .run(&format!("get element inet {t} {set} {{ {key} }}"))
            .ok()?;
        parse_elements(&out).into_iter().next().map(|(_, c)| c)
    }
}

impl Firewall for Nft {
    fn apply(&mut self, changes: &[Change], pins: &[PinChange], now: Millis) -> Result<(), String> {
        let t = self.names.table.clone();
        let ext = self.setup.ext_addr;
        let mut c = String::with_capacity(256 * changes.len());
        for ch in pins {
            if let Some(o) = &ch.old {
                let (set, k) = pin_elem(o);
                delete_idempotent(&mut c, &t, set, &k, None);
            }
            if let Some(n) = &ch.new {
                let (set, k) = pin_elem(n);
                let _ = writeln!(
                    c,
                    "add element inet {t} {set} {{ {k}{} }}",
                    timeout(Some(n.expires), now)
                );
            }
        }
        // Forward references change on a scratch copy, kept only if the
        // transaction succeeds.
        let mut touched: HashMap<FwdKey, (Option<Option<Millis>>, FwdRefs)> = HashMap::new();
        for ch in changes {
            for m in ch.old.iter().chain(ch.new.iter()) {
                let fk = fwd_key(m);
                touched.entry(fk).or_insert_with(|| {
                    let refs = self.fwd.get(&fk).cloned().unwrap_or_default();
                    (fwd_state(&refs), refs)
                });
            }
            if let Some(o) = &ch.old {
                if let Some((_, refs)) = touched.get_mut(&fwd_key(o)) {
                    refs.retain(|(k, _)| *k != o.key);
                }
            }
            if let Some(n) = &ch.new {
                if let Some((_, refs)) = touched.get_mut(&fwd_key(n)) {
                    refs.push((n.key, n.expires));
                }
            }
            let old = ch.old.as_ref().map(dnat_elem);
            let new = ch.new.as_ref().map(dnat_elem);
            match (&old, &new) {
                (Some(o), Some(n)) if o == n => {
                    // A renewal: replace the element, keeping its counters.
                    let (set, k, v) = n;
                    let counters = self.element_counters(set, k).unwrap_or_default();
                    let exp = ch.new.as_ref().and_then(|m| m.expires);
                    delete_idempotent(&mut c, &t, set, k, Some(v));
                    let _ = writeln!(
                        c,
                        "add element inet {t} {set} {{ {k} counter packets {} bytes {}{} : {v} }}",
                        counters.packets,
                        counters.bytes,
                        timeout(exp, now)
                    );
                }
                _ => {
                    if let Some((set, k, v)) = &old {
                        delete_idempotent(&mut c, &t, set, k, Some(v));
                    }
                    if let (Some((set, k, v)), Some(m)) = (&new, &ch.new) {
                        let _ = writeln!(
                            c,
                            "add element inet {t} {set} {{ {k}{} : {v} }}",
                            timeout(m.expires, now)
                        );
                    }
                }
            }
            if let Some((k, v)) = ch.old.as_ref().and_then(|m| snat_elem(m, ext)) {
                delete_idempotent(&mut c, &t, SNAT, &k, Some(&v));
            }
            if let Some(m) = &ch.new {
                if let Some((k, v)) = snat_elem(m, ext) {
                    let _ = writeln!(
                        c,
                        "add element inet {t} {SNAT} {{ {k}{} : {v} }}",
                        timeout(m.expires, now)
                    );
                }
            }
        }
        for (fk, (before, refs)) in &touched {
            let after = fwd_state(refs);
            if *before == after {
                continue;
            }
            let k = fwd_text(fk);
            if before.is_some() {
                delete_idempotent(&mut c, &t, FWD, &k, None);
            }
            if let Some(exp) = after {
                let _ = writeln!(
                    c,
                    "add element inet {t} {FWD} {{ {k}{} }}",
                    timeout(exp, now)
                );
            }
        }
        if c.is_empty() {
            return Ok(());
        }
        self.run(&c)?;
        for (fk, (_, refs)) in touched {
            if refs.is_empty() {
                self.fwd.remove(&fk);
            } else {
                self.fwd.insert(fk, refs);
            }
        }
        Ok(())
    }

    fn sync(&mut self, all: &[&Mapping], pins: &[&Pinhole], now: Millis) -> Result<(), String> {
        let mut c = String::new();
        self.fill(&mut c, all, pins, now);
        self.run(&c)?;
        self.rebuild_refs(all);
        Ok(())
    }

    fn pinhole_counters(&mut self, p: &Pinhole) -> Option<Counters> {
        let (set, k) = pin_elem(p);
        self.element_counters(set, &k)
    }

    fn counters(&mut self) -> HashMap<Key, Counters> {
        let t = self.names.table.clone();
        let mut out = HashMap::new();
        for set in [DNAT, DNAT_RH] {
            let Ok(text) = self.runner.run(&format!("list map inet {t} {set}")) else {
                continue;
            };
            for (key, c) in parse_elements(&text) {
                // key: "tcp . 18080" or "1.2.3.4 . tcp . 18080"
                let parts: Vec<&str> = key.split(" . ").collect();
                let n = parts.len();
                if n < 2 {
                    continue;
                }
                let proto = match parts[n - 2] {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => continue,
                };
                if let Ok(port) = parts[n - 1].parse::<u16>() {
                    out.insert(Key::new(proto, port), c);
                }
            }
        }
        out
    }
}

impl Nft {
    /// Reads the counters of every pinhole element (for `list`), keyed by
    /// the pinhole's set and element text.
    pub fn pinhole_counter_map(&mut self) -> HashMap<String, Counters> {
        let t = self.names.table.clone();
        let mut out = HashMap::new();
        for set in [PIN6, PIN6_H, PIN6_P, PIN6_HP] {
            if let Ok(text) = self.runner.run(&format!("list set inet {t} {set}")) {
                for (k, c) in parse_elements(&text) {
                    out.insert(format!("{set} {k}"), c);
                }
            }
        }
        out
    }

    /// The key [`Nft::pinhole_counter_map`] uses for a pinhole.
    pub fn pinhole_key(p: &Pinhole) -> String {
        let (set, k) = pin_elem(p);
        format!("{set} {k}")
    }
}

/// Parses the elements of `nft list map|set` or `get element` output into
/// (key text, counters). Elements look like
/// `tcp . 18080 counter packets 3 bytes 180 timeout 1h expires 59m : 192.168.1.2 . 8080`.
pub fn parse_elements(text: &str) -> Vec<(String, Counters)> {
    let Some(start) = text.find("elements = {") else {
        return Vec::new();
    };
    let body = &text[start + "elements = {".len()..];
    let body = body.split('}').next().unwrap_or("");
    let mut out = Vec::new();
    for elem in body.split(',') {
        // " : " separates a map element's value (IPv6 keys contain ':').
        let elem = elem.split(" : ").next().unwrap_or("").trim();
        let words: Vec<&str> = elem.split_whitespace().collect();
        let cut = words
            .iter()
            .position(|w| matches!(*w, "counter" | "timeout" | "expires" | "comment"))
            .unwrap_or(words.len());
        let key = words[..cut].join(" ");
        let mut c = Counters::default();
        for pair in words.windows(2) {
            match pair[0] {
                "packets" => c.packets = pair[1].parse().unwrap_or(0),
                "bytes" => c.bytes = pair[1].parse().unwrap_or(0),
                _ => {}
            }
        }
        if !key.is_empty() {
            out.push((key, c));
        }
    }
    out
}

/// Watches nf_tables netlink notifications for transactions committed by
/// other processes (fw4 reload, `nft -f`), so the daemon can check that
/// its structure survived.
pub struct Monitor {
    fd: AsyncFd<OwnedFd>,
    pid: u32,
}

/// NFNLGRP_NFTABLES (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_PROC_PID: u16 = 2;

impl Monitor {
    pub fn new() -> io::Result<Monitor> {
        // SAFETY: plain socket/bind; the fd is owned immediately.
        let fd = unsafe {
            let raw = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_NETFILTER,
            );
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            OwnedFd::from_raw_fd(raw)
        };
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = 1 << (NFNLGRP_NFTABLES - 1);
        // SAFETY: `sa` is a valid sockaddr_nl.
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
        Ok(Monitor {
            // SAFETY: the OwnedFd is moved in and stays open, unchanged,
            // until the AsyncFd is dropped.
            fd: unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?,
            pid: std::process::id(),
        })
    }

    /// Waits until some other process commits an nftables transaction.
    pub async fn foreign_commit(&self) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let mut guard = self.fd.readable().await?;
            let mut foreign = false;
            for _ in 0..256 {
                // SAFETY: receiving into a buffer of the given length.
                let n = unsafe {
                    libc::recv(
                        self.fd.get_ref().as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() == io::ErrorKind::WouldBlock {
                        guard.clear_ready();
                        break;
                    }
                    if e.raw_os_error() == Some(libc::ENOBUFS) {
                        // Lost notifications: assume the worst.
                        foreign = true;
                        continue;
                    }
                    return Err(e);
                }
                let n = n as usize;
                if newgen_pids(&buf[..n.min(buf.len())])
                    .iter()
                    .any(|p| *p != self.pid)
                {
                    foreign = true;
                }
            }
            if foreign {
                return Ok(());
            }
        }
    }
}

/// The committing PIDs of the NEWGEN messages in one netlink datagram (0
/// when a message carries none). Bounded by the datagram: every length is
/// checked before use.
pub fn newgen_pids(mut d: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    while d.len() >= 16 {
        let len = u32::from_ne_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let ty = u16::from_ne_bytes([d[4], d[5]]);
        if len < 16 || len > d.len() {
            break;
        }
        if ty == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN {
            // nlmsghdr (16) + nfgenmsg (4), then attributes.
            let mut a = d.get(20..len).unwrap_or(&[]);
            let mut pid = 0;
            while a.len() >= 4 {
                let alen = u16::from_ne_bytes([a[0], a[1]]) as usize;
                let aty = u16::from_ne_bytes([a[2], a[3]]) & 0x3fff;
                if alen < 4 || alen > a.len() {
                    break;
                }
                if aty == NFTA_GEN_PROC_PID && alen >= 8 {
                    pid = u32::from_be_bytes([a[4], a[5], a[6], a[7]]);
                }
                let step = (alen + 3) & !3;
                a = a.get(step..).unwrap_or(&[]);
            }
            out.push(pid);
        }
        let step = (len + 3) & !3;
        d = d.get(step..).unwrap_or(&[]);
    }
    out
}

/// Whether two setups need the rules rebuilt.
pub fn rules_differ(a: &Setup, b: &Setup) -> bool {
    a != b
}

/// Devices in a set, deduplicated, for logs.
pub fn describe(s: &Setup) -> String {
    let lans: HashSet<&String> = s.lan_devs.iter().collect();
    format!(
        "wan={} lan={:?} ext={}",
        s.wan_dev.as_deref().unwrap_or("-"),
        lans,
        s.ext_addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::table::{Origin, RemoteFilter};

    fn m(eport: u16, iport: u16, d: u8, expires: Option<Millis>) -> Mapping {
        Mapping {
            key: Key::new(Proto::Tcp, eport),
            iaddr: Ipv4Addr::new(192, 168, 77, d),
            iport,
            remote: None,
            desc: String::new(),
            origin: Origin::UpnpV2,
            client: Ipv4Addr::new(192, 168, 77, d),
            expires,
            nonce: None,
            peer_port: None,
        }
    }

    #[test]
    fn element_texts() {
        let a = m(18080, 8080, 2, Some(3_600_000));
        assert_eq!(
            dnat_elem(&a),
            (
                DNAT,
                "tcp . 18080".to_string(),
                "192.168.77.2 . 8080".to_string()
            )
        );
        let mut r = a.clone();
        r.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        assert_eq!(dnat_elem(&r).1, "192.0.3.2/32 . tcp . 18080");
        assert_eq!(timeout(Some(3_600_000), 0), " timeout 3610s");
        assert_eq!(timeout(None, 0), "");
        assert_eq!(timeout(Some(10), 5000), " timeout 11s");
        assert_eq!(timeout(Some(1500), 0), " timeout 12s");
        let mut p = a.clone();
        p.peer_port = Some(5000);
        p.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        assert_eq!(
            snat_elem(&p, Some(Ipv4Addr::new(192, 0, 3, 1))),
            Some((
                "192.168.77.2 . tcp . 8080 . 192.0.3.2 . 5000".to_string(),
                "192.0.3.1 . 18080".to_string()
            ))
        );
    }

    #[test]
    fn forward_refcounts() {
        let k1 = Key::new(Proto::Tcp, 1);
        let k2 = Key::new(Proto::Tcp, 2);
        assert_eq!(fwd_state(&[]), None);
        assert_eq!(fwd_state(&[(k1, Some(5)), (k2, Some(9))]), Some(Some(9)));
        assert_eq!(fwd_state(&[(k1, Some(5)), (k2, None)]), Some(None));
    }

    #[test]
    fn structure_text() {
        let s = Setup {
            wan_dev: Some("r-wan".into()),
            lan_devs: vec!["r-lan".into(), "bad\"dev".into()],
            ext_addr: Some(Ipv4Addr::new(192, 0, 3, 1)),
            hairpin: true,
            log_packets: true,
            log_connections: false,
        };
        let text = structure(&NftNames::default(), &s, false);
        assert!(text.contains("add rule inet fw4 upnp_prerouting iifname \"r-wan\" meta nfproto ipv4 meta l4proto { tcp, udp } dnat ip to meta l4proto . th dport map @upnp_dnat comment \"rupnpd\"\n"));
        assert!(text.contains("iifname { \"r-lan\" } ip daddr @upnp_extaddr"));
        assert!(!text.contains("bad"));
        assert!(text.contains("log prefix \"rupnpd pkt: \""));
        assert!(!text.contains("rupnpd conn"));
        assert!(!text.contains(BASE_FORWARD));
        assert!(text.contains("add element inet fw4 upnp_extaddr { 192.0.3.1 }"));
        let own = structure(&NftNames::default(), &s, true);
        assert!(own.contains("add chain inet fw4 rupnpd_forward { type filter hook forward priority filter; policy accept; }"));
    }

    #[test]
    fn element_listing() {
        let text = "table inet fw4 {\n\tmap upnp_dnat {\n\t\ttype inet_proto . inet_service : ipv4_addr . inet_service\n\t\tflags timeout\n\t\tcounter\n\t\telements = { tcp . 18080 counter packets 3 bytes 180 timeout 1h expires 59m59s908ms : 192.168.77.2 . 8080,\n\t\t\t     udp . 19000 counter packets 0 bytes 0 : 192.168.77.2 . 9000 }\n\t}\n}\n";
        let e = parse_elements(text);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "tcp . 18080");
        assert_eq!(
            e[0].1,
            Counters {
                packets: 3,
                bytes: 180
            }
        );
        assert_eq!(e[1].0, "udp . 19000");
        assert!(parse_elements("table inet fw4 {}").is_empty());
        let six = "elements = { fd77::2 . tcp . 8080 counter packets 4 bytes 300 timeout 1h expires 59m }";
        assert_eq!(
            parse_elements(six),
            vec![(
                "fd77::2 . tcp . 8080".to_string(),
                Counters {
                    packets: 4,
                    bytes: 300
                }
            )]
        );
    }

    #[test]
    fn netlink_newgen() {
        // nlmsghdr(len 32, type 0x0a0f) + nfgenmsg + attr PROC_PID=1234 + attr GEN_ID
        let mut d = Vec::new();
        d.extend_from_slice(&32u32.to_ne_bytes());
        d.extend_from_slice(&0x0a0fu16.to_ne_bytes());
        d.extend_from_slice(&[0; 10]);
        d.extend_from_slice(&[0; 4]);
        d.extend_from_slice(&8u16.to_ne_bytes());
        d.extend_from_slice(&2u16.to_ne_bytes());
        d.extend_from_slice(&1234u32.to_be_bytes());
        d.extend_from_slice(&4u16.to_ne_bytes());
        d.extend_from_slice(&1u16.to_ne_bytes());
        assert_eq!(newgen_pids(&d), vec![1234]);
        // truncated and garbage input never panics
        for cut in 0..d.len() {
            let _ = newgen_pids(&d[..cut]);
        }
        assert!(newgen_pids(&[0xff; 40]).is_empty());
    }

    /// The daemon's declarations and the fw4 include file must agree:
    /// re-declaring a map differently fails fw4's whole ruleset load.
    #[test]
    fn declarations_match_the_fw4_include() {
        let include =
            include_str!("../../openwrt-pkg/rupnpd/files/nftables.d/table-post/20-rupnpd.nft");
        let norm = |s: &str| {
            s.replace([';', '\n', '\t'], " ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let text = norm(
            &include
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n"),
        );
        for (kind, name, decl) in DECLARATIONS {
            let want = norm(&format!("{kind} {name} {{ {decl} }}"));
            assert!(text.contains(&want), "include lacks: {want}\n in: {text}");
        }
        for chain in ["upnp_forward", "upnp_prerouting", "upnp_postrouting"] {
            assert!(text.contains(&format!("chain {chain} {{}}")), "{chain}");
        }
    }

    #[test]
    fn identifiers() {
        assert!(ident_ok("fw4") && ident_ok("upnp_forward"));
        assert!(!ident_ok("") && !ident_ok("a b") && !ident_ok("x;y") && !ident_ok("1abc"));
        assert!(dev_ok("pppoe-wan") && !dev_ok("a\"b") && !dev_ok("waytoolongdevicename"));
    }
}
