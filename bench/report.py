#!/usr/bin/env python3
"""Turns the raw records of bench/compare.sh into latest.json, latest.csv
and latest.md: every figure for both daemons, the ratio rupnpd/miniupnpd,
and the targets of issue [BENCH] checked. Python 3 standard library only.

usage: report.py RAW.jsonl META.json OUTDIR
"""

import csv
import json
import re
import statistics
import sys

DAEMONS = ("rupnpd", "miniupnpd")


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class Records:
    def __init__(self, recs):
        self.recs = recs

    def all(self, daemon, name, n=None):
        return [
            r
            for r in self.recs
            if r["daemon"] == daemon and r["name"] == name and (n is None or r["n"] == n)
        ]

    def one(self, daemon, name, n=None):
        rs = self.all(daemon, name, n)
        return rs[-1] if rs else None

    def levels(self):
        return sorted({r["n"] for r in self.recs if r["name"] == "kernel_count"})


def fmt_us(v):
    if v is None:
        return "–"
    if v < 1000:
        return "%.0f µs" % v
    if v < 1_000_000:
        return "%.2f ms" % (v / 1000)
    return "%.2f s" % (v / 1_000_000)


def fmt_rate(v):
    return "–" if v is None else ("%.0f/s" % v if v >= 10 else "%.2f/s" % v)


def fmt_kib(v):
    return "–" if v is None else "{:,} KiB".format(int(v))


def fmt_ms(v):
    return "–" if v is None else fmt_us(v * 1000)


FORMAT = {"us": fmt_us, "ops/s": fmt_rate, "conn/s": fmt_rate, "KiB": fmt_kib, "ms": fmt_ms}


class Cell:
    """One daemon's figure: a number (for ratios), the text shown, a note."""

    def __init__(self, value=None, text=None, note=""):
        self.value = value
        self.text = text
        self.note = note
        self.mean = None


def cell_from(recs, key, unit):
    """A figure from one record or from the rounds of a workload (the
    median over rounds; the spread is shown when there are several)."""
    if recs is None:
        return Cell(None, "not run")
    if isinstance(recs, dict):
        recs = [recs]
    if not recs:
        return Cell(None, "not run")
    bad = [r for r in recs if r["status"] in ("crashed", "failed")]
    if any(r["status"] == "crashed" for r in bad):
        return Cell(None, "**crashed**", "daemon died during the workload")
    if bad:
        d = bad[0].get("data") or {}
        return Cell(None, "**failed**", d.get("first_error") or d.get("error") or "")
    vals = [r["data"][key] for r in recs if r.get("data") and r["data"].get(key) is not None]
    if not vals:
        return Cell(None, "–")
    v = statistics.median(vals)
    note = []
    if len(vals) > 1:
        note.append("median of %d rounds, %s–%s" % (len(vals), FORMAT[unit](min(vals)), FORMAT[unit](max(vals))))
    trunc = [r for r in recs if r["status"] == "truncated"]
    if trunc:
        note.append("n=%s (time budget)" % "+".join(str(r["data"].get("calls", r["data"].get("samples"))) for r in trunc))
    errs = {}
    for r in recs:
        for k, n in ((r.get("data") or {}).get("errors") or {}).items():
            errs[k] = errs.get(k, 0) + n
    if errs:
        note.append("errors " + ", ".join("%s×%s" % (n, k) for k, n in errs.items()))
    text = FORMAT[unit](v)
    d = recs[-1].get("data") or {}
    if unit == "KiB" and "anon_kb" in d:
        text += " (anon %s, file %s)" % ("{:,}".format(d["anon_kb"]), "{:,}".format(d["file_kb"]))
    if note:
        text += " (" + "; ".join(note) + ")"
    return Cell(v, text, "; ".join(note))


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def reading(r, better):
    if r is None:
        return ""
    if better == "lower":
        return ("%.1f× faster" % (1 / r)) if r < 1 else ("%.1f× slower" % r)
    if better == "smaller":
        return ("%.1f× smaller" % (1 / r)) if r < 1 else ("%.1f× larger" % r)
    return ("%.1f× more" % r) if r >= 1 else ("%.1f× less" % (1 / r))


