"""`bitstreams/manifest.json`: what a built xclbin is, written by the Vitis flow, read by PynqCard.

{
  "schema": 1,
  "xclbin": "riskgw_u200.xclbin",             # beside the manifest
  "xclbin_sha256": "<64 hex>",
  "platform": "xilinx_u200_gen3x16_xdma_2_202110_1",
  "tools": {"vitis": "2022.1", "xrt": "2.13.466"},
  "git_hash": "<40 hex>",                     # the commit rgw_card was built from (ID.GIT_HASH)
  "abi_version": 1,                           # ID.ABI_VERSION
  "clock_mhz": 250,
  "data_w": 512,
  "doe": {"LANES": 8, ...},                   # rgw_card's DOE parameters (riskgw.card.doeport.DoeParams.hdl)
  "kernels": {"card": "rgw_card_krnl_1", "rings": "rgw_ring_dma_1"},   # compute-unit names
  "memory": "bank1",                          # pynq's name of the bank the rings live in
  "ring_slots": 1024
}
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from riskgw.card.doeport import DoeParams
from riskgw.errors import UserError

SCHEMA = 1
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DOE_KEYS = tuple(DoeParams().hdl())


@dataclass(frozen=True)
class Manifest:
    xclbin: str
    xclbin_sha256: str
    platform: str
    tools: dict[str, str]
    git_hash: str
    abi_version: int
    clock_mhz: int
    data_w: int
    doe: dict[str, int]
    kernels: dict[str, str]
    memory: str
    ring_slots: int
    schema: int = SCHEMA

    def doe_params(self) -> DoeParams:
        return DoeParams(**{k.lower(): v for k, v in self.doe.items()})

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Manifest:
        """Validate a parsed manifest; ValueError naming the first bad field."""
        if not isinstance(raw, dict):
            raise ValueError(f"{where}: not a JSON object")
        want: dict[str, type] = {
            "schema": int,
            "xclbin": str,
            "xclbin_sha256": str,
            "platform": str,
            "tools": dict,
            "git_hash": str,
            "abi_version": int,
            "clock_mhz": int,
            "data_w": int,
            "doe": dict,
            "kernels": dict,
            "memory": str,
            "ring_slots": int,
        }
        for key, typ in want.items():
            if key not in raw:
                raise ValueError(f"{where}: no {key!r}")
            if not isinstance(raw[key], typ) or isinstance(raw[key], bool):
                raise ValueError(f"{where}: {key!r} must be a {typ.__name__}")
        extra = sorted(set(raw) - set(want))
        if extra:
            raise ValueError(f"{where}: unknown field {extra[0]!r}")
        if raw["schema"] != SCHEMA:
            raise ValueError(f"{where}: schema {raw['schema']}, this riskgw reads {SCHEMA}")
        if not _HEX40.fullmatch(raw["git_hash"]):
            raise ValueError(f"{where}: git_hash must be 40 lower-case hex digits")
        if not _HEX64.fullmatch(raw["xclbin_sha256"]):
            raise ValueError(f"{where}: xclbin_sha256 must be 64 lower-case hex digits")
        if "/" in raw["xclbin"] or not raw["xclbin"].endswith(".xclbin"):
            raise ValueError(f"{where}: xclbin must be a file name ending .xclbin, beside the manifest")
        if set(raw["tools"]) != {"vitis", "xrt"} or not all(
            isinstance(v, str) for v in raw["tools"].values()
        ):
            raise ValueError(f"{where}: tools must give the vitis and xrt versions as strings")
        if set(raw["kernels"]) != {"card", "rings"} or not all(
            isinstance(v, str) for v in raw["kernels"].values()
        ):
            raise ValueError(f"{where}: kernels must name the card and rings compute units")
        if set(raw["doe"]) != set(_DOE_KEYS) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in raw["doe"].values()
        ):
            raise ValueError(f"{where}: doe must give the positive integers {', '.join(_DOE_KEYS)}")
        n = raw["ring_slots"]
        if n < 2 or n & (n - 1):
            raise ValueError(f"{where}: ring_slots must be a power of two, at least 2")
        if raw["data_w"] not in (64, 128, 256, 512):
            raise ValueError(f"{where}: data_w must be 64, 128, 256 or 512")
        return cls(**raw)


def load_manifest(path: Path) -> Manifest:
    """Read and validate a manifest; UserError (one line) when it is missing or wrong."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path} not found: build the card image with `make -C bitstreams`"
            " (Vitis, see bitstreams/README.md)"
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: cannot read it: {exc}") from None
    try:
        return Manifest.from_dict(raw, str(path))
    except ValueError as exc:
        raise UserError(str(exc)) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def xclbin_path(manifest: Manifest, manifest_path: Path) -> Path:
    """The manifest's xclbin, checked against its checksum; UserError when missing or changed."""
    path = manifest_path.parent / manifest.xclbin
    if not path.is_file():
        raise UserError(f"{path} not found: {manifest_path} names it; rebuild with `make -C bitstreams`")
    digest = sha256_file(path)
    if digest != manifest.xclbin_sha256:
        raise UserError(
            f"{path} has sha256 {digest[:16]}..., {manifest_path} says {manifest.xclbin_sha256[:16]}...:"
            " the xclbin is not the one the manifest describes"
        )
    return path


