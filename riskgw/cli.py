"""The `riskgw` command.

Every user mistake ends in a one-line message (or `path:line:col: error:` diagnostics) and exit 1;
a traceback means a bug in riskgw.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from riskgw.errors import InputError, UserError
from riskgw.lang.ast import CompileError, Diagnostic


def _print_diagnostics(diags: Sequence[Diagnostic]) -> None:
    for d in diags:
        print(d.render(), file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    from riskgw.doe.compiler import compile_files

    result = compile_files([Path(p) for p in args.files], lanes=args.lanes)
    _print_diagnostics(result.warnings)
    p = result.program
    n_triggers = len(p.triggers)
    print(
        f"ok: {len(args.files)} file(s), {len(p.tables)} table(s), {len(p.rules)} rule(s), "
        f"{n_triggers} trigger(s), {len(result.warnings)} warning(s)"
    )
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from riskgw.doe.asm import disassemble
    from riskgw.doe.compiler import compile_files

    result = compile_files([Path(p) for p in args.files], lanes=args.lanes)
    _print_diagnostics(result.warnings)
    blob = result.image.encode()
    if args.output:
        out = Path(args.output)
        tmp = out.with_name(out.name + ".tmp")
        try:
            tmp.write_bytes(blob)
            tmp.replace(out)
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror}") from exc
    if args.asm:
        print(disassemble(result.image))
    if args.output:
        print(f"wrote {args.output}: {len(blob)} bytes, {len(result.image.rules)} rule(s)", file=sys.stderr)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from riskgw.engine.replay import run_replay

    return run_replay(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from riskgw.demo import run_demo

    return run_demo(args)


def cmd_exchange_sim(args: argparse.Namespace) -> int:
    from riskgw.exchange.sim import run_exchange_sim

    return run_exchange_sim(args)


def cmd_sim_card(args: argparse.Namespace) -> int:
    from riskgw.card.simserver import run_sim_card

    return run_sim_card(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from riskgw.gateway.serve import run_serve

    return run_serve(args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from riskgw.gateway.ctl import run_ctl

    return run_ctl(args)


def cmd_log_query(args: argparse.Namespace) -> int:
    from riskgw.gateway.audit import run_log_query

    return run_log_query(args)


def cmd_journal_export(args: argparse.Namespace) -> int:
    from riskgw.gateway.export import run_export

    return run_export(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskgw", description="FPGA-offloaded pre-trade risk gateway")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="check rule files and report problems")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--lanes", type=int, default=8, help="ALU lanes to schedule for (default 8)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("compile", help="compile rule files into a DOE program image")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", metavar="PROG.bin", help="where to write the image")
    p.add_argument("--asm", action="store_true", help="print the assembly listing")
    p.add_argument("--lanes", type=int, default=8, help="ALU lanes to schedule for (default 8)")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("replay", help="run recorded events through the rules and write the verdicts")
    p.add_argument("rules", nargs="*", metavar="RULES")
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="run two rule versions (each a file or a directory of *.sql) and write where they differ",
    )
    p.add_argument("--data", metavar="DIR", help="initial tables, one <table>.csv each")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", metavar="EVENTS.csv")
    source.add_argument("--journal", metavar="JOURNAL", help="a gateway journal, or a directory of *.journal")
    p.add_argument("--out", required=True, metavar="OUT.csv")
    p.add_argument("--dump-state", metavar="DIR", help="write every table's final state here")
    p.add_argument(
        "--backend", choices=["soft", "sim"], default="soft", help="sim: the card's HDL in Verilator"
    )
    p.add_argument(
        "--card-address", metavar="tcp://HOST:PORT", help="--backend sim: a running `riskgw sim-card` to use"
    )
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("demo", help="the example rules through the gateway on TCP, with a scripted broker")
    p.add_argument("--workdir", metavar="DIR", help="where to write the demo's files (default: a temp dir)")
    p.add_argument("--orders", type=int, default=3000, help="orders in the scripted session (default 3000)")
    p.add_argument(
        "--card", choices=["soft", "sim"], help="the card (default: sim when it is built in, else soft)"
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the broker and the exchange (default 1)")
    p.add_argument(
        "--serve", action="store_true", help="start exchange-sim, the card and the gateway; run until SIGTERM"
    )
    p.add_argument(
        "--ports",
        choices=["default", "any"],
        default="default",
        help="with --serve: brokers 9000, exchange 9100, metrics 9101, control 9102, or any free ports",
    )
    p.add_argument(
        "--offline", action="store_true", help="in one process without TCP: compile, session, replay"
    )
    p.add_argument(
        "--prepare",
        action="store_true",
        help="build what the demo's card needs (the simulated card's Verilator model) and exit",
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("exchange-sim", help="run a simulated exchange that speaks the wire protocol")
    p.add_argument("--listen", default="127.0.0.1:9100", metavar="HOST:PORT", help="default 127.0.0.1:9100")
    p.add_argument("--seed", type=int, default=1, help="seed of the simulated market (default 1)")
    p.add_argument("--fill", type=float, default=0.4, help="share of orders filled in full (default 0.4)")
    p.add_argument("--partial", type=float, default=0.2, help="share half filled, rest resting (default 0.2)")
    p.add_argument("--reject", type=float, default=0.1, help="share rejected (default 0.1); the rest rest")
    p.add_argument(
        "--keep-on-disconnect",
        action="store_true",
        help="keep a closed connection's resting orders (default: cancel them, as most venues do)",
    )
    p.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="uvloop (default; asyncio when it cannot be imported) or asyncio's own loop",
    )
    p.set_defaults(func=cmd_exchange_sim)

    p = sub.add_parser("sim-card", help="run the card's HDL in Verilator and serve it over ZeroMQ")
    p.add_argument(
        "--listen", default="tcp://127.0.0.1:9200", metavar="tcp://HOST:PORT", help="port 0: any free port"
    )
    p.add_argument("--data-w", type=int, default=64, metavar="BITS", help="TOE stream width (default 64)")
    p.add_argument("--rows", type=int, default=256, help="rows per DOE table, a power of two (default 256)")
    p.add_argument("--ways", type=int, default=4, help="slots per bucket of the DOE's hash index (default 4)")
    p.set_defaults(func=cmd_sim_card)

    p = sub.add_parser("serve", help="run the gateway: brokers in, risk checks on the card, orders out")
    p.add_argument("--config", metavar="GATEWAY.toml", help="settings file; flags override it")
    p.add_argument("--rules", nargs="+", metavar="FILES", help="rule files")
    p.add_argument("--data", metavar="DIR", help="initial tables, one <table>.csv each")
    p.add_argument("--listen", metavar="HOST:PORT", help="broker listener (default 127.0.0.1:9000)")
    p.add_argument("--exchange", metavar="HOST:PORT", help="the exchange (default 127.0.0.1:9100)")
    p.add_argument(
        "--card",
        metavar="{soft,sim,sim:tcp://HOST:PORT,pynq,auto}",
        help="the executor (default soft: the software engine; sim: a simulated card started here;"
        " sim:tcp://HOST:PORT: a running `riskgw sim-card`; pynq: a U200; auto: a U200 when present,"
        " else the simulated card when built in, else soft)",
    )
    p.add_argument("--journal", metavar="PATH", help="journal file (default gateway.journal)")
    p.add_argument("--user", action="append", metavar="NAME:PASSWORD:ACCOUNTS", help="a broker login")
    p.add_argument("--heartbeat-ms", type=int, help="heartbeat interval given to brokers (default 1000)")
    p.add_argument(
        "--heartbeat-timeout",
        type=int,
        metavar="N",
        help="log out a session silent for N intervals (default 3)",
    )
    p.add_argument("--no-fsync", action="store_true", help="skip fsync (throwaway journals only)")
    p.add_argument(
        "--journal-sync",
        choices=["commit", "interval", "none"],
        help="fsync each commit before its replies leave (default), in the background, or never",
    )
    p.add_argument(
        "--event-loop",
        choices=["uvloop", "asyncio"],
        help="asyncio's own loop (default) or uvloop (asyncio when it cannot be imported)",
    )
    p.add_argument(
        "--gc",
        choices=["idle", "python"],
        help="Python's full garbage collections only when no order flows for a second (idle, default)"
        " or by CPython's own rule (python)",
    )
    p.add_argument(
        "--control", metavar="HOST:PORT", help="control port for riskgw ctl (token: $RISKGW_CONTROL_TOKEN)"
    )
    p.add_argument("--kill-file", metavar="PATH", help="where kill switches are kept (default: JOURNAL.kill)")
    p.add_argument(
        "--metrics", metavar="HOST:PORT", help="serve Prometheus metrics at http://HOST:PORT/metrics"
    )
    p.add_argument("--audit", metavar="PATH.sqlite", help="write every decision to this SQLite audit store")
    p.set_defaults(func=cmd_serve)

    from riskgw.gateway.ctl import add_parser as add_ctl_parser

    add_ctl_parser(sub)
    sub.choices["ctl"].set_defaults(func=cmd_ctl)

    from riskgw.gateway.deployctl import add_parsers as add_deploy_parsers

    add_deploy_parsers(sub)

    p = sub.add_parser("log", help="the gateway's audit store")
    log_actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    q = log_actions.add_parser("query", help="run an SQL query on the audit store, print CSV")
    q.add_argument("sql", metavar="SQL", help='e.g. "SELECT reason, count(*) FROM decisions GROUP BY reason"')
    q.add_argument(
        "--db", default="audit.sqlite", metavar="PATH", help="the audit store (default audit.sqlite)"
    )
    q.set_defaults(func=cmd_log_query)

    p = sub.add_parser("journal", help="the gateway's journal")
    journal_actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    j = journal_actions.add_parser("export", help="write the journal's events as an events file for replay")
    j.add_argument("journal", metavar="JOURNAL")
    j.add_argument("--out", required=True, metavar="EVENTS.csv")
    j.set_defaults(func=cmd_journal_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except CompileError as exc:
        _print_diagnostics(exc.diagnostics)
        errors = sum(1 for d in exc.diagnostics if d.severity.value == "error")
        print(f"{errors} error(s)", file=sys.stderr)
        return 1
    except InputError as exc:
        print(exc, file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"riskgw: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("riskgw: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`riskgw compile --asm | head`): nothing is wrong here.
        # Only stdout's: a broken pipe anywhere else (a socket) is a failure and goes on up.
        if not _stdout_reader_gone():
            raise
        # Point stdout at /dev/null so the interpreter's last flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process that SIGPIPE ended


def _stdout_reader_gone() -> bool:
    """stdout is a pipe or socket whose reader has gone: polling its write end reports an error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a descriptor
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


if __name__ == "__main__":
    sys.exit(main())
