//! The nftables firewall backend: every mapping becomes elements of named
//! maps and sets inside fw4's `table inet fw4` (or an equivalent table the
//! daemon creates where fw4 is absent).
//!
//! Owns: the ruleset structure, the elements each mapping and pinhole
//! becomes, the transaction per loop turn, restoring after a firewall
//! reload, and the netlink watch that notices such a reload. Elements
//! (the per-mapping hot path) go straight to the kernel through
//! [`super::nfnl`], one netlink round trip per transaction. The structure
//! (tables, chains, set declarations, rules) is nft text, rare (start,
//! firewall reload, WAN/LAN change), applied through libnftables loaded
//! for that one transaction and unloaded after, or through the `nft`
//! binary when the library is missing.
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
use std::process::{Command, Stdio};

use crate::config::NftNames;
use crate::core::firewall::{Counters, Firewall};
use crate::core::pinhole::{PinChange, Pinhole};
use crate::core::table::{Change, Key, Mapping, Millis};
use crate::proto::Proto;
use crate::sys::netif::McastSocket;
use crate::sys::nfnl::{self, Batch, Data, Elem};

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

/// IANA protocol number, as `inet_proto` holds it.
fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// Longest element lifetime we ask for (leases are far shorter).
const TIMEOUT_MAX_S: u64 = 366 * 24 * 3600;

/// An element's lifetime: the lease left (at least a second) plus the
/// grace period, in whole seconds as `nft list` shows them; None =
/// permanent.
fn timeout_ms(expires: Option<Millis>, now: Millis) -> Option<u64> {
    expires.map(|e| {
        (e.saturating_sub(now).max(1000).saturating_add(GRACE_MS))
            .div_ceil(1000)
            .min(TIMEOUT_MAX_S)
            * 1000
    })
}

/// The first and last address of a remote-host prefix.
fn prefix_range(a: Ipv4Addr, prefix: u8) -> (Ipv4Addr, Ipv4Addr) {
    let p = u32::from(prefix.min(32));
    let mask = u32::MAX.checked_shl(32 - p).unwrap_or(0);
    let lo = u32::from(a) & mask;
    (Ipv4Addr::from(lo), Ipv4Addr::from(lo | !mask))
}

/// A mapping's DNAT element, without lifetime: `proto . eport : iaddr .
/// iport` in upnp_dnat, or with a remote host the range `rhost/prefix .
/// proto . eport` in upnp_dnat_rh.
fn dnat_elem(m: &Mapping) -> (&'static str, Elem) {
    let data = Some(Data::new().ipv4(m.iaddr).service(m.iport));
    let p = proto_number(m.key.proto);
    match m.remote {
        Some(r) => {
            let (lo, hi) = prefix_range(r.addr, r.prefix);
            let key = |a| Data::new().ipv4(a).proto(p).service(m.key.eport);
            (
                DNAT_RH,
                Elem {
                    key: key(lo),
                    key_end: Some(key(hi)),
                    data,
                    ..Elem::default()
                },
            )
        }
        None => (
            DNAT,
            Elem {
                key: Data::new().proto(p).service(m.key.eport),
                data,
                ..Elem::default()
            },
        ),
    }
}

/// The SNAT element of a PCP PEER mapping, if it is one: `iaddr . proto
/// . iport . peer . pport : ext . eport`.
fn snat_elem(m: &Mapping, ext: Option<Ipv4Addr>) -> Option<Elem> {
    let (pport, peer, ext) = (m.peer_port?, m.remote?, ext?);
    Some(Elem {
        key: Data::new()
            .ipv4(m.iaddr)
            .proto(proto_number(m.key.proto))
            .service(m.iport)
            .ipv4(peer.addr)
            .service(pport),
        data: Some(Data::new().ipv4(ext).service(m.key.eport)),
        ..Elem::default()
    })
}

