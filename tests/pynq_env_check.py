"""Run inside .venv-pynq (`make pynq-env`): PynqCard against the real pynq 3.0.1 package, no card.

Prints one JSON object; tests/test_pynq_env.py runs this and checks it. Every pynq call PynqCard
makes is bound with the arguments PynqCard gives it, and pynq's own register and buffer code is
run over a stand-in XRT device, so what is checked is pynq's code, not a copy of it.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from riskgw.card.soft import SoftCard
from riskgw.card.tables import load_data_dir
from riskgw.doe.compiler import compile_files
from riskgw.doe.isa import Event
from riskgw.engine.csvdata import EVENT_HEADER
from riskgw.engine.engine import event_inputs
from riskgw.scenario import DataSet, Session

REPO = Path(__file__).resolve().parents[1]


def engine_digest(tmp: Path) -> dict[str, Any]:
    soft = SoftCard()
    soft.load_image(compile_files(sorted((REPO / "rules").glob("*.sql"))).image)
    data = DataSet(n_accounts=20, n_securities=64, holdings_per_account=16)
    load_data_dir(soft, data.write(tmp))
    h = hashlib.sha256()

    def decide(row: list[int | str | None]) -> bool:
        d = soft.process(Event[str(row[0])], event_inputs(dict(zip(EVENT_HEADER[1:], row[1:], strict=True))))
        h.update(repr(d).encode())
        return d.accepted

    Session(data, n_orders=200).run(decide, keep=False)
    return {"decisions": h.hexdigest(), "state": soft.state_hash()}


def pynq_checks() -> dict[str, Any]:
    out: dict[str, Any] = {}
    # 1. the driver module imports without pynq
    import riskgw.card.pynq as driver

    out["pynq_imported_by_driver"] = "pynq" in sys.modules

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynq
        from pynq.buffer import PynqBuffer
        from pynq.overlay import DefaultIP
        from pynq.pl_server.xrt_device import XrtDevice

    out["pynq_version"] = pynq.__version__
    out["numpy_version"] = np.__version__

    # 2. the calls PynqCard makes bind to pynq's signatures
    ip = object.__new__(DefaultIP)
    binds: dict[str, Callable[[], inspect.BoundArguments]] = {
        "Overlay(xclbin, device=)": lambda: inspect.signature(pynq.Overlay).bind("x.xclbin", device=object()),
        "allocate(shape, dtype=, target=)": lambda: inspect.signature(pynq.allocate).bind(
            (1024,), dtype=np.uint8, target=object()
        ),
        "DefaultIP.read(offset)": lambda: inspect.signature(DefaultIP.read).bind(ip, 0x104),
        "DefaultIP.write(offset, value)": lambda: inspect.signature(DefaultIP.write).bind(ip, 0x104, 1),
        "PynqBuffer.sync_to_device()": lambda: inspect.signature(PynqBuffer.sync_to_device).bind(None),
        "PynqBuffer.sync_from_device()": lambda: inspect.signature(PynqBuffer.sync_from_device).bind(None),
        "PynqBuffer.freebuffer()": lambda: inspect.signature(PynqBuffer.freebuffer).bind(None),
        "Overlay.free()": lambda: inspect.signature(pynq.Overlay.free).bind(None),
    }
    bound: dict[str, bool | str] = {}
    for name, bind in binds.items():
        try:
            bind()
            bound[name] = True
        except TypeError as exc:
            bound[name] = str(exc)
    bound["Device.devices is a property"] = isinstance(type(pynq.Device).__dict__.get("devices"), property)
    bound["XrtDevice.name is a property"] = isinstance(XrtDevice.__dict__.get("name"), property)
    out["bound"] = bound

    # 3. pynq's own MMIO code (the XRT path: register reads and writes by address) under MmioBus
    class StandInDevice:
        """What pynq's MMIO and PynqBuffer ask of an XRT device, recorded."""

        def __init__(self, regs: dict[int, int]) -> None:
            self.regs = regs
            self.calls: list[tuple[Any, ...]] = []

        def has_capability(self, cap: str) -> bool:
            return cap == "REGISTER_RW"

        def read_registers(self, address: int, length: int) -> bytes:
            self.calls.append(("read", address, length))
            return self.regs.get(address, 0).to_bytes(length, "little")

        def write_registers(self, address: int, data: bytes) -> None:
            self.calls.append(("write", address, bytes(data)))
            self.regs[address] = int.from_bytes(data, "little")

        def flush(self, bo: int, offset: int, ptr: int, size: int) -> None:
            self.calls.append(("flush", bo, offset, size))

        def invalidate(self, bo: int, offset: int, ptr: int, size: int) -> None:
            self.calls.append(("invalidate", bo, offset, size))

    from riskgw.card.regmap import BLOCKS, CARD_MAGIC, ID_BLOCK
    from riskgw.card.regs import CardRegs
    from riskgw.doe.isa import ABI_VERSION

    BASE = 0x1800000
    GIT = "89abcdef0123456789abcdef0123456789abcdef"
    regs: dict[int, int] = {}
    for i, b in enumerate(BLOCKS):
        regs[BASE + b.base] = int(b.type) << 16 | b.version
        regs[BASE + b.base + 4] = BLOCKS[i + 1].base if i + 1 < len(BLOCKS) else 0
    ident = {"MAGIC": CARD_MAGIC, "ABI_VERSION": ABI_VERSION, "DATA_W": 512, "LANES": 8, "TABLES": 8}
    ident |= {"COLS": 16, "ROWS_LOG2": 10, "RULES": 64, "REGS": 256, "PROG_ROWS": 256, "CLOCK_MHZ": 250}
    ident |= {"KEY_WORDS": 6, "WAYS": 4, "SCANS": 16, "IN_WORDS": 16}
    for name, v in ident.items():
        regs[BASE + ID_BLOCK.addr(name)] = v
    for i in range(5):
        regs[BASE + ID_BLOCK.addr("GIT_HASH", i)] = int(GIT[8 * i : 8 * i + 8], 16)
    dev = StandInDevice(regs)
    card_ip = DefaultIP({"phys_addr": BASE, "addr_range": 0x10000, "device": dev})
    bus = driver.MmioBus(card_ip)
    card = CardRegs(bus).attach(git_hash=GIT)
    bus.write32(0x104, 0xDEADBEEF)
    out["mmio"] = {
        "ident_git_hash": card.git_hash,
        "ident_data_w": card.data_w,
        "first_read": list(dev.calls[0]),
        "write": [dev.calls[-1][0], dev.calls[-1][1], dev.calls[-1][2].hex()],
        "read_back": bus.read32(0x104),
    }

    # 4. pynq's buffer: a slice syncs only its own bytes (the rings sync one run of slots at a time)
    try:
        buf = PynqBuffer(
            (4096,), dtype=np.uint8, device=dev, device_address=0x4_0000_0000, bo=7, coherent=False
        )
    except AttributeError as exc:  # numpy 2's ndarray.device is read-only: pynq 3.0.1 cannot set it
        out["buffer"] = f"PynqBuffer cannot be made with numpy {np.__version__}: {exc}"
    else:
        mem = driver.PynqMemory(buf)
        dev.calls.clear()
        mem.to_device(256, 640)
        mem.from_device(0, 128)
        out["buffer"] = {"calls": [list(c) for c in dev.calls], "device_address": mem.device_address}

    # 5. no card: the messages PynqCard gives, through pynq's real device probe
    from riskgw.errors import UserError

    messages = {}
    os.environ.pop("XILINX_XRT", None)
    try:
        driver.find_device()
    except UserError as exc:
        messages["no_xrt"] = str(exc)
    os.environ["XILINX_XRT"] = "/opt/xilinx/xrt"  # set after pynq loaded without it: the probe finds nothing
    try:
        driver.find_device()
    except UserError as exc:
        messages["no_card"] = str(exc)
    out["messages"] = messages
    return out


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] == ["--engine-only"]:
        result: dict[str, Any] = {}
    else:
        result = pynq_checks()
    with tempfile.TemporaryDirectory() as tmp:
        result["engine"] = engine_digest(Path(tmp))
    print(json.dumps(result))
