#!/usr/bin/env python3
"""Sums up one profile directory written by compare.sh's `profile`
workload into DIR/summary.md (and summary.json): per request of each
workload (adds, deletes, GetGenericPortMappingEntry walk),

- system calls by name (strace -c -w) and by cost centre (strace -T -yy),
- the daemon's CPU time by cost centre (perf cpu-clock samples with DWARF
  call graphs, kernel and user),
- user-space instructions (callgrind), by source file of the code that ran.

A cost centre is one of the suspects of a request's cost (the sock_diag
listener check, the lease-file rewrite, the log line, ...). A perf sample
belongs to the first centre whose pattern matches any frame of its call
chain, user frames (with inlined ones) and kernel frames alike.

Python 3 standard library only. usage: profile_summary.py DIR
"""

import gzip
import json
import os
import re
import sys

WORKLOADS = ("add", "del", "walk")
TITLES = {"add": "AddPortMapping", "del": "DeletePortMapping", "walk": "GetGenericPortMappingEntry"}

# (centre, pattern over a sample's frames), first match wins: the specific
# suspects first, then the generic machinery they run on.
PERF_CENTRES = [
    ("lease file rewrite", r"write_leases|sys::leasefile|persist::to_lease|proto::lease"),
    ("log line", r"sys::syslog|log_event|log_pinhole|as log::Log>|log::__private_api"),
    ("sock_diag listener check", r"netif::Listeners|netif::sock_diag|wan_listener|inet_diag|tcp_diag|udp_diag|udp_dump"),
    ("own nf_tables notifications", r"nft::Monitor|foreign_commit|newgen_pids|McastSocket"),
    ("nftables transaction", r"sys::nfnl|nfnetlink|nf_tables_|nft_trans"),
    ("HTTP connection (accept, read, reply, close)", r"sys::http|tcp_|inet_csk|__sys_accept|sock_close|inet_release|__sock_release|sk_alloc|sock_alloc"),
    ("SOAP parse, IGD action, reply", r"proto::|rupnpd::core::|on_http|Daemon::soap|Daemon::control"),
    ("event loop", r"tokio::|mio::|epoll|schedule|finish_task_switch"),
    ("allocator", r"malloc|free|realloc"),
]

# The functions that make up each cost centre in callgrind's call graph
# (whichever of them the optimiser left out of line). A centre costs its
# functions' own instructions plus everything they call outside it; a
# function belongs to the first centre it matches.
CG_CENTRES = [
    ("sock_diag listener check", r"^rupnpd::sys::netif::(sock_diag|netlink_dump|Listeners::read)|wan_listener$"),
    ("nftables transaction", r"^rupnpd::sys::nfnl::|^rupnpd::sys::nft::Nft::|^<rupnpd::sys::nft::Nft as .*Firewall>::"),
    ("lease file rewrite", r"::write_leases$|^rupnpd::sys::leasefile::|^rupnpd::core::persist::to_lease|^rupnpd::proto::lease::"),
    ("log line", r"\blog_(event|pinhole)$|^rupnpd::sys::syslog::|Syslog as log::Log>"),
    ("SOAP parse and reply", r"^rupnpd::proto::(soap|http|xml)::"),
]
# Called from several of the above (and from the loop): shown on its own.
CG_ZEROED = r"^alloc::vec::from_elem$"


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def per_workload(d, prefix, load, workloads=WORKLOADS):
    """{workload: (what `load(workload)` read, requests)} for the workloads
    that have both."""
    out = {}
    for w in workloads:
        data, n = load(w), requests(d, prefix, w)
        if data and n:
            out[w] = (data, n)
    return out


def requests(d, prefix, w):
    """How many requests the client made during one profiled workload."""
    t = read(os.path.join(d, "%s-%s.json" % (prefix, w)))
    if not t:
        return None
    try:
        return json.loads(t).get("calls") or None
    except ValueError:
        return None


