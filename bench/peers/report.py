"""The report of bench/bench_peers.py: table rows from the raw results, a
plain-text and a Markdown rendering, the PNG chart and the README section."""
import math
import os
import re

COLS = ["redlease", "hiredis", "redispy", "prl", "pottery"]
HEAD = {"redlease": "redlease", "hiredis": "bare hiredis (C)", "redispy": "redis-py",
        "prl": "python-redis-lock", "pottery": "pottery"}
DASH = "—"


def _us(v):
    return "{:,.0f} µs".format(v) if v >= 100 else "%.1f µs" % v


def _ms(v):
    if v >= 100:
        return "%.0f ms" % v
    if v >= 10:
        return "%.1f ms" % v
    return "%.3f ms" % v if v < 1 else "%.2f ms" % v


def _ns(v):
    if v >= 10_000:
        return "%.1f µs" % (v / 1e3)
    return "%.0f ns" % v if v >= 100 else "%.1f ns" % v


def _int(v):
    return "{:,}".format(int(round(v)))


SHORT = {  # labels for the terminal table (the Markdown has the long ones)
    "P1": "acquire+release, uncontended",
    "P2": '"still own it?" check',
    "P3": ["handover p50 (waiter in other process)", "handover p99"],
    "P4": "crash failover: expiry -> holder",
    "P5": "thefts during GIL hog (runs)",
    "P6": ["threads @ N held auto-renewed locks", "RSS growth per held lock",
           "renewal CPU, % of one core"],
    "P7": "8 threads x own key: cycles/s",
}


def _row(pid, measure, cols, ratio="", target=DASH, met=None, note=""):
    return dict(id=pid, measure=measure, cols=cols, ratio=ratio, target=target, met=met,
                note=note)


def _short(rows):
    seen = {}
    for r in rows:
        lab = SHORT.get(r["id"], r["measure"])
        if isinstance(lab, list):
            i = seen.get(r["id"], 0)
            seen[r["id"]] = i + 1
            lab = lab[min(i, len(lab) - 1)]
        r["short"] = lab


