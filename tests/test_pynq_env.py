"""PynqCard against the real pynq 3.0.1, installed apart in .venv-pynq (`make pynq-env`, built here
when missing: about three minutes on two cores, then cached): the calls it makes exist with the
signatures it uses, pynq's own register and buffer code does what the driver relies on, and with
no card `riskgw serve --card pynq` says what is missing in one line."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pynq_env_check import engine_digest

from riskgw.card.regmap import ID_BLOCK

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv-pynq"
RULES = sorted((REPO / "rules").glob("*.sql"))

pytestmark = pytest.mark.xdist_group("pynq_env")  # one worker builds the environment and uses it


@pytest.fixture(scope="module")
def pynq_python() -> Path:
    # A lock, not the xdist group alone: clean-clone runs have seen two workers set this module up at
    # once, one removing the half-built environment the other was installing into.
    lock_path = REPO / "build" / "pynq-env.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (VENV / ".installed").exists():
            done = subprocess.run(
                ["make", "pynq-env"], cwd=REPO, capture_output=True, text=True, timeout=1800, check=False
            )
            said = f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            assert done.returncode == 0, f"make pynq-env failed:\n{said}"
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def checked(pynq_python: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "XILINX_XRT"}
    done = subprocess.run(
        [str(pynq_python), str(REPO / "tests" / "pynq_env_check.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_driver_imports_without_pynq_and_the_environment_is_pynq_301(checked: dict[str, Any]) -> None:
    assert checked["pynq_imported_by_driver"] is False
    assert checked["pynq_version"] == "3.0.1"
    assert int(checked["numpy_version"].split(".")[0]) < 2


def test_every_pynq_call_the_driver_makes_binds(checked: dict[str, Any]) -> None:
    assert checked["bound"] and all(v is True for v in checked["bound"].values()), checked["bound"]


def test_card_regs_run_over_pynqs_own_mmio_code(checked: dict[str, Any]) -> None:
    mmio = checked["mmio"]
    assert mmio["ident_git_hash"] == "89abcdef0123456789abcdef0123456789abcdef"
    assert mmio["ident_data_w"] == 512
    base = 0x1800000
    assert mmio["first_read"] == ["read", base + ID_BLOCK.addr("MAGIC"), 4]  # one 32-bit read per register
    assert mmio["write"] == ["write", base + 0x104, "efbeadde"]  # little-endian, at the IP's address
    assert mmio["read_back"] == 0xDEADBEEF


def test_a_ring_sync_moves_only_its_own_bytes(checked: dict[str, Any]) -> None:
    assert checked["buffer"] == {
        "calls": [["flush", 7, 256, 384], ["invalidate", 7, 0, 128]],
        "device_address": 0x4_0000_0000,
    }


def test_without_xrt_or_a_card_the_driver_says_what_is_missing(checked: dict[str, Any]) -> None:
    msgs = checked["messages"]
    assert msgs["no_xrt"].startswith("--card pynq: XRT is not set up (XILINX_XRT is not set): ")
    assert msgs["no_card"].startswith("--card pynq: XRT finds no Alveo card")
    assert all("--card soft" in m and "\n" not in m for m in msgs.values())


def test_the_engine_decides_the_same_on_this_environments_numpy(
    checked: dict[str, Any], tmp_path: Path
) -> None:
    assert checked["engine"] == engine_digest(tmp_path)


@pytest.mark.parametrize(
    ("xrt", "says"),
    [
        (None, "XRT is not set up (XILINX_XRT is not set)"),
        ("/nonexistent", "XRT's library did not load from XILINX_XRT=/nonexistent"),
    ],
)
def test_serve_card_pynq_in_the_pynq_env_says_one_line(
    pynq_python: Path, tmp_path: Path, xrt: str | None, says: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XILINX_XRT"}
    if xrt is not None:
        env["XILINX_XRT"] = xrt
    cmd = [str(pynq_python), "-m", "riskgw.cli", "serve", "--rules", *map(str, RULES), "--card", "pynq"]
    cmd += ["--user", "b:p:1", "--journal", str(tmp_path / "j"), "--no-fsync"]
    done = subprocess.run(
        cmd, capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"riskgw: error: --card pynq: {says}") and "make pynq-env" in done.stderr