# ------------------------------------------------------------------ strace -c
def strace_c(text):
    """{syscall: (calls, wall seconds)} from a `strace -c -w` table."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or not re.match(r"^[0-9.]+$", f[0]) or f[-1] == "total":
            continue
        try:
            secs, calls = float(f[1]), int(f[3])
        except ValueError:
            continue
        out[f[-1]] = (calls, secs)
    return out


# ------------------------------------------------------------------ strace -T
LINE = re.compile(r"^\d+\s+[\d:.]+\s+(?:<\.\.\. )?(\w+)(?:\(| resumed>)(.*?)(?:<([\d.]+)>)?$")


def netlink_protocols(d):
    """{inode: (protocol number, groups)} of the router namespace's netlink sockets."""
    out = {}
    for line in (read(os.path.join(d, "netlink.txt")) or "").splitlines()[1:]:
        f = line.split()
        if len(f) >= 10:
            try:
                out[f[-1]] = (int(f[1]), int(f[3], 16))
            except ValueError:
                pass
    return out


def strace_t(text, protos, lease_dir):
    """[(centre, seconds)] for every completed system call of a trace."""
    diag = set()
    out = []
    for line in text.splitlines():
        if "unfinished" in line or "+++" in line or "---" in line:
            continue
        m = LINE.match(line)
        if not m:
            continue
        name, args, t = m.group(1), m.group(2), m.group(3)
        secs = float(t) if t else 0.0
        inode = re.search(r"NETLINK:\[(\d+)\]", args)
        if name == "socket" and "NETLINK_SOCK_DIAG" in args and inode:
            diag.add(inode.group(1))
        if inode and inode.group(1) in diag:
            c = "sock_diag listener check"
        elif inode and inode.group(1) in protos:
            proto, groups = protos[inode.group(1)]
            c = {
                0: "address/link watch (netlink route)",
                4: "sock_diag listener check",
                12: "own nf_tables notifications" if groups else "nftables transaction",
            }.get(proto, "other netlink")
        elif inode:
            c = "other netlink"
        elif lease_dir and lease_dir in args or name == "getpid":
            # getpid: the temporary file's name carries the pid.
            c = "lease file rewrite"
        elif name in ("write", "writev") and re.match(r"2<", args):
            c = "log line"
        elif "TCP:" in args or name in ("accept4", "accept"):
            c = "HTTP connection (accept, read, reply, close)"
        elif name in ("epoll_wait", "epoll_pwait") or "eventfd" in args or "eventpoll" in args:
            c = "event loop"
        elif "UDP:" in args:
            c = "SSDP / NAT-PMP sockets"
        elif "/sys/" in args or "SIOCGIFINDEX" in args:
            c = "address/link watch (netlink route)"
        else:
            c = "other"
        out.append((c, name, secs))
    return out


# ------------------------------------------------------------------ perf
def perf_samples(path):
    """[(period, frames text)] from `perf script -F period,ip,sym,dso` output."""
    try:
        f = gzip.open(path, "rt", errors="replace")
    except OSError:
        return []
    out, period, frames = [], None, []
    with f:
        for line in f:
            if not line.strip():
                if period is not None:
                    out.append((period, "\n".join(frames)))
                period, frames = None, []
            elif period is None and re.match(r"^\s*\d+\s*$", line):
                period = int(line)
            else:
                frames.append(line.strip())
    if period is not None:
        out.append((period, "\n".join(frames)))
    return out


def classify(frames, centres):
    for name, pat in centres:
        if re.search(pat, frames):
            return name
    return "other"


def leaf(frames):
    first = frames.split("\n", 1)[0]
    m = re.match(r"^[0-9a-f]+\s+(.*?)\s+\((.*)\)$", first)
    if not m:
        return first
    sym, dso = m.group(1), os.path.basename(m.group(2))
    return "%s [%s]" % (sym[:90], dso)