def build_rows(res, args):
    rows = []
    if "p1" in res:
        p = res["p1"]
        m = p["median"]
        ratio = m["redlease"] / m["hiredis"]
        ok = ratio <= 1.15
        rows.append(_row(
            "P1", "uncontended acquire+release (per cycle, median of %d rounds)" % p["rounds"],
            {k: _us(m[k]) for k in COLS}, "%.2f× hiredis" % ratio, "≤ 1.15× hiredis", ok,
            ("median of the per-round ratios %.2f" % p["paired_ratio"])
            + ("; %d acquires were refused (key not free?)" % p["refused"] if p["refused"] else "")
            + ("" if ok else
            "; what limits it: each redlease command goes from the calling thread to the engine "
            "thread and its reply back (wake-ups both ways, GIL released and re-taken), and the "
            "lease's acquired/released events go to the Python dispatcher thread, which takes "
            "the GIL; the bare loop writes and reads one socket on one thread")))
    if "p2" in res:
        p = res["p2"]
        speed = p["redispy_ns"] / p["redlease_ns"]
        ok = speed >= 500 and p["redlease_ns"] <= 100
        rows.append(_row(
            "P2", '"do I still hold it?" (per check; `lock.owned` vs `Lock.owned()`)',
            {"redlease": _ns(p["redlease_ns"]), "redispy": _ns(p["redispy_ns"])},
            "%s× faster" % _int(speed), "≥ 500× and ≤ 100 ns", ok,
            "timeit, best of 5; includes the %.0f ns of timeit's own loop; redis-py's "
            "owned() is a GET round trip" % p["empty_ns"]))
    if "p3" in res:
        p = res["p3"]
        rl, pr = p["redlease"], p.get("prl")
        ns = ", ".join("%s %d" % (HEAD[k], v["n"]) for k, v in p.items())
        cols50 = {k: _ms(v["p50"]) for k, v in p.items()}
        cols99 = {k: _ms(v["p99"]) for k, v in p.items()}
        ok50 = pr is not None and rl["p50"] <= pr["p50"]
        ok99 = rl["p99"] <= 1.0
        rows.append(_row(
            "P3", "graceful handover to a waiter in another process, p50 (handovers: %s)" % ns,
            cols50,
            ("%.2f× python-redis-lock" % (rl["p50"] / pr["p50"])) if pr else "",
            "≤ python-redis-lock", ok50,
            "" if ok50 else
            "the redlease waiter learns of the release from a pub/sub message to its engine "
            "thread, then sends a new acquire and wakes the caller; python-redis-lock's "
            "BLPOP wakes the waiting thread directly, then it sends SET NX"))
        rows.append(_row(
            "P3", "graceful handover, p99 (max: %s)" % ", ".join(
                "%s %s" % (HEAD[k], _ms(v["max"])) for k, v in p.items()),
            cols99, "", "redlease ≤ 1 ms", ok99,
            "" if ok99 else
            "what limits it: the tail is scheduling delay of the holder, the waiter and "
            "redis-server on a shared, loaded 2-core machine; python-redis-lock's tail in the "
            "same run is %s" % (_ms(pr["p99"]) if pr else "?")))
    if "p4" in res:
        p = res["p4"]
        rl, pr = p["redlease"], p.get("prl")
        ok = rl["median"] <= 20
        rows.append(_row(
            "P4", "crash failover: key expiry → waiter holds it (median of %d, ttl 1 s)"
            % rl["n"], {k: _ms(v["median"]) for k, v in p.items()},
            ("%s× sooner" % _int(pr["median"] / max(rl["median"], 1e-3))) if pr else "",
            "redlease ≤ 20 ms", ok,
            "python-redis-lock waits on BLPOP with timeout=expire (1 s) and only retries "
            "SET NX when it times out; redlease retries at the holder's PTTL"))
    if "p5" in res:
        p = res["p5"]
        rl, pr = p["redlease"], p.get("prl")
        cols = {}
        for k in ("redlease", "prl"):
            if k in p:
                v = p[k]
                cols[k] = "%d of %d" % (v["thefts"], v["trials"])
        hogs = rl["hog_s"] + (pr["hog_s"] if pr else [])
        note = "the holder was stuck %.1f–%.1f s in one regex call (N=%s) with ttl 1 s; " \
               "another process tried every 50 ms" % (
                   min(hogs), max(hogs), "/".join(map(str, sorted(set(p["n"])))))
        if pr and pr["stolen_at"]:
            note += "; python-redis-lock's renewal thread needs the GIL: stolen %.1f s " \
                    "into the hog" % min(pr["stolen_at"])
        if rl["thefts"]:
            note += "; redlease stolen %.1f s into the hog" % min(rl["stolen_at"])
        rows.append(_row("P5", "thefts while the holder holds the GIL (runs with a theft)",
                         cols, "", "redlease 0", rl["thefts"] == 0, note))
    if "p6" in res:
        p = res["p6"]
        rl, pr = p["redlease"], p.get("prl")

        def threads(v):
            return "%s (OS %s) @ %s" % (_int(v["threads_py"]), _int(v["threads_os"]),
                                        _int(v["count"]))
        rows.append(_row(
            "P6", "threads with N held auto-renewed locks (`threading.active_count()`, OS "
                  "threads from /proc)",
            {k: threads(v) for k, v in p.items()}, "", DASH, None,
            ("python-redis-lock measured at %s locks, with one renewal thread each: 10,000 "
             "Python threads are too many for this 2-core machine (tried by hand with "
             "--many-prl 10000: after 17 s only 8,500 were acquired and renewals of the first "
             "ones were already failing)" % _int(pr["count"]))
            if pr and pr["count"] < rl["count"] else ""))
        rows.append(_row(
            "P6", "RSS growth per held lock",
            {k: "%s B" % _int(v["rss_per_lease"]) for k, v in p.items()}, "", DASH, None, ""))
        rows.append(_row(
            "P6", "renewal CPU, % of one core (ttl 10 s; main thread asleep)",
            {k: "%.2f %% @ %s over %.0f s" % (v["cpu"]["pct"], _int(v["count"]),
                                               v["cpu"]["wall_s"]) for k, v in p.items()},
            "", DASH, None,
            "redlease: %s renewals/s on %d connection(s); redis-server used %.1f %% of a core; "
            "%s of %s still held at the end%s" % (
                _int(rl["cpu"].get("commands_per_s", 0)),
                rl.get("engine", {}).get("connections", 0), rl["server_pct"],
                _int(rl["cpu"]["owned"]), _int(rl["count"]),
                ("; python-redis-lock: %s of %s" % (_int(pr["cpu"]["owned"]), _int(pr["count"])))
                if pr else "")))
    if "p7" in res:
        p = res["p7"]
        m = p["median"]
        ratio = m["redlease"] / m["redispy"]
        ok = ratio >= 2.0
        rows.append(_row(
            "P7", "%d threads, distinct keys, %.0f s: aggregate cycles/s (median of %d)"
            % (p["threads"], p["seconds"], len(p["samples"]["redlease"])),
            {k: "%s/s" % _int(v) for k, v in m.items()}, "%.2f× redis-py" % ratio,
            "≥ 2× redis-py", ok,
            "" if ok else
            "what limits it: the 8 threads' commands share the engine thread and its "
            "connection, but every command still costs the same cross-thread wake-ups as in "
            "P1, and the 8 threads, the engine thread and redis-server share 2 cores"))
    _short(rows)
    return rows