def median_of(recs, key):
    vals = [r["data"][key] for r in recs if r["status"] == "ok" and r.get("data") and key in r["data"]]
    return statistics.median(vals) if vals else None


def build_rows(R):
    rows = []

    def add(section, label, n, unit, better, cells, table="other"):
        ru, mi = cells
        if ru.text == "not run" and mi.text == "not run":
            return
        r = ratio(ru.value, mi.value)
        row = {
            "table": table,
            "section": section,
            "metric": label,
            "n": n,
            "unit": unit,
            "better": better,
            "rupnpd": ru.value,
            "miniupnpd": mi.value,
            "rupnpd_text": ru.text,
            "miniupnpd_text": mi.text,
            "ratio": r,
            "reading": reading(r, better),
        }
        # Per-request rows also carry the means (the medians decide).
        means = [getattr(c, "mean", None) for c in cells]
        if any(m is not None for m in means):
            row["rupnpd_mean"], row["miniupnpd_mean"] = means
            rm = ratio(*means)
            if rm is not None and r is not None:
                row["reading"] += "; means %s" % reading(rm, better).replace(" faster", "")
        rows.append(row)

    # Start-up and idle.
    cells = []
    for d in DAEMONS:
        m = median_of(R.all(d, "startup"), "ms")
        reps = len(R.all(d, "startup"))
        cells.append(Cell(m, (fmt_ms(m) + " (median of %d)" % reps) if m is not None else "not run"))
    add("start", "start to serving rootDesc.xml", None, "ms", "lower", cells)
    add("start", "RSS idle", 0, "KiB", "smaller", [cell_from(R.one(d, "rss", 0), "rss_kb", "KiB") for d in DAEMONS])

    def conn_cells(n):
        """Connections/s from the median loop iteration (connect + reset):
        the rate the router sustains when other jobs leave the CPUs alone;
        the measured rates (count / time) are shown beside it."""
        out = []
        for d in DAEMONS:
            rs = R.all(d, "conn", n)
            if not rs:
                out.append(Cell(None, "not run"))
                continue
            ok = [r for r in rs if r["status"] == "ok"]
            if not ok:
                out.append(Cell(None, "**failed**"))
                continue
            at_med = median_of(ok, "per_s_at_median")
            m = median_of(ok, "per_s")
            best = max(r["data"]["per_s"] for r in ok)
            out.append(Cell(at_med, "%s (measured: median %s, best %s of %d runs)" % (
                fmt_rate(at_med), fmt_rate(m), fmt_rate(best), len(ok))))
        return out

    def lat_cells(n):
        out = []
        for d in DAEMONS:
            ok = [r for r in R.all(d, "conn", n) if r["status"] == "ok"]
            lat = median_of(ok, "median_us")
            out.append(Cell(lat, fmt_us(lat) if lat is not None else "–"))
        return out

    if any(R.all(d, "conn", 0) for d in DAEMONS):
        add("conn", "new connections/s through one mapping", 0, "conn/s", "higher", conn_cells(0))
        add("conn", "median connect time through it", 0, "us", "lower", lat_cells(0))

    def per_request(recs):
        """The median over rounds of each round's median, its mean beside."""
        c = cell_from(recs, "median_us", "us")
        ok = [r for r in (recs or []) if r["status"] in ("ok", "truncated") and r.get("data")]
        if c.value is not None and ok:
            c.mean = statistics.median(r["data"]["mean_us"] for r in ok)
            c.text = "%s (mean %s%s)" % (fmt_us(c.value), fmt_us(c.mean), "; " + c.note if c.note else "")
        return c

    def walk(r):
        """A GetGenericPortMappingEntry walk: (per entry, total) cells."""
        per, tot = cell_from(r, "median_us", "us"), cell_from(r, "total_ms", "ms")
        if r and r["status"] in ("ok", "truncated") and r.get("data"):
            dd = r["data"]
            per.text = "%s (mean %s)" % (fmt_us(dd["median_us"]), fmt_us(dd["mean_us"]))
            tot.text = "%s for %d entries" % (fmt_ms(dd["total_ms"]), dd["entries"])
            if r["status"] == "truncated":
                tot.text += " — stopped by the time budget"
                tot.value = None  # not comparable with a complete walk
        return per, tot

    def listing(r):
        c = cell_from(r, "total_ms", "ms")
        if r and r["status"] == "ok" and r.get("data"):
            dd = r["data"]
            c.text = "%s for %d entries in %d calls" % (fmt_ms(dd["total_ms"]), dd["entries"], dd["calls"])
        return c

    for n in R.levels():
        sec = "N=%d" % n
        # The headline: both daemons as a libminiupnpc client drives them.
        for name, label in (("add", "AddPortMapping, per request"), ("del", "DeletePortMapping, per request")):
            add(sec, label, n, "us", "lower", [per_request(R.all(d, name, n)) for d in DAEMONS], "headline")
        walks = [walk(R.one(d, "list_generic", n)) for d in DAEMONS]
        add(sec, "GetGenericPortMappingEntry walk, per entry", n, "us", "lower", [w[0] for w in walks], "headline")
        add(sec, "GetGenericPortMappingEntry walk, all entries", n, "ms", "lower", [w[1] for w in walks], "headline")
        add(sec, "GetListOfPortMappings, everything (TCP+UDP, 1000 per call)", n, "ms", "lower",
            [listing(R.one(d, "list_all", n)) for d in DAEMONS], "headline")

        # rupnpd over one keep-alive connection; miniupnpd closes every
        # connection, so its figures are the headline ones.
        for name, label in (("add", "AddPortMapping"), ("del", "DeletePortMapping")):
            recs = [R.all("rupnpd", name + "_keepalive", n), R.all("miniupnpd", name, n)]
            add(sec, label + " median", n, "us", "lower", [cell_from(r, "median_us", "us") for r in recs], "keepalive")
            add(sec, label + " p99", n, "us", "lower", [cell_from(r, "p99_us", "us") for r in recs], "keepalive")
            add(sec, label + " throughput", n, "ops/s", "higher", [cell_from(r, "ops_per_s", "ops/s") for r in recs],
                "keepalive")
        walks = [walk(R.one("rupnpd", "list_generic_keepalive", n)), walk(R.one("miniupnpd", "list_generic", n))]
        add(sec, "GetGenericPortMappingEntry walk, per entry", n, "us", "lower", [w[0] for w in walks], "keepalive")
        add(sec, "GetGenericPortMappingEntry walk, all entries", n, "ms", "lower", [w[1] for w in walks], "keepalive")
        add(sec, "GetListOfPortMappings, everything", n, "ms", "lower",
            [listing(R.one("rupnpd", "list_all_keepalive", n)), listing(R.one("miniupnpd", "list_all", n))], "keepalive")

        for name, label in (("add", "AddPortMapping"), ("del", "DeletePortMapping")):
            recs = [R.all(d, name, n) for d in DAEMONS]
            add(sec, label + " p99, a connection per request", n, "us", "lower",
                [cell_from(r, "p99_us", "us") for r in recs])
            add(sec, label + " throughput, a connection per request", n, "ops/s", "higher",
                [cell_from(r, "ops_per_s", "ops/s") for r in recs])
        for name, label in (("pmp_map", "NAT-PMP map"), ("pmp_del", "NAT-PMP delete")):
            recs = [R.all(d, name, n) for d in DAEMONS]
            add(sec, label + " median", n, "us", "lower", [cell_from(r, "median_us", "us") for r in recs])
            add(sec, label + " p99", n, "us", "lower", [cell_from(r, "p99_us", "us") for r in recs])
            add(sec, label + " throughput", n, "ops/s", "higher", [cell_from(r, "ops_per_s", "ops/s") for r in recs])
        add(sec, "RSS", n, "KiB", "smaller", [cell_from(R.one(d, "rss", n), "rss_kb", "KiB") for d in DAEMONS])
        if any(R.all(d, "conn", n) for d in DAEMONS) and n != 0:
            add(sec, "new connections/s through one mapping", n, "conn/s", "higher", conn_cells(n))
            add(sec, "median connect time through it", n, "us", "lower", lat_cells(n))
        ab0, abn = R.all("rupnpd", "conn_ab", 0), R.all("rupnpd", "conn_ab", n)
        if n != 0 and ab0 and abn:
            a0, an = median_of(ab0, "per_s_at_median"), median_of(abn, "per_s_at_median")
            rows.append({
                "table": "other",
                "section": sec, "metric": "rupnpd alone: N=0 / N=%d alternated (%d + %d runs)" % (n, len(ab0), len(abn)),
                "n": n, "unit": "conn/s", "better": "higher", "rupnpd": an, "miniupnpd": None,
                "rupnpd_text": "N=0 %s, N=%d %s (median connect %s vs %s)" % (
                    fmt_rate(a0), n, fmt_rate(an), fmt_us(median_of(ab0, "median_us")), fmt_us(median_of(abn, "median_us"))),
                "miniupnpd_text": "–", "ratio": None,
                "reading": "N=%d / N=0 = %.2f" % (n, an / a0) if a0 else "",
            })
        r = R.one("rupnpd", "restore", n)
        ru = cell_from(r, "since_start_ms", "ms")
        if r and r["status"] == "ok":
            dd = r["data"]
            ru.text = "%s (reload itself %s; daemon's transaction %s; %d elements back)" % (
                fmt_ms(dd["since_start_ms"]), fmt_ms(dd["reload_ms"]), fmt_ms(dd.get("daemon_ms")),
                dd.get("elements", 0))
        lost = R.one("miniupnpd", "restore", None)
        mi = Cell(None, "–")
        if lost and lost["n"] == n:
            dd = lost["data"]
            mi = Cell(None, "loses them (%d of %d rules left 2 s after the reload)" % (dd["after_2s"], dd["before"]))
        if r or lost:
            add(sec, "restore all mappings after a firewall reload", n, "ms", "lower", [ru, mi])
        rr = R.one("rupnpd", "rss_after_restore", n)
        if rr:
            add(sec, "RSS after that reload", n, "KiB", "smaller",
                [cell_from(rr, "rss_kb", "KiB"), Cell(None, "–")])
    return rows


