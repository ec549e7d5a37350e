"""`riskgw replay --diff OLD NEW`: what a rule change would have decided on recorded events.

Both versions run every event, each on its own engine with its own copy of the starting tables, so
each version's state evolves under its own decisions. DIFF.csv has one row per NEW event whose
verdict or failed rules differ (`order_id,old_verdict,new_verdict,old_rules,new_rules`); stdout
gets a summary per rule. OLD and NEW are each a rule file or a directory of `*.sql` files (read
in name order, as `riskgw check DIR/*.sql` would), or a quoted glob pattern such as `'new/*.sql'`.
"""

from __future__ import annotations

import argparse
import glob
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.engine.csvdata import EventRow
from riskgw.errors import UserError

DIFF_HEADER = ("order_id", "old_verdict", "new_verdict", "old_rules", "new_rules")


def rule_files(arg: str) -> list[Path]:
    """A rule file, the `*.sql` files of a directory in name order, or the files of a quoted glob
    pattern (`'rules/*.sql'`) in name order."""
    path = Path(arg)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".sql" and p.is_file())
        if not files:
            raise UserError(f"{path}: no *.sql file in this directory")
        return files
    if not path.exists() and glob.has_magic(arg):
        matches = sorted(Path(m) for m in glob.glob(arg) if Path(m).is_file())
        if not matches:
            raise UserError(f"{arg!r} matches no file")
        return matches
    return [path]


@dataclass
class RuleCount:
    old: int | None = None  # orders that failed the rule under OLD; None: OLD has no such rule
    new: int | None = None
    newly_failing: int = 0  # orders that fail it under NEW and did not under OLD
    no_longer_failing: int = 0


@dataclass
class DiffResult:
    rows: list[list[str]]  # DIFF.csv rows
    rules: dict[str, RuleCount] = field(default_factory=dict)  # old rule order, then new-only rules
    new_orders: int = 0
    now_rejected: int = 0
    now_accepted: int = 0
    other_rules: int = 0  # rejected by both, for different rules


def compare(old: Image, new: Image, old_rows: list[list[str]], new_rows: list[list[str]]) -> DiffResult:
    """Compare two `run_events` outputs for the same events (order_id, event, verdict, rules)."""
    result = DiffResult([])
    for r in old.rules:
        result.rules[r.name] = RuleCount(old=0)
    for r in new.rules:
        result.rules.setdefault(r.name, RuleCount()).new = 0
    for (order_id, event, old_verdict, old_text), (_, _, new_verdict, new_text) in zip(
        old_rows, new_rows, strict=True
    ):
        if event != "NEW":
            continue
        result.new_orders += 1
        old_failed = old_text.split(";") if old_text else []
        new_failed = new_text.split(";") if new_text else []
        for name in old_failed:
            count = result.rules[name]
            count.old = (count.old or 0) + 1
        for name in new_failed:
            count = result.rules[name]
            count.new = (count.new or 0) + 1
        if old_verdict == new_verdict and old_failed == new_failed:
            continue
        result.rows.append([order_id, old_verdict, new_verdict, old_text, new_text])
        if old_verdict == "ACCEPT":
            result.now_rejected += 1
        elif new_verdict == "ACCEPT":
            result.now_accepted += 1
        else:
            result.other_rules += 1
        for name in set(new_failed) - set(old_failed):
            result.rules[name].newly_failing += 1
        for name in set(old_failed) - set(new_failed):
            result.rules[name].no_longer_failing += 1
    return result


def summary(result: DiffResult) -> str:
    """The per-rule table and a closing line; `-` marks a rule that a version does not have."""
    head = ("rule", "old", "new", "newly failing", "no longer failing")
    body = [
        (
            name,
            "-" if c.old is None else str(c.old),
            "-" if c.new is None else str(c.new),
            str(c.newly_failing),
            str(c.no_longer_failing),
        )
        for name, c in result.rules.items()
    ]
    widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]
    lines = []
    for row in (head, *body):
        cells = [row[0].ljust(widths[0])] + [
            cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    differ = len(result.rows)
    lines.append(
        f"{result.new_orders} new orders, {differ} decided differently: {result.now_rejected} now rejected, "
        f"{result.now_accepted} now accepted, {result.other_rules} rejected by other rules"
    )
    return "\n".join(lines)


def run_diff(args: argparse.Namespace) -> int:
    from riskgw.engine.replay import _csv_text, _Outputs, input_events, load_data, replay_engine, run_events

    old_arg, new_arg = args.diff
    images: list[Image] = []
    for label, arg in (("OLD", old_arg), ("NEW", new_arg)):
        compiled = compile_files(rule_files(arg), lanes=8)
        for w in compiled.warnings:
            print(f"{label}: {w.render()}", file=sys.stderr)
        images.append(compiled.image)
    old, new = images
    engines = [replay_engine(old), replay_engine(new)]
    if args.data:
        load_data(engines[0], Path(args.data), other=new)
        load_data(engines[1], Path(args.data), other=old)
    events: list[EventRow] = input_events(args)

    start = time.perf_counter()
    old_rows = run_events(engines[0], old, events, False)
    new_rows = run_events(engines[1], new, events, False)
    elapsed = time.perf_counter() - start
    result = compare(old, new, old_rows, new_rows)

    outputs = _Outputs()
    try:
        outputs.add(Path(args.out), _csv_text(DIFF_HEADER, result.rows))
        outputs.commit()
    finally:
        outputs.discard()
    print(summary(result))
    rate = 2 * len(events) / elapsed if elapsed > 0 else float("inf")
    print(f"replayed {len(events)} events twice in {elapsed:.3f} s ({rate:.0f} events/s)", file=sys.stderr)
    return 0