def _met(v):
    return {True: "met", False: "NOT MET", None: DASH}[v]


def _machine_lines(info):
    lo = info["load"]
    v = info["versions"]
    return [
        "%s; %s CPU(s), %s; load average at start %.2f %.2f %.2f; Linux %s"
        % (info["date"], info["nproc"], info["cpu"], lo[0], lo[1], lo[2], info["kernel"]),
        "Python %s, redis-server %s (loopback TCP), hiredis %s; redlease %s, redis-py %s, "
        "python-redis-lock %s, pottery %s; run took %.0f s%s"
        % (info["python"], info["redis_server"], info["hiredis"], v.get("redlease"),
           v.get("redis"), v.get("python-redis-lock"), v.get("pottery"),
           info.get("elapsed_s", 0), " (--quick smoke run)" if info.get("quick") else ""),
    ]


def render_text(rows, info):
    headers = ["#", "measurement"] + [HEAD[c] for c in COLS] + ["ratio", "target", "result"]
    body = []
    for r in rows:
        body.append([r["id"], r["short"]] + [r["cols"].get(c, DASH) for c in COLS]
                    + [r["ratio"] or DASH, r["target"], _met(r["met"])])
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    out = []
    out.extend(_machine_lines(info))
    out.append("")

    def line(cells):
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    out.append(line(headers))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(b) for b in body)
    notes = [(r["id"], r["note"]) for r in rows if r["note"]]
    if notes:
        out.append("")
        out.extend("%s: %s" % n for n in notes)
    return "\n".join(out)


def _md_escape(s):
    return s.replace("|", "\\|")


def md_table(rows):
    headers = ["#", "measurement"] + [HEAD[c] for c in COLS] + ["ratio", "target", "result"]
    out = ["| " + " | ".join(headers) + " |",
           "|" + "|".join([" --- "] * 2 + [" ---: "] * len(COLS) + [" --- "] * 3) + "|"]
    for r in rows:
        met = _met(r["met"])
        if r["met"] is False:
            met = "**NOT MET**"
        cells = [r["id"], _md_escape(r["measure"])] + \
            [_md_escape(r["cols"].get(c, DASH)) for c in COLS] + \
            [r["ratio"] or DASH, r["target"], met]
        out.append("| " + " | ".join(cells) + " |")
    notes = [(r["id"], r["note"]) for r in rows if r["note"]]
    if notes:
        out.append("")
        out.extend("* %s: %s" % n for n in notes)
    return "\n".join(out)


def render_md(rows, info):
    m = _machine_lines(info)
    return "\n".join([
        "# redlease vs its peers",
        "",
        "Measured by `bash scripts/bench_peers.sh` (`bench/bench_peers.py`): every row side by "
        "side in one run, against a throwaway redis-server on loopback. A shared, noisy "
        "machine: compare within a row, not across runs.",
        "",
        "* " + m[0],
        "* " + m[1],
        "",
        md_table(rows),
        "",
        "What each row does:",
        "",
        "* P1: `lock.acquire(); lock.release()` in a loop on one key, nobody else "
        "contending. Bare hiredis is `bench/hiredis_loop.c`: the same acquire and release "
        "Lua scripts (`redlease._redlease.SCRIPTS`) by EVALSHA on one synchronous "
        "connection. redis-py `Lock`, python-redis-lock `redis_lock.Lock`, pottery "
        "`Redlock` with one master.",
        "* P2: `timeit` of `lock.owned` (a memory read) against redis-py's `Lock.owned()` "
        "(a GET round trip), both while holding the lock.",
        "* P3: a holder process releases at `t` (`time.monotonic()` just before "
        "`release()`); a waiter process blocked in `acquire()` records when it returns. "
        "CLOCK_MONOTONIC is system-wide on Linux, so the two are comparable. redis-py polls "
        "every 0.1 s (its default `sleep`), hence fewer handovers.",
        "* P4: the holder (ttl 1 s, auto renewal) is SIGKILLed; PTTL read right after the "
        "kill gives the key's expiry; the waiter (another process, blocked in `acquire()`) "
        "records when it holds the lock. python-redis-lock: `expire=1, auto_renewal=True`.",
        "* P5: the holder (ttl 1 s, auto renewal) runs `re.match(r'(a+)+$', 'a'*N + 'b')`, "
        "one C call that keeps the GIL for ~3 s; another process tries a non-blocking "
        "acquire every 50 ms until half a second after the regex ends. The holder releases "
        "only after that, so any success is a theft.",
        "* P6: N locks acquired and held in one process (ttl 10 s, auto renewal), then the "
        "main thread sleeps while CPU time (`time.process_time()`) is measured. RSS from "
        "/proc/self/status, after a warm-up lock. python-redis-lock uses one client with a "
        "`BlockingConnectionPool(50)` (the default pool of 100 runs out with many renewal "
        "threads).",
        "* P7: each of 8 threads acquires/releases its own key as fast as it can: one "
        "`redlease.Lock` per thread, against redis-py `Lock`s on one client (one shared "
        "connection pool). Fresh process per run.",
        "",
        "![chart](peers.png)",
        "",
    ])