# ------------------------------------------------------------------ callgrind
def callgrind_graph(path):
    """(total Ir, {function: self Ir}, {(caller, callee): Ir of the calls})
    from a callgrind.out file (its documented format): a cost line under
    fn= is the function's own, the cost line after a calls= line is the
    inclusive cost of those calls."""
    try:
        f = gzip.open(path, "rt", errors="replace")
    except OSError:
        return None, {}, {}
    names, self_ir, calls, total = {}, {}, {}, 0
    fn, callee, in_call = None, None, False

    def name(v):
        m = re.match(r"^\((\d+)\)(?:\s+(.*))?$", v)
        if not m:
            return v
        if m.group(2):
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), v)

    with f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("fn="):
                fn = name(line[3:])
            elif line.startswith("cfn="):
                callee = name(line[4:])
            elif line.startswith("calls="):
                in_call = True
            elif line and (line[0].isdigit() or line[0] in "+-*"):
                parts = line.split()
                ir = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
                if in_call:
                    calls[(fn, callee)] = calls.get((fn, callee), 0) + ir
                    in_call = False
                else:
                    self_ir[fn] = self_ir.get(fn, 0) + ir
                    total += ir
    return total, self_ir, calls


def centre_cost(members, self_ir, calls):
    """Instructions of a set of functions: their own, and their calls to
    functions outside the set."""
    own = sum(v for k, v in self_ir.items() if k in members)
    out = sum(v for (a, b), v in calls.items() if a in members and b not in members)
    return own + out


def centres_of(self_ir, calls):
    """{centre: set of functions}, each function in the first centre it matches."""
    fns = set(self_ir) | {a for a, _ in calls} | {b for _, b in calls}
    out = {c: set() for c, _ in CG_CENTRES}
    for f in fns:
        for c, pat in CG_CENTRES:
            if f and re.search(pat, f):
                out[c].add(f)
                break
    return out


def fmt_us(v):
    return "–" if v is None else ("%.1f µs" % v if v < 100 else "%.0f µs" % v)


