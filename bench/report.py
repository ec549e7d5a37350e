"""The benchmark report: bench/report.md and its PNG plots, from bench/results/*.json.

    python -m bench.report [--results DIR] [--out DIR] [--since EPOCH] [--require all|1,2,...]

Six figures redraw the reference's figures 9 to 12 (and the gateway and failover figures it does
not have) from our measurements, next to the reference's numbers and next to baselines measured in
the same run. Every figure says what was measured, on which machine, how many samples, and what is
simulated. A figure whose input is missing says so and draws nothing: no number here is made up.

`--since`: inputs written before this time (a file's mtime) are from an earlier run: still shown,
marked stale. `--require`: exit 1 when one of these figures is missing or stale (`make bench`
requires all six after a full run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
MHZ = 250
NS_PER_CYCLE = 1000 / MHZ
FIGURE_DIR = "figures"  # beside report.md
INPUTS = ("engine", "hdl", "sweeps", "baselines", "gateway", "gateway_sim", "fix", "failover", "machine")

# The reference's figures (reference/riskcop.md), in the units they give.
REF_ORDER_US = (2.0, 2.5)  # order check, 1,000 to 1,000,000 orders per account
REF_FLOWS_US = (2.0, 2.7)  # all eight flows
REF_JITTER_NS = 100  # max - min within a flow at 1,000,000 orders
REF_RULES_NS = 100  # 4 -> 128 rules
REF_NESTING_NS = 50  # nesting 2 -> 20
REF_SAMPLES = 2000  # each of their figures: the mean of 2,000 measurements

SIMULATED = (
    f"DOE figures are Verilator cycle counts of the RTL: exact for the design, cycle by cycle. "
    f"Nanoseconds are cycles x {NS_PER_CYCLE:g} ns, i.e. they assume a {MHZ} MHz clock: the design has "
    f"not been shown to close timing at {MHZ} MHz on a U200, so they are not a claim about a real card. "
    "The DOE latency is the engine alone (event accepted to decision valid), with no TOE, parsing or "
    "PCIe; the reference's figures include its card's input and output conversion."
)


SIM_NOTE = (
    "Simulated: the DOE's cycle counts are exact for the RTL (Verilator); its nanoseconds assume "
    f"{MHZ} MHz and are not a claim about a real card."
)


@dataclass
class Input:
    name: str
    path: Path
    data: dict[str, Any] | None = None
    problem: str = ""  # why data is None
    stale: bool = False
    written: str = ""


@dataclass
class Section:
    number: int
    title: str
    inputs: tuple[str, ...]
    body: list[str] = field(default_factory=list)
    png: str | None = None
    missing: list[str] = field(default_factory=list)  # inputs that are absent or unreadable
    stale: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)  # parts of the figure not measured in this run

    @property
    def complete(self) -> bool:
        return not self.missing and not self.stale


def load_inputs(results: Path, since: float | None) -> dict[str, Input]:
    out: dict[str, Input] = {}
    for name in INPUTS:
        path = results / f"{name}.json"
        inp = Input(name, path)
        if not path.exists():
            inp.problem = f"`{path.name}` is missing"
        else:
            mtime = path.stat().st_mtime
            inp.written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(mtime))
            inp.stale = since is not None and mtime < since
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(loaded, dict):
                    raise ValueError("not a JSON object")
                inp.data = loaded
            except (OSError, ValueError) as exc:
                inp.problem = f"`{path.name}` is unreadable ({exc})"
        out[name] = inp
    return out


# --- small helpers -------------------------------------------------------------------------------


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def fmt(x: Any, digits: int = 1) -> str:
    v = _num(x)
    if v is None:
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def ratio(a: Any, b: Any) -> str:
    va, vb = _num(a), _num(b)
    if va is None or vb is None or vb == 0:
        return "n/a"
    r = va / vb
    return f"{r:,.0f}x" if r >= 100 else f"{r:.1f}x"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _levels(d: dict[str, Any]) -> list[int]:
    return sorted(int(k) for k in d)


def _history(level: dict[str, Any]) -> bool:
    """An engine level built in bulk (bench/history.py) rather than replayed whole."""
    return level.get("method") == "history" and isinstance(level.get("history"), dict)


def _cycles(flow: dict[str, Any], stat: str = "median") -> float | None:
    return _num(flow.get("latency_cycles", {}).get(stat))


class Plotter:
    """matplotlib, imported only when a figure is drawn (the bench extra installs it)."""

    def __init__(self, out_dir: Path, draw: bool = True) -> None:
        self.out_dir = out_dir
        self.error = ""
        if not draw:
            self.plt: Any = None
            self.error = "plots were not asked for (--no-plots)"
            return
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            self.plt = plt
        except ImportError:
            self.plt = None
            self.error = "matplotlib is not installed (the `bench` extra; `make bench` installs it)"

    def save(self, fig: Any, name: str, footnote: str) -> str:
        fig.text(0.01, 0.005, footnote, fontsize=6.5, color="0.35", ha="left", va="bottom", wrap=True)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        (self.out_dir / FIGURE_DIR).mkdir(parents=True, exist_ok=True)
        fig.savefig(self.out_dir / FIGURE_DIR / name, dpi=110)
        self.plt.close(fig)
        return f"{FIGURE_DIR}/{name}"


# --- the machine ---------------------------------------------------------------------------------


def machine_facts(inputs: dict[str, Input]) -> dict[str, Any]:
    m = inputs["machine"].data or {}
    hdl = (inputs["hdl"].data or {}).get("machine", {})
    cpu = m.get("cpu") or hdl.get("cpu") or platform.processor() or "unknown CPU"
    cores = m.get("cores") or hdl.get("cores") or os.cpu_count()
    return {"cpu": cpu, "cores": cores, "steps": m.get("steps", {}), "recorded": bool(m)}


def load_note(facts: dict[str, Any], bench: str) -> str:
    step = facts["steps"].get(bench)
    if not step:
        return "load average not recorded for this step"
    before, after = step.get("load_before"), step.get("load_after")
    b = "/".join(f"{x:.1f}" for x in before) if before else "?"
    a = "/".join(f"{x:.1f}" for x in after) if after else "?"
    return f"load average (1/5/15 min) {b} before, {a} after; {fmt(step.get('seconds'), 0)} s"


def machine_line(facts: dict[str, Any], *benches: str) -> str:
    loads = "; ".join(f"{b}: {load_note(facts, b)}" for b in benches)
    return f"Machine: {facts['cpu']}, {facts['cores']} cores, shared with other jobs ({loads})."


# --- figures -------------------------------------------------------------------------------------


def fig_orders(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    hdl = inputs["hdl"].data
    eng = inputs["engine"].data
    base = inputs["baselines"].data
    doe: dict[int, tuple[float | None, float | None]] = {}
    if hdl:
        for n, size in (hdl.get("flows_by_table_rows") or {}).items():
            flows = size.get("flows", {})
            orders = [_cycles(flows[f]) for f in ("buy order", "sell order") if f in flows]
            worst = [_cycles(f) for f in flows.values()]
            doe[int(n)] = (
                max((c for c in orders if c is not None), default=None),
                max((c for c in worst if c is not None), default=None),
            )
        skipped = hdl.get("sizes_skipped") or []
        if skipped:
            why = (
                "a quick run" if hdl.get("quick") else hdl.get("why_sizes_are_skipped", "no reason recorded")
            )
            s.gaps.append(
                f"DOE not simulated at {', '.join(f'{n:,}' for n in skipped)} orders per account in this "
                f"run: {why}."
            )
    sw: dict[int, dict[str, Any]] = {}
    if eng:
        for n in _levels(eng.get("levels", {})):
            sw[n] = eng["levels"][str(n)]
    levels = sorted(set(doe) | set(sw))
    rows = []
    for n in levels:
        d_order, d_worst = doe.get(n, (None, None))
        lv = sw.get(n, {})
        nat = lv.get("engine_native", {}).get("all", {})
        fast = lv.get("engine", {}).get("all", {})
        sq = lv.get("sqlite", {}).get("all", {})
        d_ns = d_order * NS_PER_CYCLE if d_order is not None else None
        rows.append(
            [
                f"{n:,}",
                f"{fmt(d_order, 0)} / {fmt(d_ns, 0)}",
                f"{fmt(d_worst, 0)} / {fmt(d_worst * NS_PER_CYCLE if d_worst is not None else None, 0)}",
                f"{fmt(nat.get('p50_us'))} / {fmt(nat.get('p99_us'))}",
                fmt(fast.get("p50_us")),
                fmt(sq.get("p50_us")) if sq else "not run",
                ratio(REF_ORDER_US[0] * 1000, d_ns),
                ratio(_num(nat.get("p50_us")) and nat["p50_us"] * 1000, d_ns),
                ratio(sq.get("p50_us"), nat.get("p50_us")),
            ]
        )
    s.body.append(
        "What: the latency of one event against the number of orders per account (rows in "
        "`order_info`), on the reference scenario (20 accounts, 2048 securities, 1024 holdings per "
        "account; rules/00_schema, 10_funds, 20_holdings, 30_self_trade, 90_flows). DOE: median cycles "
        "of the order flows (the slower of buy and sell order) and of the slowest of its flows. Software "
        "engine: wall time per event over the recorded session (all eight flows), p50 / p99, "
        "native (generated C) and fast (generated Python) backends. SQLite: the same events through "
        "indexed tables, rules as queries, flows as triggers. Reference: their order check, 2 to 2.5 µs."
    )
    if hdl:
        per = {n: hdl["flows_by_table_rows"][str(n)].get("flows", {}) for n in doe}
        samples = sorted({f.get("samples") for fl in per.values() for f in fl.values() if f.get("samples")})
        s.body.append(f"DOE samples: {', '.join(map(str, samples)) or 'n/a'} per flow and size.")
    if eng:
        ev = ", ".join(
            f"{n:,}: {sw[n].get('events', 0):,} events" + (" (on a bulk history)" if _history(sw[n]) else "")
            for n in sw
        )
        s.body.append(f"Software samples: every event of the session timed ({ev}).")
        built = [n for n in sw if _history(sw[n])]
        if built:
            h = sw[built[0]]["history"]
            sizes = ", ".join(f"{n:,}" for n in built)
            held = ", ".join(f"{sw[n]['history'].get('order_info_history_rows', 0):,}" for n in built)
            s.body.append(
                f"At {sizes} orders per account the session is not replayed "
                f"whole: order_info is filled in bulk with the finished orders such a session leaves "
                f"({held} rows, {h.get('order_info_rows_per_order_sent', 'n/a')} per order sent, as in "
                "the sample), through "
                "the engine's table API and SQLite's executemany, and a real session of "
                f"{h.get('sample_orders_per_account', 'n/a'):,} orders per account is replayed and timed on "
                "top of it (bench/history.py). Every other table holds the same rows at any session length."
            )
        if "1000000" not in eng.get("levels", {}):
            s.gaps.append("The software engine was not run at 1,000,000 orders per account in this run.")
    s.body += [machine_line(facts, "engine", "hdl"), SIM_NOTE]
    s.body += [
        "",
        *table(
            [
                "orders/account",
                "DOE order cycles / ns",
                "DOE slowest flow cycles / ns",
                "native p50 / p99 µs",
                "fast p50 µs",
                "SQLite p50 µs",
                "reference 2 µs ÷ DOE",
                "native ÷ DOE",
                "SQLite ÷ native",
            ],
            rows,
        ),
    ]
    flat = [(n, doe[n][0]) for n in sorted(doe) if doe[n][0] is not None]
    if len(flat) >= 2:
        s.body.append(
            f"\nDOE growth from {flat[0][0]:,} to {flat[-1][0]:,} orders per account: "
            f"{fmt((flat[-1][1] or 0) - (flat[0][1] or 0), 0)} cycles "
            "(the reference: from about 2 to under 2.5 µs)."
        )
    nat_lv = [
        (n, sw[n]["engine_native"]["all"]["p50_us"]) for n in sw if "all" in sw[n].get("engine_native", {})
    ]
    if len(nat_lv) >= 2:
        s.body.append(
            f"Software engine (native) p50 from {nat_lv[0][0]:,} to {nat_lv[-1][0]:,}: "
            f"{ratio(nat_lv[-1][1], nat_lv[0][1])} of its value at the smallest level."
        )
    if plot.plt is None or not levels:
        return
    plt = plot.plt
    fig, ax = plt.subplots(figsize=(10, 4.8))
    ax.axhspan(REF_ORDER_US[0], REF_ORDER_US[1], color="tab:red", alpha=0.15, label="reference: 2 to 2.5 µs")

    def series(xs: list[int], ys: list[float | None], label: str, **kw: Any) -> None:
        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label, **kw)

    dl = sorted(doe)
    series(
        dl,
        [c * NS_PER_CYCLE / 1000 if c else None for c, _ in (doe[n] for n in dl)],
        "DOE order check (Verilator, ns at 250 MHz)",
        color="tab:blue",
    )
    series(
        dl,
        [c * NS_PER_CYCLE / 1000 if c else None for _, c in (doe[n] for n in dl)],
        "DOE slowest flow",
        color="tab:blue",
        linestyle="--",
    )
    sl = sorted(sw)
    for key, label, style in (
        ("engine_native", "software engine, native", {"color": "tab:green"}),
        ("engine", "software engine, fast path", {"color": "tab:olive"}),
        ("sqlite", "SQLite, indexed", {"color": "tab:gray"}),
    ):
        series(sl, [sw[n].get(key, {}).get("all", {}).get("p50_us") for n in sl], f"{label} p50", **style)
        if key == "engine_native":
            series(
                sl,
                [sw[n].get(key, {}).get("all", {}).get("p99_us") for n in sl],
                f"{label} p99",
                linestyle=":",
                **style,
            )
    if base:
        bl = sorted(int(n) for n in base.get("levels", {}))
        series(
            bl,
            [base["levels"][str(n)].get("openpit", {}).get("all", {}).get("p50_us") for n in bl],
            "openpit p50 (funds + holdings only)",
            color="tab:purple",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("orders per account")
    ax.set_ylabel("latency per event (µs, log)")
    ax.set_title("1. Latency against orders per account")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ax.grid(True, which="both", alpha=0.3)
    s.png = plot.save(
        fig,
        "fig1_orders.png",
        f"{facts['cpu']}, {facts['cores']} cores, shared. DOE: Verilator cycles x 4 ns (250 MHz assumed).",
    )


def _pick_size(sizes: dict[str, Any], want: int) -> tuple[int | None, str]:
    if not sizes:
        return None, ""
    if str(want) in sizes:
        return want, ""
    largest = max(int(n) for n in sizes)
    return largest, f"not measured at {want:,} in this run; the largest measured, {largest:,}, is shown"


def fig_flows(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    hdl = inputs["hdl"].data
    eng = inputs["engine"].data
    s.body.append(
        "What: each flow's latency and jitter at 1,000,000 orders per account. DOE: cycles per flow, "
        "min / median / max, jitter = max - min (the reference's measure: within 100 ns). Software "
        "engine (native backend): wall time per event per flow, p50 / p99 / max, and p99 - p50 "
        "(the engine runs on a shared time-sliced CPU, so its max is the scheduler's, not the engine's). "
        "The DOE's flows are the reference's eight (an order, the update after accepting it, fill and "
        "reject updates, each for buys and sells); the software session's are order, fill, exchange "
        "reject and cancel for buys and sells."
    )
    drew: list[tuple[str, list[str], list[float], list[float], list[float]]] = []
    if hdl:
        n, note = _pick_size(hdl.get("flows_by_table_rows") or {}, 1_000_000)
        if note:
            s.gaps.append(f"DOE {note}.")
        if n is not None:
            flows = hdl["flows_by_table_rows"][str(n)].get("flows", {})
            rows = []
            for name, f in flows.items():
                lo, med, hi = _cycles(f, "min"), _cycles(f, "median"), _cycles(f, "max")
                jit = (hi - lo) if hi is not None and lo is not None else None
                rows.append(
                    [
                        name,
                        str(f.get("samples", "n/a")),
                        f"{fmt(lo, 0)} / {fmt(med, 0)} / {fmt(hi, 0)}",
                        fmt(med * NS_PER_CYCLE if med is not None else None, 0),
                        f"{fmt(jit, 0)} / {fmt(jit * NS_PER_CYCLE if jit is not None else None, 0)}",
                        ratio(REF_JITTER_NS, jit * NS_PER_CYCLE) if jit else "jitter 0",
                        fmt((f.get("busy_cycles") or {}).get("median"), 0),
                    ]
                )
            size = hdl["flows_by_table_rows"][str(n)]
            s.body += [
                "",
                f"DOE at {n:,} orders per account (table rows: "
                + ", ".join(f"{k} {v:,}" for k, v in (size.get("table_rows") or {}).items())
                + "):",
                "",
                *table(
                    [
                        "flow",
                        "samples",
                        "cycles min / median / max",
                        "median ns",
                        "jitter cycles / ns",
                        "reference 100 ns ÷ jitter",
                        "busy cycles (median)",
                    ],
                    rows,
                ),
                "Busy: cycles until the DOE takes its next event. An accepted order's decision leaves "
                "when its checks end; the update after accepting it (its ACCEPT section) runs after "
                "that, within the busy cycles.",
                "Jitter over all flows (slowest median - fastest): "
                f"{size.get('jitter_over_all_flows_cycles', 'n/a')} cycles; the largest within one flow: "
                f"{size.get('max_jitter_within_a_flow_cycles', 'n/a')} cycles.",
            ]
            names = list(flows)
            meds = [(_cycles(flows[k]) or 0) * NS_PER_CYCLE for k in names]
            los = [
                m - (_cycles(flows[k], "min") or 0) * NS_PER_CYCLE for m, k in zip(meds, names, strict=True)
            ]
            his = [
                (_cycles(flows[k], "max") or 0) * NS_PER_CYCLE - m for m, k in zip(meds, names, strict=True)
            ]
            drew.append((f"DOE at {n:,} rows: median ns (bars: min..max)", names, meds, los, his))
    if eng:
        n, note = _pick_size(eng.get("levels") or {}, 1_000_000)
        if note:
            s.gaps.append(f"Software engine {note}.")
        if n is not None:
            lv = eng["levels"][str(n)]
            key = "engine_native" if "flows" in lv.get("engine_native", {}) else "engine"
            flows = lv.get(key, {}).get("flows", {})
            rows = [
                [
                    name,
                    f"{f.get('n', 0):,}",
                    fmt(f.get("p50_us"), 2),
                    fmt(f.get("p99_us"), 2),
                    fmt(f.get("max_us"), 0),
                    fmt((_num(f.get("p99_us")) or 0) - (_num(f.get("p50_us")) or 0), 2),
                ]
                for name, f in flows.items()
            ]
            s.body += [
                "",
                f"Software engine ({lv.get(key, {}).get('backend', key)}) at {n:,} orders per account, "
                + (
                    "every event of a sample session replayed on top of the order history built in bulk "
                    f"({lv['history'].get('order_info_history_rows', 0):,} order_info rows; see figure 1):"
                    if _history(lv)
                    else "every event of the session:"
                ),
                "",
                *table(["flow", "events", "p50 µs", "p99 µs", "max µs", "p99 - p50 µs"], rows),
            ]
            names = list(flows)
            drew.append(
                (
                    f"software engine at {n:,}/account: p50 µs (bars: up to p99)",
                    names,
                    [flows[k].get("p50_us", 0) for k in names],
                    [0.0] * len(names),
                    [flows[k].get("p99_us", 0) - flows[k].get("p50_us", 0) for k in names],
                )
            )
    s.body += [machine_line(facts, "engine", "hdl"), SIM_NOTE]
    s.body.append(
        f"Reference: all eight flows 2 to 2.7 µs, jitter within {REF_JITTER_NS} ns, "
        f"each the mean of {REF_SAMPLES:,} measurements."
    )
    if plot.plt is None or not drew:
        return
    fig, axes = plot.plt.subplots(1, len(drew), figsize=(6 * len(drew), 4.6), squeeze=False)
    for ax, (title, names, vals, below, above) in zip(axes[0], drew, strict=True):
        ax.bar(
            range(len(names)),
            vals,
            yerr=[below, above],
            capsize=3,
            color="tab:blue" if "DOE" in title else "tab:green",
        )
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=7)
        ax.set_title(title, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle("2. Per-flow latency and jitter")
    s.png = plot.save(
        fig,
        "fig2_flows.png",
        f"{facts['cpu']}, {facts['cores']} cores, shared. DOE: Verilator cycles x 4 ns (250 MHz assumed). "
        "Reference: 2 to 2.7 µs per flow, jitter <= 100 ns.",
    )


def _sweep(
    s: Section,
    inputs: dict[str, Input],
    facts: dict[str, Any],
    plot: Plotter,
    key: str,
    what: str,
    ref_ns: int,
    fig_no: int,
) -> None:
    hdl = inputs["hdl"].data
    s.body.append(
        f"What: the latency of a NEW order against {what}, on generated rule files "
        "(bench/hdl.py: 00_schema.sql plus the rules, over one keyed lookup, which the compiler "
        "computes once). DOE: Verilator cycles at the smallest table size. Software engine "
        "(bench/sweeps.py): wall time per call on the same rule files with the reference data set. "
        f"Reference: about +{ref_ns} ns over the same range (they give the growth only)."
    )
    soft_doc = inputs["sweeps"].data
    soft = (soft_doc or {}).get(key) or {}
    if soft_doc is None:
        s.gaps.append(f"Software engine against {what}: {inputs['sweeps'].problem}.")
    elif inputs["sweeps"].stale:
        s.gaps.append(f"Software engine against {what}: `sweeps.json` is stale ({inputs['sweeps'].written}).")
    sweep = (hdl or {}).get(key) or {}
    if hdl and not sweep:
        s.gaps.append(f"`hdl.json` has no `{key}`.")
    xs = sorted(int(k) for k in sweep)
    rows = []
    first = _cycles(sweep[str(xs[0])]) if xs else None
    for x in xs:
        c = _cycles(sweep[str(x)])
        sw = soft.get(str(x), {})
        rows.append(
            [
                str(x),
                str(sweep[str(x)].get("samples", "n/a")),
                fmt(c, 0),
                fmt(c * NS_PER_CYCLE if c is not None else None, 0),
                fmt((c - first) if c is not None and first is not None else None, 0),
                fmt((c - first) * NS_PER_CYCLE if c is not None and first is not None else None, 0),
                str(sweep[str(x)].get("new_section_bundles", "n/a")),
                f"{fmt(sw.get('p50_us'), 2)} / {fmt(sw.get('p99_us'), 2)}" if sw else "not run",
                ratio((_num(sw.get("p50_us")) or 0) * 1000, c * NS_PER_CYCLE if c else None) if sw else "n/a",
            ]
        )
    if xs:
        last = _cycles(sweep[str(xs[-1])])
        grow = (last - first) * NS_PER_CYCLE if last is not None and first is not None else None
        s.body += [
            "",
            *table(
                [
                    what,
                    "samples",
                    "median cycles",
                    "ns",
                    "+cycles",
                    "+ns",
                    "NEW-section bundles",
                    f"software p50 / p99 µs ({(soft_doc or {}).get('backend', '?')})",
                    "software ÷ DOE",
                ],
                rows,
            ),
            f"Growth {xs[0]} -> {xs[-1]}: {fmt(grow, 0)} ns at 250 MHz; the reference's: +{ref_ns} ns "
            f"(ours ÷ theirs: {ratio(grow, ref_ns)}). In absolute terms, at {xs[-1]} ours is "
            f"{fmt(last * NS_PER_CYCLE if last is not None else None, 0)} ns, the reference's order check "
            f"about {REF_ORDER_US[0]:g} µs (reference ÷ ours: "
            f"{ratio(REF_ORDER_US[0] * 1000, last * NS_PER_CYCLE if last else None)}).",
        ]
    if soft_doc:
        s.body.append(f"Software samples: {fmt(soft_doc.get('orders_per_case'), 0)} orders per point.")
    s.body += [machine_line(facts, "hdl", "sweeps"), SIM_NOTE]
    if plot.plt is None or not xs:
        return
    fig, (ax, ax2) = plot.plt.subplots(1, 2, figsize=(11, 4.4))
    sx = sorted(int(k) for k in soft)
    for stat, style in (("p50_us", "-"), ("p99_us", ":")):
        ax2.plot(
            sx,
            [soft[str(x)][stat] for x in sx],
            marker="o",
            linestyle=style,
            color="tab:green",
            label=stat[:3],
        )
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(xs)
    ax2.set_xticklabels([str(x) for x in xs])
    ax2.set_xlabel(what)
    ax2.set_ylabel("µs per order")
    ax2.set_title("software engine" if sx else "software engine: not measured", fontsize=9)
    ax2.grid(True, alpha=0.3)
    if sx:
        ax2.legend(fontsize=8)
    cyc = [_cycles(sweep[str(x)]) or 0 for x in xs]
    ax.plot(
        xs,
        [(c - cyc[0]) * NS_PER_CYCLE for c in cyc],
        marker="o",
        color="tab:blue",
        label="DOE: + ns from the first point (250 MHz)",
    )
    ax.plot(
        [xs[0], xs[-1]],
        [0, ref_ns],
        linestyle="--",
        color="tab:red",
        marker="x",
        label=f"reference: +{ref_ns} ns (endpoints only)",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel(what)
    ax.set_ylabel("added latency (ns)")
    sec = ax.secondary_yaxis("right", functions=(lambda ns: ns / NS_PER_CYCLE, lambda c: c * NS_PER_CYCLE))
    sec.set_ylabel("added cycles")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("DOE (Verilator) against the reference's growth", fontsize=9)
    fig.suptitle(f"{fig_no}. Latency against {what}")
    s.png = plot.save(
        fig,
        f"fig{fig_no}_{key.split('_')[0]}.png",
        f"{facts['cpu']}, {facts['cores']} cores, shared. Verilator cycles, exact; ns assume 250 MHz.",
    )


def fig_rules(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    _sweep(s, inputs, facts, plot, "rules_sweep", "the number of rules", REF_RULES_NS, 3)


def fig_nesting(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    _sweep(s, inputs, facts, plot, "nesting_sweep", "the nesting depth", REF_NESTING_NS, 4)


GW_PERCENTILES = ("p50", "p90", "p99", "p99_9", "max")
BUDGET_P99_US = 200.0  # DESIGN.md: soft card, p99 at 20,000 orders/s, open loop
BUDGET_RATE = 20_000


def gateway_modes(inputs: dict[str, Input]) -> list[dict[str, Any]]:
    """The binary-protocol runs of bench/gateway.py: one entry per (card, journal_sync) mode."""
    modes: list[dict[str, Any]] = []
    for name in ("gateway", "gateway_sim"):
        doc = inputs[name].data
        if doc:
            modes += [m | {"source": name} for m in doc.get("modes", []) if isinstance(m, dict)]
    return modes


def floor_lines(floor: Any, modes: list[dict[str, Any]]) -> list[str]:
    """bench/floor.py's relay in the gateway's place: the table, then what it says of the budget
    and of the gateway's own share (soft card, journal none, the same harness and rate)."""
    if not isinstance(floor, dict) or not floor.get("harnesses"):
        return ["No floor run (bench/floor.py) in these results."]
    rows, native_at_budget = [], None
    bench_runs: dict[Any, dict[str, Any]] = {}
    native_runs: dict[Any, dict[str, Any]] = {}
    for h in floor["harnesses"]:
        for r in h.get("runs", []):
            lat = r.get("latency_us", {})
            rows.append(
                [
                    str(h.get("harness", "?")),
                    fmt(r.get("rate"), 0),
                    f"{fmt(r.get('answered'), 0)} / {fmt(r.get('orders'), 0)}",
                    *(fmt(lat.get(p)) for p in GW_PERCENTILES),
                    fmt(r.get("relay_cpu_us_per_order")),
                    fmt(r.get("loadavg_1m")),
                ]
            )
            if h.get("harness") == "native" and r.get("rate") == BUDGET_RATE:
                native_at_budget = lat.get("p99")
            if h.get("harness") == "bench":
                bench_runs[r.get("rate")] = r
            if h.get("harness") == "native":
                native_runs[r.get("rate")] = r
    out = [
        "",
        "Floor (bench/floor.py): a C relay that checks nothing in the gateway's place; harness `native`: "
        "C load generator and exchange too; `bench`: this benchmark's own generator and exchange-sim.",
        "",
        *table(
            [
                "floor harness",
                "offered /s",
                "answered / sent",
                *(f"{p.replace('_', '.')} µs" for p in GW_PERCENTILES),
                "relay CPU µs/order",
                "load 1 min",
            ],
            rows,
        ),
    ]
    p99 = _num(native_at_budget)
    if p99 is not None:
        verdict = (
            "the budget is below what this machine's loopback gives three processes doing no work"
            if p99 > BUDGET_P99_US
            else f"{fmt(BUDGET_P99_US - p99)} µs of the budget are left for the gateway's own work at p99"
        )
        out.append(
            f"Floor at {BUDGET_RATE:,}/s (native harness): p99 {fmt(p99)} µs, "
            f"{ratio(p99, BUDGET_P99_US)} the budget: {verdict}."
        )
    for harness, floor_runs in (("bench", bench_runs), ("native", native_runs)):
        over = []
        for m in modes:
            if m.get("card") != "soft" or m.get("journal_sync") != "none" or _harness(m) != harness:
                continue
            for r in m.get("runs", []):
                base = floor_runs.get(r.get("rate"))
                if base is not None:
                    ours, theirs = r.get("latency_us", {}), base.get("latency_us", {})
                    over.append(
                        f"{fmt(r.get('rate'), 0)}/s p50 {ratio(ours.get('p50'), theirs.get('p50'))}, "
                        f"p99 {ratio(ours.get('p99'), theirs.get('p99'))}"
                    )
        if over:
            each = "; ".join(over)
            out.append(
                f"Gateway (soft card, journal none) ÷ floor, both with the {harness} harness, "
                f"same rate: {each}."
            )
    return out


