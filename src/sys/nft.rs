//! The nftables firewall backend: every mapping becomes elements of named
//! maps and sets inside fw4's `table inet fw4` (or an equivalent table the
//! daemon creates where fw4 is absent).
//!
//! Owns: the transaction per loop turn, restoring after a firewall
//! reload, and telling a stopped fw4 from a reloaded one; the netlink
//! watch that notices either is `monitor`. Elements (the per-mapping hot
//! path, `elements`) go straight to the kernel through [`super::nfnl`],
//! one netlink round trip per transaction. The structure (tables, chains,
//! set declarations, rules: `ruleset`) is nft text, rare (start, firewall
//! reload, WAN/LAN change), applied through libnftables loaded for that
//! one transaction and unloaded after, or through the `nft` binary, off
//! the loop, when the library is missing (`runner`).
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

mod elements;
mod monitor;
mod ruleset;
mod runner;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::config::NftNames;
use crate::core::firewall::{Counters, Firewall};
use crate::core::pinhole::{PinChange, Pinhole};
use crate::core::table::{Change, Key, Mapping, Millis};
use crate::proto::netlink::nftables::{self, Batch, Counter, Data, Elem};
use crate::sys::mem::trim_heap;
use crate::sys::nfnl;
use elements::{
    FwdKey, FwdRefs, counters, dnat_elem, dnat_mapping_key, fwd_elem, fwd_key, fwd_state, pin_elem,
    pin_map_key, snat_elem, timeout_ms,
};
pub use monitor::Monitor;
use ruleset::{
    ALIVE, BASE_DSTNAT, BASE_FORWARD, BASE_SRCNAT, DECLARATIONS, DNAT, DNAT_RH, EXTADDR, FWD,
    MARKER, PIN6, PIN6_H, PIN6_HP, PIN6_P, SNAT, STUN, ident_ok,
};
pub use ruleset::{Setup, describe, structure};
pub use runner::{CmdDone, Then};
use runner::{CmdQueue, LibNft, NFT_LIMIT, Runner, first_line, nft_command};

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

