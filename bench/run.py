"""`make bench` / `make bench-quick`: run every benchmark; each writes its figures to bench/results/.

Benchmarks measure; they never pass or fail on a figure. Compare runs by their medians: the
machines these run on are shared.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

# Each module has main(argv) -> int and accepts --quick.
BENCHES = ("engine", "hdl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the short form of every benchmark (for CI)")
    parser.add_argument("only", nargs="*", metavar="NAME", help=f"run only these, of {', '.join(BENCHES)}")
    args = parser.parse_args(argv)
    unknown = [n for n in args.only if n not in BENCHES]
    if unknown:
        parser.error(f"no benchmark {unknown[0]}; there are {', '.join(BENCHES)}")
    status = 0
    for name in args.only or BENCHES:
        start = time.perf_counter()
        print(f"== bench.{name}{' --quick' if args.quick else ''}", flush=True)
        code = importlib.import_module(f"bench.{name}").main(["--quick"] if args.quick else [])
        print(f"== bench.{name}: exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main())