def main():
    d = sys.argv[1]
    meta = json.loads(read(os.path.join(d, "meta.json")) or "{}")
    lease_dir = os.path.dirname(meta.get("lease_file") or "") or None
    protos = netlink_protocols(d)
    doc = {"meta": meta, "workloads": {}}
    md = ["# Profile of rupnpd at N = %s mappings" % meta.get("n", "?"), ""]
    md.append("Headline client (a new connection per request), lease file %s. Per request, of %s requests per workload "
              "(the walk: one request per entry)." % ("on (%s)" % meta["lease_file"] if meta.get("lease_file") else "off",
                                                      meta.get("k", "?")))
    md.append("")

    # strace -c: system calls per request.
    sc = per_workload(d, "strace-c", lambda w: strace_c(read(os.path.join(d, "strace-c-%s.txt" % w)) or ""))
    if sc:
        md.append("## System calls per request (`strace -c -w -f`)")
        md.append("")
        md.append("Counts are exact; the times are wall time inside the calls while traced (strace slows every call).")
        md.append("")
        md.append("| system call | " + " | ".join("%s calls / µs" % TITLES[w] for w in sc) + " |")
        md.append("|---|" + "---|" * len(sc))
        names = sorted({k for tab, _ in sc.values() for k in tab},
                       key=lambda k: (-max(tab.get(k, (0, 0))[0] / n for tab, n in sc.values()), k))
        for k in names:
            cells = []
            for w, (tab, n) in sc.items():
                c, s = tab.get(k, (0, 0.0))
                cells.append("%.2f / %s" % (c / n, fmt_us(s * 1e6 / n)) if c else "")
            md.append("| %s | %s |" % (k, " | ".join(cells)))
        tot = []
        for w, (tab, n) in sc.items():
            tot.append("**%.1f / %s**" % (sum(c for c, _ in tab.values()) / n, fmt_us(sum(s for _, s in tab.values()) * 1e6 / n)))
            doc["workloads"].setdefault(w, {})["syscalls_per_request"] = {k: c / n for k, (c, _) in tab.items()}
        md.append("| total | %s |" % " | ".join(tot))
        md.append("")

    # strace -T: by cost centre.
    st = per_workload(d, "strace-T", lambda w: strace_t(read(os.path.join(d, "strace-T-%s.txt" % w)) or "",
                                                         protos, lease_dir), ("add", "del"))
    if st:
        md.append("## System calls per request by cost centre (`strace -f -T -yy`, 5 requests)")
        md.append("")
        md.append("| cost centre | " + " | ".join("%s: calls (which)" % TITLES[w] for w in st) + " |")
        md.append("|---|" + "---|" * len(st))
        centres = []
        for calls, _ in st.values():
            for c, _, _ in calls:
                if c not in centres:
                    centres.append(c)
        for c in centres:
            cells = []
            for w, (calls, n) in st.items():
                mine = [x for x in calls if x[0] == c]
                names = {}
                for _, name, _ in mine:
                    names[name] = names.get(name, 0) + 1
                which = ", ".join("%s %g" % (k, v / n) for k, v in sorted(names.items(), key=lambda kv: -kv[1]))
                cells.append("%.1f (%s)" % (len(mine) / n, which) if mine else "")
                doc["workloads"].setdefault(w, {}).setdefault("syscalls_by_centre", {})[c] = len(mine) / n
            md.append("| %s | %s |" % (c, " | ".join(cells)))
        md.append("")

    # perf: CPU by cost centre.
    pf = per_workload(d, "perf", lambda w: perf_samples(os.path.join(d, "perf-%s.script.gz" % w)))
    if pf:
        md.append("## The daemon's CPU time per request by cost centre (`perf record -e cpu-clock --call-graph dwarf`)")
        md.append("")
        md.append("Kernel and user time of the daemon's thread(s) while the client ran; a sample belongs to the first "
                  "centre that any frame of its call chain matches (patterns in bench/profile_summary.py).")
        md.append("")
        md.append("Each cell: CPU per request (share of the request's CPU; of it in the kernel).")
        md.append("")
        md.append("| cost centre | " + " | ".join(TITLES[w] for w in pf) + " |")
        md.append("|---|" + "---|" * len(pf))
        shares = {}
        for w, (samples, n) in pf.items():
            tot = sum(p for p, _ in samples)
            by, kern = {}, {}
            for p, fr in samples:
                c = classify(fr, PERF_CENTRES)
                by[c] = by.get(c, 0) + p
                if "[kernel.kallsyms]" in fr.split("\n", 1)[0]:
                    kern[c] = kern.get(c, 0) + p
            shares[w] = (by, kern, tot, n)
            doc["workloads"].setdefault(w, {})["cpu_us_per_request"] = tot / 1000 / n
            doc["workloads"][w]["cpu_share"] = {c: v / tot for c, v in by.items()}
            doc["workloads"][w]["cpu_kernel_share"] = {c: kern.get(c, 0) / v for c, v in by.items()}
        for c in [x for x, _ in PERF_CENTRES] + ["other"]:
            cells = []
            for w, (by, kern, tot, n) in shares.items():
                v = by.get(c, 0)
                cells.append("%s (%.0f %%; %.0f %% kernel)" % (fmt_us(v / 1000 / n), 100 * v / tot, 100 * kern.get(c, 0) / v)
                             if v else "")
            if any(cells):
                md.append("| %s | %s |" % (c, " | ".join(cells)))
        md.append("| **total CPU per request** | %s |" % " | ".join(
            "**%s** (%d samples; %.0f %% kernel)" % (fmt_us(tot / 1000 / n), len(pf[w][0]), 100 * sum(kern.values()) / tot)
            for w, (by, kern, tot, n) in shares.items()))
        md.append("")
        md.append("The same CPU split by the system call it was spent in (kernel) or `user`, per request:")
        md.append("")
        for w, (samples, n) in pf.items():
            if w == "walk":
                continue
            by = {}
            for p, fr in samples:
                m = re.search(r"(?:__x64_sys|__do_sys|__se_sys|ksys)_(\w+)", fr)
                k = (classify(fr, PERF_CENTRES), m.group(1) if m else ("kernel, no system call" if
                     "[kernel.kallsyms]" in fr.split("\n", 1)[0] else "user"))
                by[k] = by.get(k, 0) + p
            md.append("- %s:" % TITLES[w])
            for c in [x for x, _ in PERF_CENTRES] + ["other"]:
                parts = sorted(((sc, v) for (cc, sc), v in by.items() if cc == c), key=lambda kv: -kv[1])
                if parts and sum(v for _, v in parts) / 1000 / n >= 1:
                    md.append("  - %s: %s" % (c, ", ".join("%s %s" % (sc, fmt_us(v / 1000 / n)) for sc, v in parts
                                                             if v / 1000 / n >= 0.5)))
            md.append("")
        for w, (samples, n) in pf.items():
            leaves = {}
            for p, fr in samples:
                k = (classify(fr, PERF_CENTRES), leaf(fr))
                leaves[k] = leaves.get(k, 0) + p
            tot = sum(p for p, _ in samples)
            md.append("Hottest leaf functions, %s:" % TITLES[w])
            md.append("")
            for (c, lf), v in sorted(leaves.items(), key=lambda kv: -kv[1])[:12]:
                md.append("- %.1f %% `%s` (%s)" % (100 * v / tot, lf, c))
            md.append("")

    # callgrind: user-space instructions.
    cg = {}
    for w in WORKLOADS:
        n = requests(d, "callgrind", w)
        total, self_ir, calls = callgrind_graph(os.path.join(d, "callgrind.out.%s.gz" % w))
        if total and n:
            cg[w] = (total, self_ir, calls, n)
    if cg:
        md.append("## User-space instructions per request (callgrind)")
        md.append("")
        md.append("Instructions executed in the daemon's own code and its libraries, not in the kernel; repeatable "
                  "under load. A centre is a set of functions (`CG_CENTRES` in bench/profile_summary.py): their own "
                  "instructions and everything they call outside the set. The rest is the HTTP task, the event loop "
                  "and the IGD action itself.")
        md.append("")
        md.append("| where | " + " | ".join(TITLES[w] for w in cg) + " |")
        md.append("|---|" + "---|" * len(cg))
        costs = {}
        for w, (total, self_ir, calls, n) in cg.items():
            members = centres_of(self_ir, calls)
            costs[w] = {c: centre_cost(members[c], self_ir, calls) for c, _ in CG_CENTRES}
            zeroed = {f for f in set(self_ir) | {b for _, b in calls} if f and re.search(CG_ZEROED, f)}
            costs[w]["zeroed"] = centre_cost(zeroed, self_ir, calls)
            doc["workloads"].setdefault(w, {})["instructions_per_request"] = total / n
            doc["workloads"][w]["instructions_by_centre"] = {c: v / n for c, v in costs[w].items()}
        for c, _ in CG_CENTRES:
            cells = []
            for w, (total, self_ir, calls, n) in cg.items():
                v = costs[w][c]
                cells.append("{:,.0f} ({:.0f} %)".format(v / n, 100 * v / total) if v else "")
            if any(cells):
                md.append("| %s | %s |" % (c, " | ".join(cells)))
        cells = []
        for w, (total, self_ir, calls, n) in cg.items():
            rest = total - sum(costs[w][c] for c, _ in CG_CENTRES)
            cells.append("{:,.0f} ({:.0f} %)".format(rest / n, 100 * rest / total))
        md.append("| everything else | %s |" % " | ".join(cells))
        md.append("| **total instructions per request** | %s |" % " | ".join(
            "**{:,.0f}**".format(total / n) for w, (total, self_ir, calls, n) in cg.items()))
        md.append("| of all these: zero-filled buffers (`vec![0; n]`) | %s |" % " | ".join(
            "{:,.0f} ({:.0f} %)".format(costs[w]["zeroed"] / n, 100 * costs[w]["zeroed"] / total)
            for w, (total, self_ir, calls, n) in cg.items()))
        md.append("")
        for w, (total, self_ir, calls, n) in cg.items():
            md.append("Most instructions in the function itself, %s (per request):" % TITLES[w])
            md.append("")
            for k, v in sorted(self_ir.items(), key=lambda kv: (-kv[1], kv[0]))[:10]:
                md.append("- {:,.0f} ({:.0f} %) `{}`".format(v / n, 100 * v / total, k[:140]))
            md.append("")

    with open(os.path.join(d, "summary.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    with open(os.path.join(d, "summary.json"), "w") as f:
        json.dump(doc, f, indent=1)
    print("\n".join(md))


if __name__ == "__main__":
    main()