/// A pinhole's element: its set by wildcard shape, keys ending with
/// `iaddr . proto . iport`.
fn pin_elem(p: &Pinhole) -> (&'static str, Elem) {
    let tail = |d: Data| d.ipv6(p.iaddr).proto(p.proto).service(p.iport);
    let (set, key) = match (p.remote, p.rport) {
        (None, 0) => (PIN6, tail(Data::new())),
        (Some(r), 0) => (PIN6_H, tail(Data::new().ipv6(r))),
        (None, rp) => (PIN6_P, tail(Data::new().service(rp))),
        (Some(r), rp) => (PIN6_HP, tail(Data::new().ipv6(r).service(rp))),
    };
    (
        set,
        Elem {
            key,
            ..Elem::default()
        },
    )
}

fn fwd_elem(k: &FwdKey) -> Elem {
    Elem {
        key: Data::new().ipv4(k.0).proto(proto_number(k.1)).service(k.2),
        ..Elem::default()
    }
}

/// The mapping key in a DNAT element's key: protocol and external port
/// are its last two fields.
fn dnat_mapping_key(key: &[u8]) -> Option<Key> {
    let f = key.get(key.len().checked_sub(8)?..)?;
    let proto = match f.first()? {
        6 => Proto::Tcp,
        17 => Proto::Udp,
        _ => return None,
    };
    Some(Key::new(
        proto,
        u16::from_be_bytes([*f.get(4)?, *f.get(5)?]),
    ))
}

/// The key [`Nft::pinhole_counter_map`] files a pinhole element under.
fn pin_map_key(set: &str, key: &[u8]) -> String {
    format!("{set} {}", nfnl::hex(key))
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

/// When an element operation runs inside one transaction. Deleting an
/// element that may already be gone (expired in the kernel, flushed by a
/// reload) would fail the whole transaction, so each delete is preceded
/// by an add of the same element, which makes it succeed either way; all
/// those adds come first, then the deletes, then the real adds, so that
/// operations on one set share messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Ensure,
    Delete,
    Add,
}