def targets(R, rows):
    def row(metric_prefix, n, table="headline"):
        for r in rows:
            if r["n"] == n and r["table"] == table and r["metric"].startswith(metric_prefix):
                return r
        return None

    out = []

    def verdict(ok):
        return "n/a" if ok is None else ("met" if ok else "**missed**")

    # 1. At N=1000 in the headline run, ≥ 10× faster at add and at delete
    # (per-request medians decide; the means are shown).
    a = row("AddPortMapping, per request", 1000)
    d = row("DeletePortMapping, per request", 1000)
    ok = None
    if a and d and a["ratio"] and d["ratio"]:
        ok = a["ratio"] <= 0.1 and d["ratio"] <= 0.1
    out.append(("headline, N=1000: rupnpd ≥ 10× faster than miniupnpd at add and at delete",
                "add %s; delete %s" % (fmt_speedup(a), fmt_speedup(d)), verdict(ok)))
    # 2. Faster at every listing action at every N. A listing that crashed
    # miniupnpd while rupnpd completed it counts as faster.
    parts, ok = [], None
    for r in rows:
        if r["table"] != "headline" or not (r["metric"].startswith("GetGenericPortMappingEntry walk, all")
                                            or r["metric"].startswith("GetListOfPortMappings")):
            continue
        short = "walk" if "walk" in r["metric"] else "list"
        if r["ratio"] is not None:
            faster = r["ratio"] < 1
            parts.append("N=%s %s ×%.2f" % (r["n"], short, 1 / r["ratio"]))
        elif r["rupnpd"] is not None and "crashed" in r["miniupnpd_text"]:
            faster = True
            parts.append("N=%s %s (miniupnpd crashed)" % (r["n"], short))
        else:
            continue
        ok = faster if ok is None else (ok and faster)
    out.append(("headline: rupnpd faster at every listing action at every N (× = how many times faster)",
                "; ".join(parts), verdict(ok)))
    # 2. per-op within 2x from N=100 to N=10000: the median over rounds of
    # each round's median (the typical op); means are shown, not judged,
    # because on a shared machine they carry other jobs' interference.
    levels = R.levels()
    lo, hi = (100, 10000) if 100 in levels and 10000 in levels else (levels[0], levels[-1]) if levels else (None, None)
    parts, ok = [], None
    if lo is not None and lo != hi:
        ok = True
        for name in ("add", "del", "pmp_map", "pmp_del"):
            a = [r for r in R.all("rupnpd", name, lo) if r["status"] == "ok"]
            b = [r for r in R.all("rupnpd", name, hi) if r["status"] == "ok"]
            if not (a and b):
                continue
            fm = median_of(b, "median_us") / median_of(a, "median_us")
            fa = median_of(b, "mean_us") / median_of(a, "mean_us")
            parts.append("%s median ×%.2f (mean ×%.2f)" % (name, fm, fa))
            ok = ok and fm <= 2
        if not parts:
            ok = None
    out.append(("rupnpd per-op cost within 2× from N=%s to N=%s (medians; add/del with a connection per request)" % (lo, hi),
                "; ".join(parts), verdict(ok)))
    # 3. RSS never larger.
    parts, ok = [], None
    for r in rows:
        if r["metric"] == "RSS idle" or r["metric"] == "RSS":
            if r["rupnpd"] is not None and r["miniupnpd"] is not None:
                ok = (ok is None or ok) and r["rupnpd"] <= r["miniupnpd"]
                parts.append("N=%s %d vs %d KiB" % (r["n"], r["rupnpd"], r["miniupnpd"]))
    out.append(("RSS no larger than miniupnpd's at any N", "; ".join(parts), verdict(ok)))
    # 4. restore 1000 in < 1 s.
    r = R.one("rupnpd", "restore", 1000)
    ok = None
    txt = "not measured at N=1000"
    if r and r["status"] == "ok":
        ok = r["data"]["since_start_ms"] < 1000
        txt = "%s from the start of the reload until a mapping carries traffic again (daemon's own figure %s)" % (
            fmt_ms(r["data"]["since_start_ms"]), fmt_ms(r["data"].get("daemon_ms")))
    out.append(("rupnpd restores 1000 mappings in under 1 s", txt, verdict(ok)))
    # 5. conn rate at 10000 within 10% of 0, from the median iteration of
    # each run (robust to other jobs' interference). The alternated runs
    # decide when present (the machine drifts between the start of a run
    # and the largest N); the single-shot figures are shown beside.
    def conn(name, n, key):
        return median_of([r for r in R.all("rupnpd", name, n) if r["status"] == "ok"], key)

    top = max([n for n in levels if R.all("rupnpd", "conn", n)] or [0])
    ok, txt = None, "not measured"
    c0, c1 = conn("conn", 0, "per_s_at_median"), (conn("conn", top, "per_s_at_median") if top else None)
    a0, a1 = conn("conn_ab", 0, "per_s_at_median"), (conn("conn_ab", top, "per_s_at_median") if top else None)
    parts = []
    if a0 and a1:
        ok = a1 >= 0.9 * a0
        parts.append("alternated: N=0 %s, N=%d %s (×%.2f), median connect %s vs %s" % (
            fmt_rate(a0), top, fmt_rate(a1), a1 / a0, fmt_us(conn("conn_ab", 0, "median_us")),
            fmt_us(conn("conn_ab", top, "median_us"))))
    if c0 and c1:
        if ok is None:
            ok = c1 >= 0.9 * c0
        parts.append("single shot at the start and at N=%d: %s vs %s (×%.2f); measured rates %s vs %s" % (
            top, fmt_rate(c0), fmt_rate(c1), c1 / c0, fmt_rate(conn("conn", 0, "per_s")), fmt_rate(conn("conn", top, "per_s"))))
    if parts:
        txt = "; ".join(parts) + " (rates from the median connect-and-close time)"
    out.append(("rupnpd new-connection rate at N=%d within 10%% of N=0" % top, txt, verdict(ok)))
    return out