# ------------------------------------------------------------------ chart
def render_png(res, rows, info, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colors = {"redlease": "#c0392b", "hiredis": "#7f8c8d", "redispy": "#2980b9",
              "prl": "#27ae60", "pottery": "#8e44ad"}
    short = {"redlease": "redlease", "hiredis": "hiredis C", "redispy": "redis-py",
             "prl": "py-redis-lock", "pottery": "pottery"}
    panels = []
    if "p1" in res:
        panels.append(("P1 acquire+release (µs/cycle)", res["p1"]["median"], True,
                       res["p1"]["median"]["hiredis"] * 1.15))
    if "p2" in res:
        p = res["p2"]
        panels.append(("P2 'still own it?' check (ns)",
                       {"redlease": p["redlease_ns"], "redispy": p["redispy_ns"]}, True, 100))
    if "p3" in res:
        panels.append(("P3 handover p50 (ms)", {k: v["p50"] for k, v in res["p3"].items()},
                       True, res["p3"].get("prl", {}).get("p50")))
        panels.append(("P3 handover p99 (ms)", {k: v["p99"] for k, v in res["p3"].items()},
                       True, 1.0))
    if "p4" in res:
        panels.append(("P4 failover after expiry (ms)",
                       {k: max(v["median"], 0.01) for k, v in res["p4"].items()}, True, 20))
    if "p5" in res:
        panels.append(("P5 thefts during GIL hog (runs)",
                       {k: res["p5"][k]["thefts"] for k in ("redlease", "prl")
                        if k in res["p5"]}, False, None))
    if "p6" in res:
        panels.append(("P6 threads (redlease @%s, py-redis-lock @%s)" % (
            _int(res["p6"]["redlease"]["count"]),
            _int(res["p6"].get("prl", {}).get("count", 0))),
            {k: v["threads_os"] for k, v in res["p6"].items()}, True, None))
    if "p7" in res:
        panels.append(("P7 8 threads, cycles/s", res["p7"]["median"], False,
                       2 * res["p7"]["median"]["redispy"]))
    n = len(panels)
    if not n:
        return False
    ncol = min(4, n)
    nrow = int(math.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (title, data, logy, target) in zip(axes.flat, panels):
        keys = [k for k in COLS if k in data]
        vals = [data[k] for k in keys]
        bars = ax.bar(range(len(keys)), vals, color=[colors[k] for k in keys])
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels([short[k] for k in keys], rotation=25, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
        top = max(vals + [target or 0])
        if logy and min(vals) > 0:
            ax.set_yscale("log")
            ax.set_ylim(min(vals + [target or top]) / 3, top * 3)
        else:
            ax.set_ylim(0, max(top * 1.15, 1))
            if title.startswith("P5"):
                ax.set_yticks(range(int(top) + 1))
        if target is not None:
            ax.axhline(target, color="k", ls="--", lw=0.8)
            ax.text(-0.45, target, "target", va="bottom", ha="left", fontsize=7)
        for b, v in zip(bars, vals):
            label = ("%.3g" % v) if v < 1000 else _int(v)
            ax.annotate(label, (b.get_x() + b.get_width() / 2, v if v > 0 else 0),
                        ha="center", va="bottom", fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("redlease vs peers (%s, %s CPU(s), load %.2f at start)"
                 % (info["date"], info["nproc"], info["load"][0]), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


# ----------------------------------------------------------------- README
START = "<!-- peers-table:start -->"
END = "<!-- peers-table:end -->"


def update_readme(path, rows, info):
    """Replace the text between the markers, only inside "## Benchmarks"."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    sec = re.search(r"^## Benchmarks\s*$", text, re.M)
    if not sec:
        return False
    nxt = re.search(r"^## ", text[sec.end():], re.M)
    sec_end = sec.end() + (nxt.start() if nxt else len(text) - sec.end())
    i, j = text.find(START, sec.end(), sec_end), text.find(END, sec.end(), sec_end)
    if i < 0 or j < i:
        return False
    m = _machine_lines(info)
    block = "\n".join([
        START,
        "_Latest run: %s_" % m[0],
        "",
        md_table(rows),
        END])
    new = text[:i] + block + text[j + len(END):]
    if new != text:
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(new)
        os.replace(tmp, path)
    return True
