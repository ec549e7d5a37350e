"""What can be checked of the Vitis flow (bitstreams/) without Vivado: the kernel's ports against
the packaged interfaces and the connectivity file, the Tcl's register map against the Python
register maps, and the manifest's schema."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from riskgw import hdl_lint
from riskgw.card import regmap, rings, vitis
from riskgw.card.doeport import DoeParams
from riskgw.card.manifest import Manifest, load_manifest, pynq_memory_name, xclbin_path
from riskgw.card.manifest import main as write_manifest
from riskgw.errors import UserError

REPO = Path(__file__).resolve().parents[1]
BITS = REPO / "bitstreams"
WRAPPER = BITS / "rtl" / "rgw_card_krnl.sv"
CARD = REPO / "hdl" / "rgw_card.sv"
RING_DMA = REPO / "hdl" / "rgw_ring_dma.sv"
GIT = "0123456789abcdef0123456789abcdef01234567"

# ---------------------------------------------------------------- parsing the HDL and the Tcl

_PORT = re.compile(r"^\s*(input|output)\s+wire\s+logic\s*(\[[^\]]+\])?\s*(\w+)\s*,?\s*(//.*)?$")
_PARAM = re.compile(r"^\s*parameter\s+(?:int|logic\s*\[[^\]]+\])\s+(\w+)\s*=\s*([^,]+?)\s*,?\s*(//.*)?$")


def module_header(path: Path, name: str) -> list[str]:
    text = path.read_text(encoding="utf-8")
    start = text.index(f"module {name}")
    return text[start : text.index(");", start)].splitlines()


def parameters(path: Path, name: str) -> dict[str, str]:
    return {m[1]: m[2] for line in module_header(path, name) if (m := _PARAM.match(line))}


def ports(path: Path, name: str, params: dict[str, int]) -> dict[str, tuple[str, int]]:
    """name -> (direction, width) of every port of an ANSI-style module header."""
    out: dict[str, tuple[str, int]] = {}
    for line in module_header(path, name):
        m = _PORT.match(line)
        if not m:
            continue
        width = 1
        if m[2]:
            hi, lo = m[2][1:-1].split(":")
            for k, v in params.items():
                hi = re.sub(rf"\b{k}\b", str(v), hi)
            assert re.fullmatch(r"[\d\s+\-*/()]+", hi), hi
            width = int(eval(hi.replace("/", "//"))) - int(lo) + 1  # digits and operators only
        out[m[3]] = (m[1], width)
    return out


def tcl_kernel(
    path: Path,
) -> tuple[list[tuple[str, str, int, int, int]], list[tuple[str, int, int, str]], int]:
    """The busifs, registers (name, offset, words, busif) and range a generated kernel Tcl sets."""
    text = path.read_text(encoding="utf-8")

    def block(var: str) -> list[str]:
        body = text[text.index(f"set {var} {{") : text.index("\n}", text.index(f"set {var} {{"))]
        return [line.strip() for line in body.splitlines()[1:] if line.strip()]

    busifs = []
    for line in block("kernel_busifs"):
        name, kind, dw, uw, aw = line.strip("{}").split()
        busifs.append((name, kind, int(dw), int(uw), int(aw)))
    regs = []
    for line in block("kernel_regs"):
        m = re.fullmatch(r"\{(\w+) (0x[0-9a-f]+) (\d+) \{(\w*)\} \{[^{}]*\}\}", line)
        assert m, line
        regs.append((m[1], int(m[2], 16), int(m[3]), m[4]))
    rng = re.search(r"^set kernel_range (0x[0-9a-f]+)$", text, re.M)
    assert rng
    return busifs, regs, int(rng[1], 16)


def cfg_lines(section: str) -> list[tuple[str, str]]:
    out, current = [], ""
    for raw in (BITS / "connectivity.cfg").read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


WRAPPER_PARAMS = {"DATA_W": vitis.DATA_W}
AXIL = {"awaddr", "awprot", "awvalid", "awready", "wdata", "wstrb", "wvalid", "wready", "bresp", "bvalid"}
AXIL |= {"bready", "araddr", "arprot", "arvalid", "arready", "rdata", "rresp", "rvalid", "rready"}
AXIS = {"tdata", "tkeep", "tvalid", "tready", "tlast", "tuser"}
# AXI4 master: what Vivado needs to infer an aximm interface, plus the responses the DMA checks
AXIMM_OUT = {"awaddr", "awlen", "awsize", "awburst", "awvalid", "wdata", "wstrb", "wlast", "wvalid"}
AXIMM_OUT |= {"bready", "araddr", "arlen", "arsize", "arburst", "arvalid", "rready"}
AXIMM_IN = {"awready", "wready", "bresp", "bvalid", "arready", "rdata", "rresp", "rlast", "rvalid"}

# ---------------------------------------------------------------- the Tcl is the register maps


def test_kernel_tcl_is_generated_from_the_register_maps() -> None:
    for k in vitis.KERNELS:
        assert k.tcl_path.read_text(encoding="utf-8") == vitis.render_tcl(k), (
            f"{k.tcl_path} is stale: run `python -m riskgw.card.vitis`"
        )


def test_card_tcl_registers_are_regmap() -> None:
    _busifs, regs, rng = tcl_kernel(vitis.CARD_KERNEL.tcl_path)
    want = [(f"{b.type.name}_{r.name}", b.addr(r.name), r.count, "") for b in regmap.BLOCKS for r in b.regs]
    assert regs == want
    assert rng == 1 << regmap.ADDR_W
    ends = [b.base + max(r.offset + 4 * r.count for r in b.regs) for b in regmap.BLOCKS]
    assert max(ends) <= rng
    # blocks do not overlap, and the chain's NEXT pointers follow the Tcl's order of blocks
    bases = [b.base for b in regmap.BLOCKS]
    assert all(end <= nxt for end, nxt in zip(ends, bases[1:], strict=False))


def test_ring_tcl_registers_are_the_proposal() -> None:
    _busifs, regs, rng = tcl_kernel(vitis.RING_KERNEL.tcl_path)
    assert [(n, o, c) for n, o, c, _ in regs] == [
        (f"RINGS_{r.name}", r.offset, r.count) for r in rings.RING_REGS
    ]
    assert {n for n, *_, b in regs if b} == {"RINGS_RX_BASE", "RINGS_TX_BASE"}
    assert all(b in ("", "m_axi_gmem") for *_, b in regs)
    assert max(o + 4 * c for _, o, c, _ in regs) <= rng == 1 << rings.RING_ADDR_W


# ---------------------------------------------------------------- ports


@pytest.mark.parametrize(
    ("kernel", "path"),
    [(vitis.CARD_KERNEL, WRAPPER), (vitis.RING_KERNEL, RING_DMA)],
    ids=["card", "ring_dma"],
)
def test_kernel_ports_are_the_packaged_interfaces(kernel: vitis.Kernel, path: Path) -> None:
    busifs, _regs, _rng = tcl_kernel(kernel.tcl_path)
    params = {k: int(v) for k, v in parameters(path, kernel.name).items() if v.isdigit()}
    assert params["DATA_W"] == vitis.DATA_W, "the top's default width is the one the Tcl packages"
    got = ports(path, kernel.name, params)
    assert got.pop("ap_clk") == ("input", 1)
    assert got.pop("ap_rst_n") == ("input", 1)
    for name, kind, data_w, user_w, addr_w in busifs:
        mine = {p[len(name) + 1 :]: got.pop(p) for p in list(got) if p.startswith(name + "_")}
        if kind == "axilite_slave":
            assert set(mine) == AXIL, name
            assert mine["awaddr"] == mine["araddr"] == ("input", addr_w)
            assert mine["wdata"] == ("input", data_w) and mine["rdata"] == ("output", data_w)
        elif kind == "aximm_master":
            assert set(mine) == AXIMM_OUT | AXIMM_IN, name
            assert all(mine[p][0] == "output" for p in AXIMM_OUT), name
            assert all(mine[p][0] == "input" for p in AXIMM_IN), name
            assert mine["awaddr"][1] == mine["araddr"][1] == addr_w
            assert mine["wdata"][1] == mine["rdata"][1] == data_w and mine["wstrb"][1] == data_w // 8
            assert mine["awlen"][1] == mine["arlen"][1] == 8  # AXI4 bursts
        else:
            assert set(mine) == AXIS, name
            into = "input" if kind == "axis_slave" else "output"
            assert mine["tdata"] == (into, data_w) and mine["tkeep"] == (into, data_w // 8)
            assert mine["tuser"] == (into, user_w) and mine["tready"][0] != into
    assert got == {}, f"ports in no packaged interface: {sorted(got)}"


def test_ring_dma_registers_are_rings_py() -> None:
    """The RTL's defaults and identity are rings.py's (the cocotb bench reads them over AXI-Lite)."""
    params = parameters(RING_DMA, "rgw_ring_dma")
    assert int(params["SLOT_BYTES"]) == rings.SLOT_BYTES
    assert int(params["AXIL_ADDR_W"]) == rings.RING_ADDR_W
    assert int(params["SESSION_W"]) == regmap.SESSION_W
    text = RING_DMA.read_text(encoding="utf-8")
    m = re.search(r"localparam logic \[31:0\] TYPE_VERSION = 32'h([0-9a-f_]+);", text)
    assert m and int(m[1].replace("_", ""), 16) == rings.RINGS_TYPE << 16 | rings.RINGS_VERSION
    # every register of the map is decoded at its offset, and nothing else
    decoded = {int(a, 16) for a in re.findall(r"^\s*'h([0-9a-f]+): rd_val", text, re.M)}
    decoded.add(rings.ring_addr("NEXT"))  # reads 0: the default of the case
    assert decoded == {r.offset + 4 * i for r in rings.RING_REGS for i in range(r.count)}


def test_wrapper_connects_every_port_of_rgw_card() -> None:
    card_params = {k: int(v) for k, v in parameters(CARD, "rgw_card").items() if v.isdigit()}
    card = ports(CARD, "rgw_card", {**card_params, **WRAPPER_PARAMS})
    wrapper = ports(WRAPPER, "rgw_card_krnl", WRAPPER_PARAMS)
    text = WRAPPER.read_text(encoding="utf-8")
    inst = text[text.index("rgw_card #(") : text.index(");", text.index("rgw_card #("))]
    conns = dict(re.findall(r"\.(\w+)\(([^()]*)\)", inst.split(") card_inst (")[1]))
    assert set(conns) == set(card)
    for port, (direction, width) in card.items():
        src = conns[port]
        if port == "clk":
            assert src == "ap_clk"
        elif port == "rst":
            assert src == "rst_reg"
        else:
            assert src == port.replace("s_axil_", "s_axi_control_"), port
            assert wrapper[src] == (direction, width), port


def test_card_parameters_are_the_doe_params_the_manifest_reports() -> None:
    params = parameters(CARD, "rgw_card")
    want = DoeParams().hdl()
    assert {k: int(params[k]) for k in want} == want
    assert int(params["CLOCK_MHZ"]) == vitis.CLOCK_MHZ
    assert ".CLOCK_MHZ(250)" in WRAPPER.read_text(encoding="utf-8").replace(" ", "")


def test_wrapper_lints_clean_with_rgw_card(tmp_path: Path) -> None:
    build_pkg = tmp_path / "rgw_build_pkg.sv"
    build_pkg.write_text(
        "`resetall\n`timescale 1ns / 1ps\n`default_nettype none\npackage rgw_build_pkg;\n"
        f"    localparam logic [159:0] GIT_HASH = 160'h{GIT};\nendpackage\n`resetall\n"
    )
    env = hdl_lint.verilator_env()
    cmd = ["verilator", "--lint-only", "-Wall", "--top-module", "rgw_card_krnl", str(build_pkg)]
    cmd += [*map(str, hdl_lint.filelist("rgw_card")), str(WRAPPER)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- connectivity


def test_connectivity_joins_the_packaged_interfaces() -> None:
    kernels = {k.name: {b.name: b for b in k.busifs} for k in vitis.KERNELS}
    conn = cfg_lines("connectivity")
    cus = {}
    for key, value in conn:
        if key == "nk":
            kernel, n, name = value.split(":")
            assert kernel in kernels and n == "1"
            cus[name] = kernels[kernel]
    assert set(cus) == {f"{k.name}_1" for k in vitis.KERNELS}
    used: list[tuple[str, str]] = []
    for key, value in conn:
        if key == "stream_connect":
            (src_cu, src), (dst_cu, dst) = (end.split(".") for end in value.split(":"))
            a, b = cus[src_cu][src], cus[dst_cu][dst]
            assert (a.kind, b.kind) == ("axis_master", "axis_slave"), value
            assert (a.data_w, a.user_w) == (b.data_w, b.user_w) == (vitis.DATA_W, regmap.SESSION_W)
            used += [(src_cu, src), (dst_cu, dst)]
        elif key == "sp":
            end, bank = value.split(":")
            cu, port = end.split(".")
            assert cus[cu][port].kind == "aximm_master"
            assert re.fullmatch(r"DDR\[[0-3]\]", bank), bank  # the U200's four DDR4 banks
            used.append((cu, port))
        elif key == "slr":
            assert value.split(":")[0] in cus and value.split(":")[1] in ("SLR0", "SLR1", "SLR2")
    needs = sorted(
        (cu, b.name)
        for cu, ifs in cus.items()
        for b in ifs.values()
        if b.kind in ("axis_master", "axis_slave", "aximm_master")
    )
    assert sorted(used) == needs, "every stream and memory port is connected exactly once"
    clocks = dict(v.split(":")[::-1] for k, v in cfg_lines("clock") if k == "freqHz")
    assert clocks == {f"{cu}.ap_clk": str(vitis.CLOCK_MHZ * 1_000_000) for cu in cus}


# ---------------------------------------------------------------- the manifest


def test_the_sample_manifest_is_valid() -> None:
    m = load_manifest(BITS / "manifest.sample.json")
    assert m.doe_params() == DoeParams()
    assert m.memory == pynq_memory_name(BITS / "connectivity.cfg") == "DDR1"
    assert m.kernels == {"card": "rgw_card_krnl_1", "rings": "rgw_ring_dma_1"}


def test_manifest_writer_describes_the_xclbin(tmp_path: Path) -> None:
    xclbin = tmp_path / "riskgw_u200.xclbin"
    xclbin.write_bytes(b"xclbin2\0" + bytes(range(256)))
    out = tmp_path / "manifest.json"
    args = ["--xclbin", str(xclbin), "--out", str(out), "--platform", "xilinx_u200_gen3x16_xdma_2_202110_1"]
    args += ["--vitis", "2022.1", "--xrt", "2.13.466", "--git-hash", GIT.upper()]
    args += ["--cfg", str(BITS / "connectivity.cfg")]
    assert write_manifest(args) == 0
    m = load_manifest(out)
    assert m.git_hash == GIT and m.data_w == vitis.DATA_W and m.clock_mhz == vitis.CLOCK_MHZ
    assert xclbin_path(m, out) == xclbin
    xclbin.write_bytes(b"another build")
    with pytest.raises(UserError, match="not the one the manifest describes"):
        xclbin_path(m, out)
    xclbin.unlink()
    with pytest.raises(UserError, match="not found"):
        xclbin_path(m, out)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("git_hash"), "no 'git_hash'"),
        (lambda d: d.update(git_hash="abc"), "40 lower-case hex"),
        (lambda d: d.update(abi_version=True), "'abi_version' must be a int"),
        (lambda d: d.update(extra=1), "unknown field 'extra'"),
        (lambda d: d.update(schema=2), "schema 2"),
        (lambda d: d.update(xclbin="../x.xclbin"), "beside the manifest"),
        (lambda d: d.update(ring_slots=1000), "power of two"),
        (lambda d: d["doe"].pop("ROWS"), "doe must give"),
        (lambda d: d.update(kernels={"card": "x"}), "kernels must name"),
        (lambda d: d.update(tools={"vitis": "2022.1"}), "tools must give"),
    ],
)
def test_a_bad_manifest_is_refused_in_one_line(
    tmp_path: Path, change: Callable[[dict[str, Any]], object], message: str
) -> None:
    data = json.loads((BITS / "manifest.sample.json").read_text())
    change(data)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(message)) as info:
        load_manifest(path)
    assert "\n" not in str(info.value)


def test_a_missing_manifest_says_how_to_build_one(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"make -C bitstreams"):
        load_manifest(tmp_path / "manifest.json")


def test_manifest_round_trips() -> None:
    m = load_manifest(BITS / "manifest.sample.json")
    assert Manifest.from_dict(json.loads(m.to_json()), "again") == m