/// fw4's hooked forward chain: where it is, fw4's hooks lead to ours.
const FW4_FORWARD: &str = "forward";

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
    /// fw4's table is gone (fw4 stopped): nothing goes to the kernel, and
    /// the table is never created again by us, until fw4 brings it back.
    stopped: bool,
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
    /// Without libnftables: the `nft` command's transactions, off the
    /// loop.
    cmds: CmdQueue,
    /// The structure text the `nft` command has just put in place: the
    /// restore that follows installs the elements without running it
    /// again.
    fresh: Option<String>,
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
        let fw4 = !created_table && sock.chain_exists(t, FW4_FORWARD).unwrap_or(false);
        Ok(Nft {
            runner,
            lib,
            sock,
            names,
            setup,
            own_base: !fw4,
            stopped: false,
            fwd: HashMap::new(),
            flush_next: true,
            in_place: None,
            cmds: CmdQueue::default(),
            fresh: None,
        })
    }

    /// At start without libnftables: runs the structure through the `nft`
    /// command and waits for it (nothing is served yet), so that the
    /// first restore finds the sets in place.
    pub async fn settle(&mut self) -> Result<(), String> {
        if self.in_process() || self.stopped || self.fw4_table_gone() {
            return Ok(());
        }
        let c = structure(&self.names, &self.setup, self.own_base);
        self.cmds.submit(c, Then::Elements);
        let mut result = Ok(());
        while self.cmds.busy() {
            let done = self.cmd_done().await;
            if done.then == Then::Elements {
                result = done.result;
            }
        }
        result
    }

    /// The next transaction the `nft` command finished, for the loop
    /// (never resolves while none runs). After [`Then::Elements`] the
    /// caller restores the elements; the structure is not run again.
    pub async fn cmd_done(&mut self) -> CmdDone {
        let (text, done) = self.cmds.done().await;
        if done.then == Then::Elements && done.result.is_ok() {
            self.fresh = Some(text);
        }
        done
    }

    /// At stop: waits for the `nft` command's running transaction (it
    /// is bounded), and drops those not started.
    pub async fn finish(&mut self) {
        self.cmds.drop_waiting();
        while self.cmds.busy() {
            let _ = self.cmds.done().await;
        }
    }

    /// True when libnftables is in use for structure transactions (no
    /// process per change); elements always go over netlink.
    pub fn in_process(&self) -> bool {
        matches!(self.runner, Runner::Lib)
    }

    pub fn owns_hooks(&self) -> bool {
        self.own_base
    }

    /// Whether fw4 is stopped (its table gone): see [`Nft::look`].
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether fw4's table is gone. With our own hooks the table is ours
    /// to create again; a failed query counts as present.
    fn fw4_table_gone(&mut self) -> bool {
        let t = self.names.table.clone();
        !self.own_base && !self.sock.table_exists(&t).unwrap_or(true)
    }

    /// Looks at the table after another process changed nftables. fw4
    /// deletes its table when it stops, and re-creates it (with our
    /// include files' declarations, empty) when it starts; a reload
    /// re-declares and flushes it, which empties our chains. So: table
    /// gone is fw4 stopped, table there without our rules or elements is
    /// a reload or a start. With our own hooks, fw4 starting (its
    /// `forward` chain appears) makes us hand the hooks over to it.
    pub fn look(&mut self) -> Look {
        if self.fw4_table_gone() {
            if !self.stopped {
                self.stopped = true;
                self.fwd.clear();
            }
            return Look::Stopped;
        }
        let was_stopped = std::mem::replace(&mut self.stopped, false);
        let t = self.names.table.clone();
        let fw4_started = self.own_base
            && self.names.forward_chain != FW4_FORWARD
            && self.sock.chain_exists(&t, FW4_FORWARD).unwrap_or(false);
        if fw4_started {
            self.hand_hooks_to_fw4();
        }
        if was_stopped {
            // a new table: whatever is in its sets is not ours
            self.flush_next = true;
            return Look::Damaged;
        }
        if self.intact() {
            Look::Intact
        } else {
            Look::Damaged
        }
    }

    /// fw4 started in a table we hooked ourselves: our base chains go,
    /// fw4's chains jump to ours (through its include files) from now on.
    fn hand_hooks_to_fw4(&mut self) {
        let t = &self.names.table;
        let mut d = String::new();
        for chain in [BASE_FORWARD, BASE_DSTNAT, BASE_SRCNAT] {
            let _ = writeln!(d, "delete chain inet {t} {chain}");
        }
        match self.runner {
            Runner::Cmd => self.cmds.submit(d, Then::HooksHandedOver),
            Runner::Lib => log_hand_over(self.run(&d).map(|_| ())),
        }
        self.release_lib();
        self.own_base = false;
        self.flush_next = true;
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

    /// Structure text, now: libnftables, or (when stopping) the `nft`
    /// command, bounded.
    fn run_text(&mut self, cmds: &str) -> Result<String, String> {
        match self.runner {
            Runner::Cmd => nft_command(cmds, NFT_LIMIT),
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
        // Never create fw4's table ourselves: a stop is a stop.
        if self.stopped || self.fw4_table_gone() {
            self.stopped = true;
            return Ok(());
        }
        let c = structure(&self.names, &self.setup, self.own_base);
        match self.runner {
            Runner::Lib => {
                self.run(&c)?;
            }
            // Off the loop: the elements go into the sets that are there
            // now, and once more when the structure is in (`cmd_done`).
            Runner::Cmd => {
                if self.fresh.take().as_deref() != Some(c.as_str()) {
                    self.cmds.submit(c, Then::Elements);
                }
            }
        }
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
            marked |= nftables::rule_comment(r.userdata) == Some(MARKER.as_bytes());
        });
        listed.is_ok() && marked
    }

    /// Removes everything we installed (clean stop).
    pub fn teardown(&mut self) {
        if self.stopped {
            return;
        }
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
                .filter(|(_, n, _)| ![EXTADDR, ALIVE, STUN].contains(n))
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
            if let Some(exp) = fwd_state(refs.as_slice()) {
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
    fn element_counters(&mut self, set: &str, e: &Elem) -> Option<Counter> {
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
        // fw4 stopped: the table holds the changes, and the restore when
        // fw4 returns installs them.
        if self.stopped {
            return Ok(());
        }
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
                    (fwd_state(refs.as_slice()), refs)
                });
            }
            if let Some(o) = &ch.old {
                if let Some((_, refs)) = touched.get_mut(&fwd_key(o)) {
                    refs.remove(o.key);
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
            let after = fwd_state(refs.as_slice());
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
        self.element_counters(set, &e).map(counters)
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
                    out.insert(k, e.counter.map(counters).unwrap_or_default());
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
                let c = e.counter.map(counters).unwrap_or_default();
                out.insert(pin_map_key(set, e.key), c);
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

/// The log line of handing the hooks over to fw4.
pub fn log_hand_over(r: Result<(), String>) {
    match r {
        Ok(()) => log::info!("nftables: fw4 started; its hooks replace ours"),
        Err(e) => log::warn!("nftables: removing our hooks now that fw4 has started: {e}"),
    }
}

/// What [`Nft::look`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// Our rules and elements are in place.
    Intact,
    /// The table is there without them (fw4 reloaded, restarted or
    /// started): restore.
    Damaged,
    /// fw4's table is gone (fw4 stopped): leave it gone.
    Stopped,
}