def fmt_speedup(r):
    """`0.98 ms vs 8.6 ms = ×8.8 (means ×8.1)` for a per-request row."""
    if not r or not r["ratio"]:
        return "n/a"
    t = "%s vs %s = ×%.1f" % (fmt_us(r["rupnpd"]), fmt_us(r["miniupnpd"]), 1 / r["ratio"])
    rm, mm = r.get("rupnpd_mean"), r.get("miniupnpd_mean")
    if rm and mm:
        t += " (means ×%.1f)" % (mm / rm)
    return t


def mini_label(meta):
    """The column head: miniupnpd and its version."""
    v = re.search(r"\d+\.\d+(\.\d+)?", meta.get("miniupnpd") or "")
    return "miniupnpd %s" % v.group(0) if v else "miniupnpd"


def main():
    raw, meta_path, outdir = sys.argv[1:4]
    R = Records(load(raw))
    meta = json.load(open(meta_path))
    rows = build_rows(R)
    tg = targets(R, rows)

    overhead = R.one("client", "overhead")
    ns = R.one("host", "netns_exec")
    natpmpc = {d: R.one(d, "natpmpc") for d in DAEMONS}

    doc = {
        "meta": meta,
        "rows": rows,
        "targets": [{"target": t, "measured": m, "verdict": v} for t, m, v in tg],
        "client_overhead": overhead["data"] if overhead else None,
        "netns_exec_ms": ns["data"]["ms"] if ns else None,
        "natpmpc_sanity": {d: (r["data"] if r else None) for d, r in natpmpc.items()},
        "records": R.recs,
    }
    with open(outdir + "/latest.json", "w") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    with open(outdir + "/latest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["table", "section", "metric", "n", "unit", "better", "rupnpd", "miniupnpd", "ratio_rupnpd_over_miniupnpd",
                    "rupnpd_text", "miniupnpd_text"])
        for r in rows:
            w.writerow([r["table"], r["section"], r["metric"], "" if r["n"] is None else r["n"], r["unit"], r["better"],
                        "" if r["rupnpd"] is None else "%.3f" % r["rupnpd"],
                        "" if r["miniupnpd"] is None else "%.3f" % r["miniupnpd"],
                        "" if r["ratio"] is None else "%.4f" % r["ratio"], r["rupnpd_text"], r["miniupnpd_text"]])

    m = meta
    lines = []
    lines.append("Run %s on %s (%d CPUs, %d MiB), %s, kernel %s; load %s → %s; %d s." % (
        m["date"], m["cpu"], m["cpus"], m["mem_mb"], m["os"], m["kernel"], m["load_start"], m["load_end"], m["seconds"]))
    lines.append("rupnpd %s; miniupnpd %s; nftables %s; %s." % (
        m["rupnpd"], m["miniupnpd"], m["nftables"], m["rustc"]))
    o = m["options"]
    lines.append("Options: levels %s, connection rate at %s, K=%d ops per workload (time budget %d s, at least %d), "
                 "%s rounds for rupnpd / %s for miniupnpd, listing budget %d s, %d × %d s connection runs, "
                 "%d start-ups, miniupnpd filled by SOAP up to %d%s." % (
                     o["levels"], o["conn_levels"], o["k"], o["budget_s"], o["min_ops"], o.get("rounds", 1),
                     o.get("mini_rounds", 1), o["list_budget_s"],
                     o["conn_runs"], o["conn_secs"], o["startup_reps"], o["mini_soap_fill_max"],
                     ", host-sized socket hash" if o["host_tcp_hash"] else ""))
    lines.append("Client: requests byte for byte as libminiupnpc 2.2.4 (upnpc) sends them; %s; %s." % (
        "lease files on tmpfs (%s)" % o["lease_file"] if o.get("lease_file") else "no lease files",
        "host-sized socket hash" if o["host_tcp_hash"] else "router-sized socket hash in the namespaces "
        "(tcp_child_ehash_entries 1024, udp_child_hash_entries 256)"))

    def table(which, title, head):
        sel = [r for r in rows if r["table"] == which]
        if not sel:
            return
        lines.append("")
        lines.append(title)
        lines.append("")
        lines.append(head)
        lines.append("|---|---|---|---|---|")
        for r in sel:
            rt = r["reading"] if r["ratio"] is None else "%.3g (%s)" % (r["ratio"], r["reading"])
            lines.append("| %s | %s | %s | %s | %s |" % (r["section"], r["metric"], r["rupnpd_text"], r["miniupnpd_text"], rt))

    table("headline", "**Headline: what a libminiupnpc client sees** — both daemons with a new TCP connection per "
          "request (`Connection: Close`), lease file %s. Per-request figures are medians (means beside)." % (
              "on" if o.get("lease_file") else "**off** (`--no-lease-file`)"),
          "| | action | rupnpd | %s | rupnpd / miniupnpd |" % mini_label(m))
    table("keepalive", "**rupnpd over one keep-alive connection** (bench-client only: libminiupnpc never keeps a "
          "connection) against miniupnpd with a connection per request (it closes every connection).",
          "| | metric | rupnpd, keep-alive | %s, per request | rupnpd / miniupnpd |" % mini_label(m))
    table("other", "**Everything else** (a connection per request where it applies).",
          "| | metric | rupnpd | %s | rupnpd / miniupnpd |" % mini_label(m))
    lines.append("")
    lines.append("| target | measured | verdict |")
    lines.append("|---|---|---|")
    for t, mm, v in tg:
        lines.append("| %s | %s | %s |" % (t, mm, v))
    lines.append("")
    if overhead:
        od = overhead["data"]
        lines.append("Client overhead (bench-client against trivial responders on loopback, 5000 ops): "
                     "SOAP keep-alive median %s / p99 %s; SOAP connection per request median %s / p99 %s; "
                     "NAT-PMP median %s / p99 %s." % (
                         fmt_us(od["soap_keepalive"]["median_us"]), fmt_us(od["soap_keepalive"]["p99_us"]),
                         fmt_us(od["soap_close"]["median_us"]), fmt_us(od["soap_close"]["p99_us"]),
                         fmt_us(od["natpmp"]["median_us"]), fmt_us(od["natpmp"]["p99_us"])))
    if ns:
        lines.append("`ip netns exec` costs %s (included in both start-up figures)." % fmt_ms(ns["data"]["ms"]))
    for d, r in natpmpc.items():
        if r:
            lines.append("natpmpc sanity run against %s: %s — %s" % (
                d, "ok" if r["data"].get("ok") else "**failed**", r["data"].get("map", "").strip()))
    fill = []
    for d in DAEMONS:
        for r in R.all(d, "fill"):
            if r.get("data") and r["data"].get("calls"):
                fill.append("%s to N=%s: %d adds over SOAP (%s) in %s" % (
                    d, r["n"], r["data"]["calls"], r["data"]["mode"], fmt_ms(r["data"]["total_ms"])))
        for r in R.all(d, "fill_direct"):
            fill.append("%s to N=%s: %d mappings as direct rules in %s" % (
                d, r["n"], r["data"]["mappings"], fmt_ms(r["data"]["total_ms"])))
    if fill:
        lines.append("Filling: " + "; ".join(fill) + ".")
    leases = ["%s at N=%s: %d" % (d, r["n"], r["data"]["lines"]) for d in DAEMONS for r in R.all(d, "lease_lines")]
    if leases:
        lines.append("Lease file lines after filling: " + "; ".join(leases) + ".")
    restarts = [r for r in R.recs if r["name"] == "restart"]
    for r in restarts:
        lines.append("%s was restarted after crashing at N=%s." % (r["daemon"], r["n"]))
    with open(outdir + "/latest.md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
