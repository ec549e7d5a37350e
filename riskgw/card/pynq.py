"""`PynqCard`: `rgw_card` on a Xilinx Alveo U200, driven through pynq 3.0.1 and XRT.

The register-level driver is `CardRegs`, unchanged: it runs here over pynq's MMIO of the card's
compute unit (`MmioBus`). Orders and decisions go through the rings of riskgw/card/rings.py, two
`pynq.allocate` buffers on the card's memory bank, synced once per batch; latency comes from the
fabric's timestamps (the TIMESTAMPS block), not from the host's clock.

pynq is imported only when a card is opened, so this module imports without it. pynq 3.0.1 (the
optional extra `fpga`) needs numpy < 2, which riskgw's own pin excludes: `make pynq-env` builds an
environment with both (bitstreams/README.md).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from riskgw.card.driver import CardDriver, CardError
from riskgw.card.manifest import Manifest, load_manifest, xclbin_path
from riskgw.card.regs import CardId, CardRegs, Timestamp
from riskgw.card.rings import SLOT_BYTES, Packet, RingHost

# the frames and how they answer are the simulated card's: both cards are held to one contract
from riskgw.card.simcard import ALL_INPUTS, BROKER_SESSION, EXCH_SESSION, _Answers, event_frame, section_reads
from riskgw.doe.image import Image
from riskgw.doe.isa import Event
from riskgw.engine.engine import Decision
from riskgw.engine.state import Snapshot
from riskgw.engine.table import Value
from riskgw.errors import UserError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[2] / "bitstreams" / "manifest.json"
MANIFEST_ENV = "RISKGW_MANIFEST"  # another manifest than bitstreams/manifest.json
BATCH = 256  # events per ring batch: one sync and one RX_HEAD write each
INSTALL_HINT = (
    "set up pynq 3.0.1 with `make pynq-env` (pip install -e '.[fpga]' on numpy<2, as pynq 3.0.1 needs)"
    " and XRT (source /opt/xilinx/xrt/setup.sh), or run without a card: --card soft"
)


class Mmio(Protocol):
    """What pynq's DefaultIP (and MMIO) offer: 32-bit register access at byte offsets."""

    def read(self, offset: int = 0) -> int: ...

    def write(self, offset: int, value: int) -> None: ...


class MmioBus:
    """riskgw.card.bus.Bus over a pynq register window (one AXI-Lite access per word over PCIe)."""

    def __init__(self, mmio: Mmio) -> None:
        self.mmio = mmio

    def read32(self, addr: int) -> int:
        return int(self.mmio.read(addr)) & 0xFFFFFFFF

    def write32(self, addr: int, value: int) -> None:
        self.mmio.write(addr, value & 0xFFFFFFFF)

    def write_many(self, writes: Sequence[tuple[int, int]]) -> None:
        for addr, value in writes:
            self.mmio.write(addr, value & 0xFFFFFFFF)

    def read_many(self, addrs: Sequence[int]) -> list[int]:
        return [int(self.mmio.read(a)) & 0xFFFFFFFF for a in addrs]


class PynqMemory:
    """A ring buffer allocated with `pynq.allocate` on a card memory bank (RingMemory)."""

    def __init__(self, buffer: Any) -> None:
        self.buffer = buffer

    @property
    def array(self) -> np.ndarray:
        arr: np.ndarray = self.buffer
        return arr

    @property
    def device_address(self) -> int:
        return int(self.buffer.device_address)

    def to_device(self, start: int, stop: int) -> None:
        self.buffer[start:stop].sync_to_device()

    def from_device(self, start: int, stop: int) -> None:
        self.buffer[start:stop].sync_from_device()