def pynq_memory_name(cfg: Path) -> str:
    """The bank the ring DMA's `sp=` line of a v++ connectivity file names, as pynq spells it."""
    banks = [
        line.split(":", 1)[1].strip()
        for line in cfg.read_text(encoding="utf-8").splitlines()
        if line.startswith("sp=") and ":" in line
    ]
    if len(banks) != 1:
        raise ValueError(f"{cfg}: expected one sp= line, found {len(banks)}")
    return re.sub("[^A-Za-z0-9_]", "", banks[0])  # pynq's attribute for DDR[1] is DDR1


def main(argv: list[str] | None = None) -> int:
    """Write the manifest of a freshly linked xclbin (bitstreams/Makefile runs this)."""
    import argparse

    from riskgw.card import vitis
    from riskgw.doe.isa import ABI_VERSION

    p = argparse.ArgumentParser(prog="python -m riskgw.card.manifest", description=main.__doc__)
    p.add_argument("--xclbin", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="manifest.json, beside the xclbin")
    p.add_argument("--platform", required=True)
    p.add_argument("--vitis", required=True, help="Vitis version the xclbin was built with")
    p.add_argument("--xrt", required=True, help="XRT version it is meant for")
    p.add_argument("--git-hash", required=True, help="the commit baked into the ID block")
    p.add_argument("--cfg", type=Path, required=True, help="the v++ connectivity file")
    p.add_argument("--ring-slots", type=int, default=1024)
    args = p.parse_args(argv)
    if args.xclbin.parent.resolve() != args.out.parent.resolve():
        raise SystemExit("the manifest must sit beside the xclbin")
    manifest = Manifest.from_dict(
        {
            "schema": SCHEMA,
            "xclbin": args.xclbin.name,
            "xclbin_sha256": sha256_file(args.xclbin),
            "platform": args.platform,
            "tools": {"vitis": args.vitis, "xrt": args.xrt},
            "git_hash": args.git_hash.lower(),
            "abi_version": ABI_VERSION,
            "clock_mhz": vitis.CLOCK_MHZ,
            "data_w": vitis.DATA_W,
            "doe": DoeParams().hdl(),
            "kernels": {"card": f"{vitis.CARD_KERNEL.name}_1", "rings": f"{vitis.RING_KERNEL.name}_1"},
            "memory": pynq_memory_name(args.cfg),
            "ring_slots": args.ring_slots,
        },
        "the new manifest",
    )
    args.out.write_text(manifest.to_json(), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