def _harness(mode: dict[str, Any]) -> str:
    """The load generator and exchange a gateway mode ran with (results before the field: bench)."""
    return str(mode.get("harness", "bench"))


def _mode_name(mode: dict[str, Any]) -> str:
    """A gateway mode in words: its card, journal mode and, when it is not the benchmark's own, harness."""
    harness = ", C load generator and exchange" if _harness(mode) == "native" else ""
    return f"{mode.get('card')} card, journal {mode.get('journal_sync')}{harness}"


def fig_gateway(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    s.body.append(
        "What: the gateway end to end on loopback. Binary protocol (bench/gateway.py): `riskgw serve` "
        "with the example rules on the reference data set, an open-loop load generator timing each "
        "order from its intended send time to its verdict (no coordinated omission), rates stepped up "
        "until one is not held, per card and journal mode; on the soft card with journal none also with "
        "bench/floor.c's C load generator and exchange (harness `native`; the others `bench`), which "
        "leave the gateway more of the machine. FIX (bench/fix.py): a QuickFIX initiator "
        "in another process, one order at a time (closed loop), NewOrderSingle to the first "
        f"ExecutionReport. Budget (DESIGN.md): p99 <= {BUDGET_P99_US:g} µs at {BUDGET_RATE:,} "
        "orders/s with the software engine. The simulated card is the DOE in Verilator behind the "
        "card driver: far slower than a card, so its rates say nothing about a real one."
    )
    modes = gateway_modes(inputs)
    cards = {m.get("card") for m in modes}
    if inputs["gateway"].data is not None and "soft" not in cards:
        s.missing.append("no soft-card run in the gateway results")
    if "sim" not in cards:
        why = (inputs["gateway"].data or {}).get("sim_card")
        s.missing.append(
            f"no simulated-card run ({why})"
            if why
            else "no simulated-card run (`gateway_sim.json`, or a `sim` mode in `gateway.json`)"
        )
    rows = []
    for m in modes:
        for r in m.get("runs", []):
            lat = r.get("latency_us", {})
            rows.append(
                [
                    str(m.get("card", "?")),
                    str(m.get("journal_sync", "?")),
                    _harness(m),
                    fmt(r.get("rate"), 0),
                    f"{fmt(r.get('answered'), 0)} / {fmt(r.get('orders'), 0)}",
                    *(fmt(lat.get(p)) for p in GW_PERCENTILES),
                    "yes" if r.get("held") else "no",
                    fmt(r.get("loadavg_1m")),
                ]
            )
    if rows:
        s.body += [
            "",
            *table(
                [
                    "card",
                    "journal",
                    "harness",
                    "offered /s",
                    "answered / sent",
                    *(f"{p.replace('_', '.')} µs" for p in GW_PERCENTILES),
                    "held",
                    "load 1 min",
                ],
                rows,
            ),
        ]
        held = [f"{_mode_name(m)}: {fmt(m.get('highest_rate_held'), 0)} orders/s" for m in modes]
        held_ms = fmt((inputs["gateway"].data or {}).get("held_ms"), 0)
        s.body.append(
            f"Highest rate held (every order answered, the last answer and the p99 within {held_ms} ms): "
            + "; ".join(held)
            + "."
        )
        soft_at = [
            (m, r)
            for m in modes
            if m.get("card") == "soft"
            for r in m.get("runs", [])
            if r.get("rate") == BUDGET_RATE
        ]
        for m, r in soft_at:
            p99 = r.get("latency_us", {}).get("p99")
            s.body.append(
                f"Soft card at {BUDGET_RATE:,}/s (journal {m.get('journal_sync')}, {_harness(m)} harness): "
                f"p99 {fmt(p99)} µs, budget {BUDGET_P99_US:g} µs (p99 ÷ budget: {ratio(p99, BUDGET_P99_US)})."
            )
        meta = inputs["gateway"].data or {}
        s.body.append(f"Samples: every order of each rate: {fmt(meta.get('seconds_per_rate'))} s per rate.")
        s.body += floor_lines(meta.get("floor"), modes)
    fix = inputs["fix"].data
    if fix:
        s.body += [
            "",
            *table(
                ["FIX path", "orders", "warm-up", "p50 µs", "p99 µs", "max µs", "closed-loop orders/s"],
                [
                    [
                        str(fix.get("path", "FIX")),
                        fmt(fix.get("orders"), 0),
                        fmt(fix.get("warmup"), 0),
                        fmt(fix.get("p50_us")),
                        fmt(fix.get("p99_us")),
                        fmt(fix.get("max_us")),
                        fmt(fix.get("orders_per_s_closed_loop"), 0),
                    ]
                ],
            ),
        ]
        lowest = [
            r.get("latency_us", {}).get("p50")
            for m in modes
            if m.get("card") == "soft"
            for r in m.get("runs", [])[:1]
        ]
        if lowest and _num(lowest[0]) is not None:
            s.body.append(
                f"FIX p50 ÷ binary p50 (soft card, lowest rate, first journal mode): "
                f"{ratio(fix.get('p50_us'), lowest[0])} (FIX is timed closed loop, one order at a "
                "time; the binary protocol open loop at a rate: not the same load)."
            )
    s.body.append(machine_line(facts, "gateway", "fix"))
    if plot.plt is None or (not rows and not fix):
        return
    fig, axes = plot.plt.subplots(1, 2, figsize=(11, 4.6), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    for m in modes:
        runs = [r for r in m.get("runs", []) if _num(r.get("latency_us", {}).get("p99")) is not None]
        if not runs:
            continue
        label = f"{m.get('card')} / {m.get('journal_sync')}" + (
            " / C harness" if _harness(m) == "native" else ""
        )
        line = ax.plot(
            [r["rate"] for r in runs],
            [r["latency_us"]["p99"] for r in runs],
            marker="o",
            label=f"{label} p99",
        )
        ax.plot(
            [r["rate"] for r in runs],
            [r["latency_us"]["p50"] for r in runs],
            marker=".",
            linestyle=":",
            color=line[0].get_color(),
            label=f"{label} p50",
        )
    ax.axhline(BUDGET_P99_US, color="tab:red", linestyle="--", label=f"budget p99 {BUDGET_P99_US:g} µs")
    ax.axvline(BUDGET_RATE, color="tab:red", linestyle=":", alpha=0.5)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered orders/s (open loop)")
    ax.set_ylabel("latency µs (log)")
    ax.set_title("binary protocol", fontsize=9)
    ax.legend(fontsize=6)
    ax.grid(True, which="both", alpha=0.3)
    ax = axes[1]
    if fix:
        keys = [k for k in ("p50_us", "p99_us", "max_us") if _num(fix.get(k)) is not None]
        ax.bar([k[:-3] for k in keys], [fix[k] for k in keys], color="tab:cyan")
        ax.set_yscale("log")
    ax.set_title("FIX, closed loop" if fix else "FIX: not measured", fontsize=9)
    ax.set_ylabel("µs (log)")
    fig.suptitle("5. Gateway end to end")
    s.png = plot.save(
        fig,
        "fig5_gateway.png",
        f"{facts['cpu']}, {facts['cores']} cores, shared; loopback TCP. "
        "Simulated card: Verilator, slower than a real card.",
    )


def fig_failover(s: Section, inputs: dict[str, Input], facts: dict[str, Any], plot: Plotter) -> None:
    doc = inputs["failover"].data
    s.body.append(
        "What (bench/failover.py): a soak of the reference scenario through the card with its hot "
        "standby, the card killed (SIGKILL) and stalled (SIGSTOP) at random points. Failover time: "
        "from the fault's detection to the first order decided by the software engine; detection: "
        "from the signal to the driver's error or the missed heartbeat; rejoin: a new card loaded "
        "with the program and the snapshot. Lost, duplicated and wrong orders are counted against an "
        "independent software engine fed the same events."
    )
    if doc:
        fo = doc.get("failover_ms") or {}
        det = doc.get("detect_ms") or {}
        rejoin = doc.get("rejoin_s") or {}
        card = str(doc.get("card", "n/a"))
        if doc.get("sim_unavailable"):
            s.gaps.append(
                f"The simulated card could not start ({doc['sim_unavailable']}): the soak ran on the "
                "in-process software double of the card instead."
            )
        s.body += [
            "",
            *table(
                [
                    "card",
                    "events",
                    "faults (kill / stall)",
                    "failovers",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "detect kill / stall p50 ms",
                    "rejoin p50 s",
                ],
                [
                    [
                        card,
                        fmt(doc.get("events"), 0),
                        f"{fmt((doc.get('faults') or {}).get('kill'), 0)} / "
                        f"{fmt((doc.get('faults') or {}).get('stall'), 0)}",
                        fmt(doc.get("failovers", fo.get("n")), 0),
                        fmt(fo.get("p50"), 2),
                        fmt(fo.get("p99"), 2),
                        fmt(fo.get("max"), 2),
                        f"{fmt((det.get('kill') or {}).get('p50'), 1)} / "
                        f"{fmt((det.get('stall') or {}).get('p50'), 1)}",
                        fmt(rejoin.get("p50"), 2),
                    ]
                ],
            ),
            "",
            *table(
                ["orders lost", "orders duplicated", "wrong orders forwarded", "final state equal"],
                [
                    [
                        str(doc.get("lost", "n/a")),
                        str(doc.get("duplicated", "n/a")),
                        str(doc.get("wrong", "n/a")),
                        str(doc.get("state_equal", "n/a")),
                    ]
                ],
            ),
        ]
        if not fo:
            s.gaps.append("`failover.json` has no `failover_ms`.")
        s.body.append(
            f"Samples: {fmt(fo.get('n'), 0)} failovers; driver deadline {fmt(doc.get('timeout_ms'), 0)} ms."
        )
    s.body.append(machine_line(facts, "failover"))
    s.body.append("The reference gives no failover time (it plans software/hardware mutual backup).")
    if plot.plt is None or not doc or not doc.get("failover_ms"):
        return
    fo = doc["failover_ms"]
    det = doc.get("detect_ms") or {}
    fig, ax = plot.plt.subplots(figsize=(7, 4))
    bars = [(f"failover {k}", fo.get(k)) for k in ("p50", "p99", "max")]
    bars += [(f"detect {kind} p50", (det.get(kind) or {}).get("p50")) for kind in ("kill", "stall")]
    bars = [(label, v) for label, v in bars if _num(v) is not None]
    ax.bar([b[0] for b in bars], [b[1] for b in bars], color=["tab:orange"] * 3 + ["tab:gray"] * 2)
    ax.set_ylabel("ms")
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(
        f"6. Failover ({doc.get('card', '?')} card): lost {doc.get('lost', '?')}, "
        f"duplicated {doc.get('duplicated', '?')}",
        fontsize=9,
    )
    ax.grid(True, axis="y", alpha=0.3)
    s.png = plot.save(fig, "fig6_failover.png", f"{facts['cpu']}, {facts['cores']} cores, shared.")


FIGURES: tuple[
    tuple[int, str, tuple[str, ...], Callable[[Section, dict[str, Input], dict[str, Any], Plotter], None]],
    ...,
] = (
    (1, "Latency against orders per account", ("hdl", "engine"), fig_orders),
    (2, "Per-flow latency and jitter at 1,000,000 orders per account", ("hdl", "engine"), fig_flows),
    (3, "Latency against the number of rules, 4 to 128", ("hdl",), fig_rules),
    (4, "Latency against nesting depth, 2 to 20", ("hdl",), fig_nesting),
    (5, "Gateway end to end: soft and simulated card, binary and FIX", ("gateway", "fix"), fig_gateway),
    (6, "Failover time", ("failover",), fig_failover),
)


def baselines_section(inputs: dict[str, Input], facts: dict[str, Any]) -> list[str]:
    inp = inputs["baselines"]
    out = ["## Baselines: the same checks through SQLite and openpit", ""]
    if inp.data is None:
        return [*out, f"**Not measured in this run: {inp.problem}.** (bench/baselines writes it.)", ""]
    doc = inp.data
    if inp.stale:
        out.append(f"**Stale: `baselines.json` was written at {inp.written}, before this run.**\n")
    out.append(
        "The checks openpit's SpotFunds policy supports, funds for buys and holdings for sells with "
        f"frozen amounts (rules: {', '.join(doc.get('rules', []))}), on the same recorded session, "
        "through riskgw's software engine, an indexed SQLite (rules as queries, flows as triggers) "
        "and openpit. Throughput: events per CPU second, median of the runs; latency: wall time per "
        "event. Ratios are against riskgw native: the baseline's latency over ours, our throughput "
        "over the baseline's. Against the DOE: its order-check cycles at 250 MHz from figure 1 "
        "(running more rules: the three reference checks)."
    )
    out += ["", machine_line(facts, "baselines")]
    doe_ns = None
    hdl = inputs["hdl"].data
    if hdl:
        sizes = hdl.get("flows_by_table_rows") or {}
        if sizes:
            flows = sizes[str(min(int(n) for n in sizes))].get("flows", {})
            meds = [_cycles(flows[f]) for f in ("buy order", "sell order") if f in flows]
            if meds and all(m is not None for m in meds):
                doe_ns = max(m for m in meds if m is not None) * NS_PER_CYCLE
    for n, lv in sorted(doc.get("levels", {}).items(), key=lambda kv: int(kv[0])):
        rows = []
        nat = lv.get("riskgw_native", {})
        for key, label in (
            ("riskgw_native", "riskgw native"),
            ("riskgw_fast", "riskgw fast path"),
            ("sqlite", "SQLite, indexed"),
            ("openpit", f"openpit {lv.get('openpit', {}).get('version', '')}"),
        ):
            b = lv.get(key, {})
            if "all" not in b:
                rows.append([label, b.get("skipped", "not run"), "", "", "", "", "", ""])
                continue
            a = b["all"]
            rows.append(
                [
                    label,
                    f"{b.get('events_timed', a.get('n', 0)):,}",
                    fmt(b.get("cpu_events_per_s"), 0),
                    fmt(a.get("p50_us"), 2),
                    fmt(a.get("p99_us"), 2),
                    ratio(a.get("p50_us"), nat.get("all", {}).get("p50_us")),
                    ratio(nat.get("cpu_events_per_s"), b.get("cpu_events_per_s")),
                    ratio((_num(a.get("p50_us")) or 0) * 1000, doe_ns) if doe_ns else "n/a",
                ]
            )
        out += [
            "",
            f"{int(n):,} orders per account, {lv.get('events', 0):,} events, {lv.get('orders', 0):,} orders:",
            "",
            *table(
                [
                    "engine",
                    "events timed",
                    "events/CPU s",
                    "p50 µs",
                    "p99 µs",
                    "p50 ÷ riskgw native",
                    "riskgw native throughput ÷ this",
                    "p50 ÷ DOE order check",
                ],
                rows,
            ),
        ]
        agree = lv.get("verdict_agreement")
        if agree:
            out.append(
                f"\nVerdicts: openpit and riskgw agree on {agree['same_verdict']:,} of "
                f"{agree['orders']:,} orders ({agree['share'] * 100:.1f}%); only riskgw accepts "
                f"{agree['only_riskgw_accepts']:,}, only openpit {agree['only_openpit_accepts']:,}. "
                "openpit skipped "
                f"{lv['openpit'].get('skipped_reports_of_orders_openpit_rejected', 0):,} "
                f"execution reports of orders it had rejected; building its objects cost "
                f"{fmt(lv['openpit'].get('prepare_us_per_event'), 1)} µs per event, not timed."
            )
    return [*out, ""]


def render(inputs: dict[str, Input], out_dir: Path, draw: bool = True) -> tuple[str, list[Section]]:
    plot = Plotter(out_dir, draw)
    facts = machine_facts(inputs)
    sections: list[Section] = []
    for number, title, needs, figure in FIGURES:
        s = Section(number, title, needs)
        for name in needs:
            inp = inputs[name]
            if inp.data is None:
                s.missing.append(inp.problem)
            elif inp.stale:
                s.stale.append(f"`{name}.json` was written at {inp.written}, before this run")
        figure(s, inputs, facts, plot)
        sections.append(s)

    lines = [
        "# riskgw benchmark report",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/report.py` from "
        "`bench/results/*.json`. The reference is the published RISKCOP system "
        "(Alveo U200, Xeon Gold 5218R host; each of its figures the mean of 2,000 measurements).",
        "",
        "## What is simulated",
        "",
        SIMULATED,
        "",
        "## Machine",
        "",
    ]
    m = inputs["machine"].data
    if m:
        lines += [
            f"- CPU: {facts['cpu']}; {facts['cores']} cores; {m.get('memory_gb', 'n/a')} GB RAM; "
            f"{m.get('platform', '')}; Python {m.get('python', '')}",
            f"- Run: {m.get('started_utc', '?')} to {m.get('finished_utc', '?')}, "
            f"commit {m.get('git_commit', 'n/a')}, "
            f"{'quick' if m.get('quick') else 'full'} run of {', '.join(m.get('benches', []))}",
            "- The machine is shared (other people's builds and tests run at the same time): every figure "
            "is a median or a percentile of many samples, and the load average of each step is recorded:",
            "",
            *table(
                ["step", "exit", "seconds", "load before (1/5/15 min)", "load after"],
                [
                    [
                        name,
                        str(st.get("exit", "?")),
                        fmt(st.get("seconds"), 0)
                        + (
                            " (beside the others: simulated cycles)"
                            if st.get("ran_beside_the_others")
                            else ""
                        ),
                        "/".join(f"{x:.1f}" for x in st.get("load_before") or []),
                        "/".join(f"{x:.1f}" for x in st.get("load_after") or []),
                    ]
                    for name, st in facts["steps"].items()
                ],
            ),
        ]
    else:
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        lines.append(
            f"- `machine.json` is missing (the report was not run through `python -m bench.run`): "
            f"CPU {facts['cpu']}, {facts['cores']} cores; load average at report time {load}. The load "
            "during the measurements was not recorded."
        )
    if plot.error:
        lines += ["", f"**No plots drawn: {plot.error}.**"]
    lines += ["", "## Summary", ""]
    lines += table(
        ["figure", "status"],
        [[f"{s.number}. {s.title}", status(s)] for s in sections],
    )
    heads = headline(inputs)
    if heads:
        lines += ["", "Against the reference, from this run's inputs (details in each figure):", ""]
        lines += [f"- {h}" for h in heads]
    lines.append("")
    for s in sections:
        lines += [f"## Figure {s.number}. {s.title}", ""]
        for miss in s.missing:
            lines.append(f"**Missing input: {miss}; not measured in this run.**")
        for st in s.stale:
            lines.append(f"**Stale input: {st}.**")
        if s.missing or s.stale:
            lines.append("")
        if s.png:
            lines += [f"![figure {s.number}]({s.png})", ""]
        elif not s.missing:
            lines += [f"(no plot: {plot.error or 'nothing to draw'})", ""]
        lines += paragraphs(s.body)
        if s.gaps:
            lines += ["", "Not measured in this run:", *(f"- {g}" for g in s.gaps)]
        lines.append("")
    lines += baselines_section(inputs, facts)
    return "\n".join(lines).rstrip() + "\n", sections


BASELINE_NAMES = {"riskgw_fast": "riskgw's fast path", "sqlite": "SQLite", "openpit": "openpit"}


def headline(inputs: dict[str, Input]) -> list[str]:
    """A few ratios against the reference, each only when its inputs are here."""
    out: list[str] = []
    hdl = inputs["hdl"].data or {}
    sizes = hdl.get("flows_by_table_rows") or {}
    if sizes:
        n = max(int(k) for k in sizes)
        flows = sizes[str(n)].get("flows", {})
        orders = [c for c in (_cycles(flows[f]) for f in ("buy order", "sell order") if f in flows) if c]
        worst = [c for c in (_cycles(f) for f in flows.values()) if c]
        if orders and worst:
            o, w = max(orders), max(worst)
            out.append(
                f"DOE at {n:,} orders per account: order check {o:g} cycles ({o * NS_PER_CYCLE:g} ns at "
                f"{MHZ} MHz; their 2 µs ÷ ours: {ratio(REF_ORDER_US[0] * 1000, o * NS_PER_CYCLE)}); slowest "
                f"flow {w:g} cycles ({w * NS_PER_CYCLE:g} ns, "
                f"their 2.7 µs ÷ ours: {ratio(REF_FLOWS_US[1] * 1000, w * NS_PER_CYCLE)}); jitter within a "
                f"flow at most {sizes[str(n)].get('max_jitter_within_a_flow_cycles', 'n/a')} cycles "
                "(theirs: within 100 ns)."
            )
    for key, ref_ns, what in (
        ("rules_sweep", REF_RULES_NS, "4 -> 128 rules"),
        ("nesting_sweep", REF_NESTING_NS, "nesting 2 -> 20"),
    ):
        sweep = hdl.get(key) or {}
        if len(sweep) >= 2:
            xs = sorted(int(k) for k in sweep)
            a, b = _cycles(sweep[str(xs[0])]), _cycles(sweep[str(xs[-1])])
            if a is not None and b is not None:
                out.append(
                    f"DOE {what}: +{b - a:g} cycles (+{(b - a) * NS_PER_CYCLE:g} ns); theirs +{ref_ns} ns."
                )
    eng = inputs["engine"].data or {}
    levels = eng.get("levels") or {}
    if levels:
        n = max(int(k) for k in levels)
        nat = levels[str(n)].get("engine_native", {}).get("all", {})
        if nat:
            out.append(
                f"Software engine (native) at {n:,} orders per account: p50 {fmt(nat.get('p50_us'), 2)} µs, "
                f"p99 {fmt(nat.get('p99_us'), 2)} µs per event, on one shared core of a loaded machine."
            )
    for n, lv in sorted(
        ((inputs["baselines"].data or {}).get("levels") or {}).items(), key=lambda kv: int(kv[0])
    ):
        r = lv.get("ratios") or {}
        parts = [
            f"{BASELINE_NAMES.get(name, name)} p50 {v['p50_latency_x']}x riskgw native's"
            for name, v in r.items()
            if isinstance(v, dict) and v.get("p50_latency_x") is not None
        ]
        if parts:
            out.append(f"Same checks at {int(n):,} orders per account: " + "; ".join(parts) + ".")
    for m in gateway_modes(inputs):
        out.append(
            f"Gateway, {_mode_name(m)}: highest rate held {fmt(m.get('highest_rate_held'), 0)} orders/s."
        )
    fo = (inputs["failover"].data or {}).get("failover_ms") or {}
    if fo:
        d = inputs["failover"].data or {}
        out.append(
            f"Failover p50 {fmt(fo.get('p50'), 2)} ms, max {fmt(fo.get('max'), 2)} ms over "
            f"{fmt(fo.get('n'), 0)} failovers; lost {d.get('lost', 'n/a')}, "
            f"duplicated {d.get('duplicated', 'n/a')}."
        )
    return out


def paragraphs(body: list[str]) -> list[str]:
    """Body items as markdown: each prose item its own paragraph, table rows kept together."""
    out: list[str] = []
    for item in body:
        if item.startswith("|"):
            out.append(item)
            continue
        if out and out[-1] != "":
            out.append("")
        if item:
            out += [item.strip("\n"), ""]
    return out


def status(s: Section) -> str:
    if s.missing and len(s.missing) == len(s.inputs):
        return "missing: " + "; ".join(s.missing)
    parts = []
    if s.missing:
        parts.append("partial, missing: " + "; ".join(s.missing))
    if s.stale:
        parts.append("stale: " + "; ".join(s.stale))
    if s.gaps:
        parts.append(f"{len(s.gaps)} gap(s) noted")
    return ", ".join(parts) or "measured"


def _require(value: str) -> set[int]:
    if value == "all":
        return {f[0] for f in FIGURES}
    try:
        want = {int(x) for x in value.split(",") if x}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--require takes 'all' or figure numbers like 1,3, not {value!r}"
        ) from None
    bad = want - {f[0] for f in FIGURES}
    if bad:
        raise argparse.ArgumentTypeError(f"there is no figure {min(bad)}; figures are 1 to {len(FIGURES)}")
    return want


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the *.json results are")
    parser.add_argument("--out", type=Path, default=ROOT / "bench", help="where report.md and the PNGs go")
    parser.add_argument("--no-plots", action="store_true", help="report.md only, no PNGs")
    parser.add_argument("--since", type=float, help="inputs older than this Unix time are stale")
    parser.add_argument(
        "--require", type=_require, default=set(), help="'all' or figure numbers that must be complete"
    )
    args = parser.parse_args(argv)
    inputs = load_inputs(args.results, args.since)
    text, sections = render(inputs, args.out, not args.no_plots)
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "report.md"
    report.write_text(text, encoding="utf-8")
    print(f"bench.report: wrote {report}", file=sys.stderr)
    failed = [s for s in sections if s.number in args.require and not s.complete]
    for s in sections:
        if not s.complete:
            print(f"bench.report: figure {s.number} ({s.title}): {status(s)}", file=sys.stderr)
    if failed:
        print(
            f"bench.report: required figure(s) {', '.join(str(s.number) for s in failed)} incomplete",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