def _import_pynq() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pynq warns on import and probe; the caller says one line
            import pynq
    except ImportError:
        raise UserError(f"--card pynq: the pynq package is not installed: {INSTALL_HINT}") from None
    except OSError as exc:  # pynq loads XRT's C library from $XILINX_XRT when it is imported
        raise UserError(
            f"--card pynq: XRT's library did not load from XILINX_XRT={os.environ.get('XILINX_XRT')} ({exc}):"
            f" {INSTALL_HINT}"
        ) from None
    if int(np.__version__.split(".")[0]) >= 2:  # PynqBuffer sets ndarray.device, read-only since numpy 2
        raise UserError(
            f"--card pynq: pynq 3.0.1 cannot allocate buffers with numpy {np.__version__}: {INSTALL_HINT}"
        )
    return pynq


def find_device() -> Any:
    """The first Alveo card XRT sees; UserError (one line) saying what is missing."""
    pynq = _import_pynq()
    if not os.environ.get("XILINX_XRT"):
        raise UserError(f"--card pynq: XRT is not set up (XILINX_XRT is not set): {INSTALL_HINT}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            devices = list(pynq.Device.devices)
    except Exception as exc:  # pynq's probe raises whatever XRT's C library gives it
        raise UserError(f"--card pynq: XRT could not list the cards ({exc}): {INSTALL_HINT}") from None
    if not devices:
        raise UserError(
            "--card pynq: XRT finds no Alveo card (`xbutil examine` lists them):"
            " run without a card with --card soft"
        )
    return devices[0]


def card_available() -> str | None:
    """None when a U200 can be opened here, else why not (for `--card auto`)."""
    try:
        find_device()
    except UserError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class Latency:
    seq: int
    cycles: int
    ns: float


class PynqCard(CardDriver):
    """A U200 running `rgw_card`: CardRegs over MMIO for control, memory rings for events.

    `PynqCard.open()` loads the xclbin of bitstreams/manifest.json; the constructor takes the
    opened parts, so the same driver runs over a model of the card in tests.
    """

    def __init__(
        self,
        regs: CardRegs,
        rings: RingHost,
        manifest: Manifest | None = None,
        release: Callable[[], None] | None = None,
        timeout_s: float = 1.0,
    ) -> None:
        self.regs = regs
        self.rings = rings
        self.manifest = manifest
        self.timeout_s = timeout_s
        self._release = release
        self._image: Image | None = None
        self._closed = False
        self._seq = 0
        self._reads: dict[Event, frozenset[int]] = {}
        self.ident: CardId = self._attach()
        self.rings.start()
        self.batches = 0  # ring batches sent: each is one sync to the device and one doorbell

    def _attach(self) -> CardId:
        m = self.manifest
        try:
            ident = self.regs.attach(git_hash=m.git_hash if m else None)
        except CardError as exc:
            where = " (bitstreams/manifest.json)" if m else ""
            raise UserError(f"the card does not match this riskgw{where}: {exc}") from None
        if m is not None:
            for name, want, got in (
                ("ABI version", m.abi_version, ident.abi_version),
                ("stream width", m.data_w, ident.data_w),
                ("clock", m.clock_mhz, ident.clock_mhz),
            ):
                if want != got:
                    raise UserError(f"the card reports {name} {got}, bitstreams/manifest.json says {want}")
        return ident

    @classmethod
    def open(cls, manifest_path: Path | None = None) -> PynqCard:
        """Load the manifest's xclbin on the first U200 and attach; UserError on any mismatch."""
        path = manifest_path or Path(os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST)
        device = find_device()
        manifest = load_manifest(path)
        xclbin = xclbin_path(manifest, path)
        pynq = _import_pynq()
        try:
            overlay = pynq.Overlay(str(xclbin), device=device)
            card_ip = getattr(overlay, manifest.kernels["card"])
            ring_ip = getattr(overlay, manifest.kernels["rings"])
            bank = getattr(overlay, manifest.memory)
            nbytes = manifest.ring_slots * SLOT_BYTES
            rx = pynq.allocate((nbytes,), dtype=np.uint8, target=bank)
            tx = pynq.allocate((nbytes,), dtype=np.uint8, target=bank)
        except (RuntimeError, AttributeError, OSError, ValueError) as exc:
            raise UserError(f"pynq could not load {xclbin} on {device.name}: {exc}") from None

        def release() -> None:
            for buf in (rx, tx):
                buf.freebuffer()
            overlay.free()

        regs = CardRegs(MmioBus(card_ip), manifest.doe_params())
        rings = RingHost(MmioBus(ring_ip), PynqMemory(rx), PynqMemory(tx))
        try:
            return cls(regs, rings, manifest, release)
        except (UserError, CardError):
            release()
            raise

    # ------------------------------------------------------------------ CardDriver

    def _live(self) -> Image:
        if self._closed:
            raise CardError("the card is closed")
        if self._image is None:
            raise CardError("no program image is loaded")
        return self._image

    @property
    def image(self) -> Image:
        return self._live()

    def load_image(self, image: Image) -> None:
        if self._closed:
            raise CardError("the card is closed")
        if image.abi != self.ident.abi_version:
            raise CardError(
                f"the program image is ABI version {image.abi}, the card runs {self.ident.abi_version}"
            )
        self._image = None
        self.regs.load_image(image)
        self.regs.enable(EXCH_SESSION)
        self._reads = section_reads(image)  # fields a frame cannot hold go as 0 where no rule reads them
        self._image = image

    def load_rows(self, table_id: int, rows: Iterable[Sequence[Value]]) -> int:
        image = self._live()
        config = next((t for t in image.tables if t.id == table_id), None)
        if config is None:
            raise CardError(f"the program has no table {table_id}")
        return self.regs.load_rows(config, rows)

    def process(self, event: Event, inputs: Sequence[Value]) -> Decision:
        return self.process_many([(event, inputs)])[0]

    def process_many(self, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        """Run events in order; the frames of up to BATCH events share one sync and one doorbell."""
        image = self._live()
        out: list[Decision] = []
        for start in range(0, len(items), BATCH):
            out += self._batch(image, items[start : start + BATCH])
        if items:
            self.regs.forget_keys()  # events may have inserted rows the host has not seen
            self.regs.check_faults()
        return out

    def _batch(self, image: Image, items: Sequence[tuple[Event, Sequence[Value]]]) -> list[Decision]:
        packets: list[Packet] = []
        sent: list[tuple[Event, int, bytes]] = []  # event, seq, frame
        for event, inputs in items:
            self._seq = self._seq % 0xFFFFFFFF + 1
            try:
                frame = event_frame(event, inputs, self._seq, self._reads.get(event, ALL_INPUTS))
            except ValueError as exc:
                raise CardError(f"cannot send the event to the card: {exc}") from None
            packets.append(Packet(BROKER_SESSION if event is Event.NEW else EXCH_SESSION, frame))
            sent.append((event, self._seq, frame))
        answers = _Answers(image, sent)
        self.rings.send(packets)
        self.batches += 1
        deadline = time.monotonic() + self.timeout_s
        while not answers.complete():
            got = self.rings.poll()
            if not got:
                if time.monotonic() > deadline:
                    self.rings.check()
                    self.regs.check_faults()
                    raise CardError(
                        f"the card answered {len(answers.decisions)} of {len(items)} events"
                        f" within {self.timeout_s} s"
                    )
                continue
            for packet in got:
                answers.take(packet.session, packet.data)
        return answers.decisions

    def state_hash(self) -> str:
        return self.snapshot().hash

    def snapshot(self) -> Snapshot:
        return self.regs.snapshot(self._live())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._image = None
        try:
            self.regs.disable()
        finally:
            if self._release is not None:
                self._release()

    # ------------------------------------------------------------------ health and latency

    def heartbeat(self) -> int:
        return self.regs.heartbeat()

    def latencies(self) -> list[Latency]:
        """Rx-to-tx latency of the last orders (up to TS_RING), from the fabric's cycle stamps."""
        ns_per_cycle = 1000.0 / self.ident.clock_mhz
        stamps: list[Timestamp] = self.regs.timestamps()
        return [Latency(t.seq, t.latency, t.latency * ns_per_cycle) for t in stamps]