type Ops = Vec<(Phase, &'static str, Elem)>;

/// An element as it was installed, for an idempotent delete: same key
/// and data, no lifetime or counter values.
fn as_installed(e: &Elem) -> Elem {
    Elem {
        timeout_ms: None,
        expiration_ms: None,
        counter: None,
        ..*e
    }
}

/// libnftables, loaded with dlopen for one structure transaction and
/// unloaded right after (its libraries and its ruleset cache would
/// otherwise stay resident); the daemon still runs through the `nft`
/// binary where only nftables' command-line package is installed.
struct LibNft {
    handle: *mut c_void,
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
            let syms = (|| {
                Some((
                    sym(c"nft_ctx_new")?,
                    sym(c"nft_ctx_buffer_output")?,
                    sym(c"nft_ctx_buffer_error")?,
                    sym(c"nft_run_cmd_from_buffer")?,
                    sym(c"nft_ctx_get_output_buffer")?,
                    sym(c"nft_ctx_get_error_buffer")?,
                    sym(c"nft_ctx_free")?,
                ))
            })();
            let Some((new, buffer_output, buffer_error, run, output, error, free)) = syms else {
                libc::dlclose(handle);
                return None;
            };
            type New = unsafe extern "C" fn(u32) -> *mut c_void;
            type Buffer = unsafe extern "C" fn(*mut c_void) -> c_int;
            let new = std::mem::transmute::<*mut c_void, New>(new);
            let buffer_output = std::mem::transmute::<*mut c_void, Buffer>(buffer_output);
            let buffer_error = std::mem::transmute::<*mut c_void, Buffer>(buffer_error);
            let ctx = new(0);
            if ctx.is_null() {
                libc::dlclose(handle);
                return None;
            }
            buffer_output(ctx);
            buffer_error(ctx);
            type Run = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
            type Text = unsafe extern "C" fn(*mut c_void) -> *const c_char;
            type Free = unsafe extern "C" fn(*mut c_void);
            Some(LibNft {
                handle,
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
        // SAFETY: ctx came from nft_ctx_new and is freed once; nothing of
        // the library is referenced after dlclose.
        unsafe {
            (self.free)(self.ctx);
            libc::dlclose(self.handle);
        }
        trim_heap();
    }
}

/// Gives freed heap back to the system: glibc keeps it otherwise (after
/// libnftables' cache or a large batch). musl returns it by itself.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How structure transactions (text) reach nftables.
enum Runner {
    /// libnftables, loaded for the transactions of one restore.
    Lib,
    /// The `nft` command.
    Cmd,
}

// SAFETY: a context is used by one thread at a time; it only moves to
// another thread to be freed after its last use (`Nft::release_lib`).
unsafe impl Send for LibNft {}

/// Runs nft text through the `nft` command.
fn nft_command(cmds: &str) -> Result<String, String> {
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

/// The first line of an nft error, for logs and SOAP failures.
fn first_line(e: &str) -> String {
    e.lines().next().unwrap_or("nft failed").trim().to_string()
}

/// The nftables backend.
pub struct Nft {
    runner: Runner,
    /// libnftables while a restore (or teardown) uses it; None otherwise.
    lib: Option<LibNft>,
    /// Element changes and queries.
    sock: nfnl::Socket,
    names: NftNames,
    setup: Setup,
    /// No fw4 chains in the table: we add hooked base chains ourselves.
    own_base: bool,
    /// Mappings referencing each forward element.
    fwd: HashMap<FwdKey, FwdRefs>,
    /// The kernel may hold elements no mapping owns (at start: a previous
    /// instance's; after a failed transaction: unknown), so the next
    /// restore flushes the sets before adding. Otherwise a restore only
    /// adds, which leaves elements that survived a reload untouched.
    flush_next: bool,
    /// Whether adding an existing element renews it in place (Linux ≥
    /// 6.12); None until probed after the first restore.
    in_place: Option<bool>,
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
        let mut sock = nfnl::Socket::open().map_err(|e| format!("nf_tables: {e}"))?;
        // Kept loaded for the first restore, which follows right away.
        let lib = LibNft::open();
        let runner = match lib {
            Some(_) => Runner::Lib,
            None => {
                log::warn!("libnftables not found; falling back to the nft command");
                Runner::Cmd
            }
        };
        let t = &names.table;
        let created_table = !sock.table_exists(t).unwrap_or(false);
        // fw4 (or a fw4-shaped ruleset) has a hooked `forward` chain that
        // jumps to ours; without it we hook in ourselves.
        let fw4 = !created_table && sock.chain_exists(t, "forward").unwrap_or(false);
        Ok(Nft {
            runner,
            lib,
            sock,
            names,
            setup,
            own_base: !fw4,
            fwd: HashMap::new(),
            flush_next: true,
            in_place: None,
        })
    }

    /// True when libnftables is in use for structure transactions (no
    /// process per change); elements always go over netlink.
    pub fn in_process(&self) -> bool {
        matches!(self.runner, Runner::Lib)
    }

    pub fn owns_hooks(&self) -> bool {
        self.own_base
    }

    /// How renewals reach the kernel: in place (Linux ≥ 6.12) or by
    /// delete and add; None until the first restore found out.
    pub fn renews_in_place(&self) -> Option<bool> {
        self.in_place
    }

    /// Forces one renewal path, for tests of the other kernel generation.
    #[doc(hidden)]
    pub fn force_renewals_in_place(&mut self, yes: bool) {
        self.in_place = Some(yes);
    }

    /// Runs structure text; the error is nft's first line.
    fn run(&mut self, cmds: &str) -> Result<String, String> {
        self.run_text(cmds).map_err(|e| first_line(&e))
    }

    fn run_text(&mut self, cmds: &str) -> Result<String, String> {
        match self.runner {
            Runner::Cmd => nft_command(cmds),
            Runner::Lib => {
                let lib = match self.lib.as_mut() {
                    Some(l) => l,
                    None => self
                        .lib
                        .insert(LibNft::open().ok_or("cannot load libnftables")?),
                };
                lib.run(cmds)
            }
        }
    }

    /// Unloads libnftables, off the daemon's thread: closing its socket
    /// waits until the kernel has destroyed what the transaction
    /// replaced (an RCU grace period, ≈ 10 ms), and our own netlink
    /// socket stays open, so nothing else waits for that.
    fn release_lib(&mut self) {
        if let Some(lib) = self.lib.take() {
            let spawned = std::thread::Builder::new()
                .name("nft-unload".into())
                .stack_size(256 * 1024)
                .spawn(move || drop(lib));
            if let Err(e) = spawned {
                log::debug!("unloading libnftables inline: {e}");
            }
        }
    }

    fn restore_inner(
        &mut self,
        all: &[&Mapping],
        pins: &[&Pinhole],
        now: Millis,
    ) -> Result<(), String> {
        let c = structure(&self.names, &self.setup, self.own_base);
        self.run(&c)?;
        if self.in_place.is_none() {
            let yes = self.probe_in_place();
            log::info!(
                "nftables: renewals {}",
                if yes {
                    "update elements in place"
                } else {
                    "replace elements (kernel before 6.12)"
                }
            );
            self.in_place = Some(yes);
        }
        let r = match self.install(all, pins, now, self.flush_next) {
            // An element that differs from ours (changed behind our back)
            // refuses the add: start from empty sets instead.
            Err(e) if !self.flush_next => {
                log::info!("re-adding elements failed ({e}); replacing them all");
                self.install(all, pins, now, true)
            }
            r => r,
        };
        r?;
        self.flush_next = false;
        self.rebuild_refs(all);
        Ok(())
    }

    /// Changes what the rules depend on (WAN device or address, LAN
    /// devices, toggles); the next restore installs the rules anew.
    pub fn set_setup(&mut self, setup: Setup) {
        // SNAT elements carry the external address.
        if setup.ext_addr != self.setup.ext_addr {
            self.flush_next = true;
        }
        self.setup = setup;
    }

    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Whether our structure is still in place: the canary element (gone
    /// when the table was flushed or deleted) and, with a WAN device, our
    /// commented DNAT rule (gone when fw4 reloaded the rules).
    pub fn intact(&mut self) -> bool {
        let t = self.names.table.clone();
        let mut alive = false;
        let found = self.sock.elements(&t, ALIVE, &mut |e| {
            // `inet_service` 1, in network order.
            alive |= e.key.get(..2) == Some(&[0, 1][..]);
        });
        if found.is_err() || !alive {
            return false;
        }
        if self.setup.wan_dev.is_none() {
            return true;
        }
        let mut marked = false;
        let chain = self.names.prerouting_chain.clone();
        let listed = self.sock.rules(&t, &chain, &mut |r| {
            marked |= nfnl::rule_comment(r.userdata) == Some(MARKER.as_bytes());
        });
        listed.is_ok() && marked
    }

    /// Removes everything we installed (clean stop).
    pub fn teardown(&mut self) {
        let t = self.names.table.clone();
        let n = self.names.clone();
        let mut b = Batch::new(&t);
        for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
            b.flush_chain(chain);
        }
        for (_, name, _) in DECLARATIONS {
            b.flush(name);
        }
        if let Err(e) = self.sock.commit(b) {
            log::warn!("removing our nftables rules and elements: {e}");
        }
        if self.own_base {
            // Delete the hooks and declarations too; the table goes if
            // nothing else is in it.
            let mut d = String::new();
            for chain in [BASE_FORWARD, BASE_DSTNAT, BASE_SRCNAT] {
                let _ = writeln!(d, "delete chain inet {t} {chain}");
            }
            for chain in [&n.forward_chain, &n.prerouting_chain, &n.postrouting_chain] {
                let _ = writeln!(d, "delete chain inet {t} {chain}");
            }
            for (kind, name, _) in DECLARATIONS {
                let _ = writeln!(d, "delete {kind} inet {t} {name}");
            }
            if let Err(e) = self.run(&d) {
                log::warn!("removing our nftables chains and sets: {e}");
            }
            if let Ok(list) = self.run_text(&format!("list table inet {t}")) {
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
            self.release_lib();
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

    /// An element with the lifetime of a lease ending at `expires`. Where
    /// the kernel renews in place, the expiry goes along so that adding an
    /// existing element restarts its clock.
    fn timed(&self, e: Elem, expires: Option<Millis>, now: Millis) -> Elem {
        let t = timeout_ms(expires, now);
        Elem {
            timeout_ms: t,
            expiration_ms: t.filter(|_| self.in_place == Some(true)),
            ..e
        }
    }

    /// Adds every element of `all` and `pins` to a batch, set by set so
    /// they share messages, after flushing the sets if `flush`.
    fn fill(&self, b: &mut Batch, all: &[&Mapping], pins: &[&Pinhole], now: Millis, flush: bool) {
        if flush {
            for (_, name, _) in DECLARATIONS
                .iter()
                .filter(|(_, n, _)| ![EXTADDR, ALIVE].contains(n))
            {
                b.flush(name);
            }
        }
        for set in [PIN6, PIN6_H, PIN6_P, PIN6_HP] {
            for p in pins {
                let (s, e) = pin_elem(p);
                if s == set {
                    b.add(s, &self.timed(e, Some(p.expires), now));
                }
            }
        }
        for set in [DNAT, DNAT_RH] {
            for m in all {
                let (s, e) = dnat_elem(m);
                if s == set {
                    b.add(s, &self.timed(e, m.expires, now));
                }
            }
        }
        for m in all {
            if let Some(e) = snat_elem(m, self.setup.ext_addr) {
                b.add(SNAT, &self.timed(e, m.expires, now));
            }
        }
        let mut fwd: HashMap<FwdKey, FwdRefs> = HashMap::new();
        for m in all {
            fwd.entry(fwd_key(m)).or_default().push((m.key, m.expires));
        }
        for (k, refs) in &fwd {
            if let Some(exp) = fwd_state(refs) {
                b.add(FWD, &self.timed(fwd_elem(k), exp, now));
            }
        }
    }

    /// Installs every element in one transaction.
    fn install(
        &mut self,
        all: &[&Mapping],
        pins: &[&Pinhole],
        now: Millis,
        flush: bool,
    ) -> Result<(), String> {
        let mut b = Batch::new(&self.names.table);
        self.fill(&mut b, all, pins, now, flush);
        let large = b.len() > 256 * 1024;
        let r = self.sock.commit(b).map_err(|e| e.to_string());
        if large {
            trim_heap();
        }
        r
    }

    /// Whether the kernel renews an existing element when it is added
    /// again with a new timeout and expiry (Linux ≥ 6.12; older kernels
    /// keep it as it was). Tried on a forward element no mapping can
    /// have (0.0.0.0, protocol 0, port 0), removed again.
    fn probe_in_place(&mut self) -> bool {
        let t = self.names.table.clone();
        let probe = |ms: u64, expiry: bool| Elem {
            key: Data::new().ipv4(Ipv4Addr::UNSPECIFIED).proto(0).service(0),
            timeout_ms: Some(ms),
            expiration_ms: expiry.then_some(ms),
            ..Elem::default()
        };
        let commit = |sock: &mut nfnl::Socket, add: Option<Elem>, del: Option<Elem>| {
            let mut b = Batch::new(&t);
            if let Some(e) = add {
                b.add(FWD, &e);
            }
            if let Some(e) = del {
                b.delete(FWD, &e);
            }
            sock.commit(b)
        };
        let renewed = commit(&mut self.sock, Some(probe(60_000, false)), None).is_ok()
            && commit(&mut self.sock, Some(probe(120_000, true)), None).is_ok()
            && matches!(
                self.sock.element(&t, FWD, &probe(0, false).key, None),
                Ok(Some(f)) if f.timeout_ms == Some(120_000)
            );
        let p = probe(0, false);
        if let Err(e) = commit(&mut self.sock, Some(p), Some(p)) {
            log::debug!("removing the nftables probe element: {e}");
        }
        renewed
    }

    /// Turns element `old` into `new` (either may be absent; both carry
    /// their lifetimes). The same element with a new lifetime is a
    /// renewal: updated in place where the kernel can, else deleted and
    /// added again, with its counters carried over if `counted`.
    fn change(
        &mut self,
        ops: &mut Ops,
        old: Option<(&'static str, Elem)>,
        new: Option<(&'static str, Elem)>,
        counted: bool,
    ) {
        if let (Some((so, o)), Some((sn, n))) = (&old, &new) {
            let same = so == sn && o.key == n.key && o.key_end == n.key_end && o.data == n.data;
            if same {
                if self.in_place == Some(true) && o.timeout_ms.is_some() && n.timeout_ms.is_some() {
                    ops.push((Phase::Add, sn, *n));
                    return;
                }
                let counter = if counted {
                    self.element_counters(sn, o)
                } else {
                    None
                };
                ops.push((Phase::Ensure, so, as_installed(o)));
                ops.push((Phase::Delete, so, *o));
                ops.push((Phase::Add, sn, Elem { counter, ..*n }));
                return;
            }
        }
        if let Some((s, o)) = old {
            ops.push((Phase::Ensure, s, as_installed(&o)));
            ops.push((Phase::Delete, s, o));
        }
        if let Some((s, n)) = new {
            ops.push((Phase::Add, s, n));
        }
    }

    /// Reads one element's counters (to carry them over a renewal).
    fn element_counters(&mut self, set: &str, e: &Elem) -> Option<Counters> {
        let t = &self.names.table;
        match self.sock.element(t, set, &e.key, e.key_end.as_ref()) {
            Ok(found) => found.and_then(|f| f.counter),
            Err(err) => {
                log::debug!("reading counters in {set}: {err}");
                None
            }
        }
    }
}

impl Firewall for Nft {
    fn apply(&mut self, changes: &[Change], pins: &[PinChange], now: Millis) -> Result<(), String> {
        let ext = self.setup.ext_addr;
        let mut ops: Ops = Vec::new();
        for ch in pins {
            let el = |p: &Pinhole| {
                let (s, e) = pin_elem(p);
                (s, self.timed(e, Some(p.expires), now))
            };
            let (old, new) = (ch.old.as_ref().map(el), ch.new.as_ref().map(el));
            self.change(&mut ops, old, new, true);
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
            let dnat = |m: &Mapping| {
                let (s, e) = dnat_elem(m);
                (s, self.timed(e, m.expires, now))
            };
            let (old, new) = (ch.old.as_ref().map(dnat), ch.new.as_ref().map(dnat));
            self.change(&mut ops, old, new, true);
            let snat =
                |m: &Mapping| snat_elem(m, ext).map(|e| (SNAT, self.timed(e, m.expires, now)));
            let (old, new) = (
                ch.old.as_ref().and_then(snat),
                ch.new.as_ref().and_then(snat),
            );
            self.change(&mut ops, old, new, false);
        }
        for (fk, (before, refs)) in &touched {
            let after = fwd_state(refs);
            if *before == after {
                continue;
            }
            let old = before.map(|exp| (FWD, self.timed(fwd_elem(fk), exp, now)));
            let new = after.map(|exp| (FWD, self.timed(fwd_elem(fk), exp, now)));
            self.change(&mut ops, old, new, false);
        }
        if ops.is_empty() {
            return Ok(());
        }
        // Stable: operations on one element keep their order.
        ops.sort_by_key(|(phase, set, _)| (*phase, *set));
        let mut b = Batch::new(&self.names.table);
        for (phase, set, e) in &ops {
            match phase {
                Phase::Ensure | Phase::Add => b.add(set, e),
                Phase::Delete => b.delete(set, e),
            }
        }
        if let Err(e) = self.sock.commit(b) {
            // The kernel kept its old state, which the daemon's table may
            // no longer describe: the repair starts from empty sets.
            self.flush_next = true;
            return Err(e.to_string());
        }
        for (fk, (_, refs)) in touched {
            if refs.is_empty() {
                self.fwd.remove(&fk);
            } else {
                self.fwd.insert(fk, refs);
            }
        }
        Ok(())
    }

    /// Builds (or rebuilds after a reload) the structure and rules, then
    /// installs `all` and `pins`: exactly these after a start or a failed
    /// transaction (the sets are flushed first), otherwise by adding only,
    /// so elements that survived a firewall reload keep their counters.
    fn restore(&mut self, all: &[&Mapping], pins: &[&Pinhole], now: Millis) -> Result<(), String> {
        let r = self.restore_inner(all, pins, now);
        self.release_lib();
        r
    }

    fn pinhole_counters(&mut self, p: &Pinhole) -> Option<Counters> {
        let (set, e) = pin_elem(p);
        self.element_counters(set, &e)
    }

    fn all_pinhole_counters(&mut self, pins: &[&Pinhole]) -> HashMap<u16, Counters> {
        let by_element = self.pinhole_counter_map();
        pins.iter()
            .filter_map(|p| by_element.get(&Nft::pinhole_key(p)).map(|c| (p.id, *c)))
            .collect()
    }

    fn counters(&mut self) -> HashMap<Key, Counters> {
        let t = self.names.table.clone();
        let mut out = HashMap::new();
        for set in [DNAT, DNAT_RH] {
            let r = self.sock.elements(&t, set, &mut |e| {
                if let Some(k) = dnat_mapping_key(e.key) {
                    out.insert(k, e.counter.unwrap_or_default());
                }
            });
            if let Err(e) = r {
                log::debug!("listing {set}: {e}");
            }
        }
        out
    }
}

impl Nft {
    /// Reads the counters of every pinhole element (for `list`), keyed as
    /// [`Nft::pinhole_key`] names them.
    pub fn pinhole_counter_map(&mut self) -> HashMap<String, Counters> {
        let t = self.names.table.clone();
        let mut out = HashMap::new();
        for set in [PIN6, PIN6_H, PIN6_P, PIN6_HP] {
            let r = self.sock.elements(&t, set, &mut |e| {
                out.insert(pin_map_key(set, e.key), e.counter.unwrap_or_default());
            });
            if let Err(e) = r {
                log::debug!("listing {set}: {e}");
            }
        }
        out
    }

    /// The key [`Nft::pinhole_counter_map`] uses for a pinhole: its set
    /// and element key.
    pub fn pinhole_key(p: &Pinhole) -> String {
        let (set, e) = pin_elem(p);
        pin_map_key(set, e.key.as_bytes())
    }
}

/// Watches nf_tables netlink notifications for transactions committed by
/// other processes (fw4 reload, `nft -f`), so the daemon can check that
/// its structure survived.
pub struct Monitor {
    sock: McastSocket,
    pid: u32,
}

/// NFNLGRP_NFTABLES (linux/netfilter/nfnetlink.h).
const NFNLGRP_NFTABLES: u32 = 7;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFT_MSG_NEWGEN: u16 = 15;
const NFTA_GEN_PROC_PID: u16 = 2;

impl Monitor {
    pub fn new() -> io::Result<Monitor> {
        Ok(Monitor {
            sock: McastSocket::open(libc::NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1))?,
            pid: std::process::id(),
        })
    }

    /// Waits until some other process commits an nftables transaction.
    pub async fn foreign_commit(&self) -> io::Result<()> {
        let mut buf = vec![0u8; 65536];
        loop {
            let mut foreign = false;
            self.sock
                .recv_batch(&mut buf, 256, |d| match d {
                    // Lost notifications: assume the worst.
                    None => foreign = true,
                    Some(d) => {
                        if newgen_pids(d).iter().any(|p| *p != self.pid) {
                            foreign = true;
                        }
                    }
                })
                .await?;
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

    fn hex_of(d: &Data) -> String {
        nfnl::hex(d.as_bytes())
    }

    /// Keys and values as `nft --debug=netlink add element` shows them for
    /// the same elements (nft 1.0.6), byte for byte.
    #[test]
    fn element_encodings() {
        let a = m(18080, 8080, 2, Some(3_600_000));
        let (set, e) = dnat_elem(&a);
        assert_eq!(set, DNAT);
        assert_eq!(hex_of(&e.key), "06000000 46a00000");
        assert_eq!(hex_of(&e.data.unwrap()), "c0a84d02 1f900000");
        assert_eq!(e.key_end, None);

        let mut r = a.clone();
        r.key = Key::new(Proto::Udp, 18080);
        r.remote = Some(RemoteFilter {
            addr: Ipv4Addr::new(192, 0, 3, 77),
            prefix: 24,
        });
        let (set, e) = dnat_elem(&r);
        assert_eq!(set, DNAT_RH);
        assert_eq!(hex_of(&e.key), "c0000300 11000000 46a00000");
        assert_eq!(hex_of(&e.key_end.unwrap()), "c00003ff 11000000 46a00000");
        r.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let (_, e) = dnat_elem(&r);
        assert_eq!(e.key, e.key_end.unwrap());

        let mut p = a.clone();
        p.peer_port = Some(5000);
        p.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let e = snat_elem(&p, Some(Ipv4Addr::new(192, 0, 3, 1))).unwrap();
        assert_eq!(
            hex_of(&e.key),
            "c0a84d02 06000000 1f900000 c0000302 13880000"
        );
        assert_eq!(hex_of(&e.data.unwrap()), "c0000301 46a00000");
        assert!(snat_elem(&p, None).is_none());
        assert!(snat_elem(&a, Some(Ipv4Addr::new(192, 0, 3, 1))).is_none());

        assert_eq!(
            hex_of(&fwd_elem(&fwd_key(&a)).key),
            "c0a84d02 06000000 1f900000"
        );
    }

    #[test]
    fn pinhole_encodings() {
        let mut p = Pinhole {
            id: 1,
            remote: None,
            rport: 0,
            iaddr: "fd77::2".parse().unwrap(),
            iport: 8080,
            proto: 17,
            expires: 60_000,
            client: "fd77::2".parse().unwrap(),
        };
        let tail = "fd770000 00000000 00000000 00000002 11000000 1f900000";
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6, tail.to_string()));
        p.rport = 5000;
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6_P, format!("13880000 {tail}")));
        p.remote = Some("2001:db8::1".parse().unwrap());
        let remote = "20010db8 00000000 00000000 00000001";
        let (set, e) = pin_elem(&p);
        assert_eq!(
            (set, hex_of(&e.key)),
            (PIN6_HP, format!("{remote} 13880000 {tail}"))
        );
        p.rport = 0;
        let (set, e) = pin_elem(&p);
        assert_eq!((set, hex_of(&e.key)), (PIN6_H, format!("{remote} {tail}")));
        // the counter map and the lookup agree on the key
        assert_eq!(Nft::pinhole_key(&p), pin_map_key(PIN6_H, e.key.as_bytes()));
    }

    #[test]
    fn lifetimes_and_ranges() {
        assert_eq!(timeout_ms(Some(3_600_000), 0), Some(3_610_000));
        assert_eq!(timeout_ms(None, 0), None);
        assert_eq!(timeout_ms(Some(10), 5000), Some(11_000));
        assert_eq!(timeout_ms(Some(1500), 0), Some(12_000));
        assert_eq!(timeout_ms(Some(u64::MAX), 0), Some(TIMEOUT_MAX_S * 1000));
        let a = Ipv4Addr::new(192, 0, 3, 77);
        assert_eq!(prefix_range(a, 32), (a, a));
        assert_eq!(
            prefix_range(a, 0),
            (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        );
        assert_eq!(
            prefix_range(a, 31),
            (Ipv4Addr::new(192, 0, 3, 76), Ipv4Addr::new(192, 0, 3, 77))
        );
        assert_eq!(prefix_range(a, 200), (a, a));
    }

    #[test]
    fn mapping_keys_from_dumped_dnat_keys() {
        let a = m(18080, 8080, 2, None);
        let (_, e) = dnat_elem(&a);
        assert_eq!(dnat_mapping_key(e.key.as_bytes()), Some(a.key));
        let mut r = a.clone();
        r.key = Key::new(Proto::Udp, 1);
        r.remote = Some(RemoteFilter::host(Ipv4Addr::new(192, 0, 3, 2)));
        let (_, e) = dnat_elem(&r);
        assert_eq!(dnat_mapping_key(e.key.as_bytes()), Some(r.key));
        assert_eq!(dnat_mapping_key(&[6, 0, 0, 0, 0x46]), None);
        assert_eq!(dnat_mapping_key(&[]), None);
        assert_eq!(dnat_mapping_key(&[1, 0, 0, 0, 0, 80, 0, 0]), None);
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
