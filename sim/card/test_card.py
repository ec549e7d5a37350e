"""rgw_card through its host interfaces only: the AXI-Lite register blocks and the TOE streams.

Every tx frame is compared with what the software engine makes of the same rx packets
(card_model.py), and the tables are read back through the DOE register window and compared with
the engine's, bit for bit. Streams run with idle cycles on rx and back-pressure on tx.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import cocotb
import pytest
from card_model import (
    CardModel,
    Expected,
    frame_inputs,
    garble,
    gateway_inputs,
    order_frame,
    scenario_flow,
    stray_frames,
    without_ts,
)
from cocotb.triggers import ClockCycles, with_timeout

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "doe"))
from test_doe import compiled, random_events, random_rows, rules_image, signed

from riskgw.card.cocotb_bench import CardBench
from riskgw.card.doeport import REGION_COUNT, DoeParams, addr, cell_addr, hash_bucket, image_writes
from riskgw.card.regmap import (
    BLOCKS,
    CARD_MAGIC,
    CONTROL_BLOCK,
    COUNTERS_BLOCK,
    DOE_BLOCK,
    HEARTBEAT_SHIFT,
    ID_BLOCK,
    TS_BLOCK,
    TS_RING,
    Control,
    Counter,
    DoeCmd,
    Status,
)
from riskgw.doe.image import Image
from riskgw.doe.isa import ABI_VERSION, Event
from riskgw.engine.engine import DuplicateKeyError, Engine
from riskgw.gateway import protocol
from riskgw.gateway.protocol import MsgType

SEED_RULES = Path("/work/shared/fixtures/seed_rules.sql")
GIT_HASH = 0x0123456789ABCDEF0123456789ABCDEF01234567
EXCH = 7  # EXCH_SESSION: accepted orders go there
EXCH_IN = 9  # the session the exchange's FILL / EXCH_REJECT / CANCELLED frames come in on
BROKERS = [1, 2, 3]
M32 = 0xFFFFFFFF
Value = int | None


def params() -> DoeParams:
    return DoeParams(**{k: int(v) for k, v in (kv.split("=") for kv in os.environ["RGW_PARAMS"].split(","))})


class Card(CardBench):
    """CardBench plus the DOE window: image and row loads, cell read-back, counters."""

    def __init__(self, dut, seed: int = 1) -> None:  # type: ignore[no-untyped-def]
        super().__init__(dut, seed)
        self.p = params()
        self.cmds = 0
        self._data: tuple[int, int] | None = None

    async def up(self, exch: int = EXCH) -> None:
        await self.start()
        await self.wait_ready()
        await self.axil_write(CONTROL_BLOCK.addr("EXCH_SESSION"), exch)
        await self.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE)

    async def wait_ready(self) -> None:
        for _ in range(10_000):
            if not await self.axil_read(CONTROL_BLOCK.addr("STATUS")) & Status.DOE_BUSY:
                return
        raise AssertionError("the DOE stays busy after reset")

    async def read64(self, a: int) -> int:
        lo = await self.axil_read(a)
        return lo | await self.axil_read(a + 4) << 32

    async def doe_write(self, a: int, data: int) -> None:
        await self.axil_write(DOE_BLOCK.addr("ADDR"), a)
        data &= (1 << 64) - 1
        lo, hi = data & M32, data >> 32
        if self._data is None or self._data[0] != lo:
            await self.axil_write(DOE_BLOCK.addr("DATA", 0), lo)
        if self._data is None or self._data[1] != hi:
            await self.axil_write(DOE_BLOCK.addr("DATA", 1), hi)
        self._data = (lo, hi)
        await self.axil_write(DOE_BLOCK.addr("CMD"), DoeCmd.WRITE)
        self.cmds += 1

    async def wait_cmds(self) -> None:
        for _ in range(10_000):
            if await self.axil_read(DOE_BLOCK.addr("CMD_DONE")) == self.cmds:
                return
        raise AssertionError(f"CMD_DONE stays below {self.cmds}")

    async def doe_read(self, a: int) -> int:
        await self.axil_write(DOE_BLOCK.addr("ADDR"), a)
        await self.axil_write(DOE_BLOCK.addr("CMD"), DoeCmd.READ)
        self.cmds += 1
        await self.wait_cmds()
        return await self.read64(DOE_BLOCK.addr("RDATA"))

    async def load_image(self, image: Image) -> None:
        for a, data in image_writes(image, self.p):
            await self.doe_write(a, data)
        await self.wait_cmds()

    async def load_row(self, table: int, words: list[Value]) -> None:
        await self.axil_write(DOE_BLOCK.addr("ROW_TABLE"), table)
        nulls = 0
        for i, w in enumerate(words):
            v = 0 if w is None else w & ((1 << 64) - 1)
            nulls |= int(w is None) << i
            await self.axil_write(DOE_BLOCK.addr("ROW_WORDS", 2 * i), v & M32)
            await self.axil_write(DOE_BLOCK.addr("ROW_WORDS", 2 * i + 1), v >> 32)
        nulls |= ((1 << 16) - 1) & ~((1 << len(words)) - 1)
        await self.axil_write(DOE_BLOCK.addr("ROW_NULLS"), nulls)
        await self.axil_write(DOE_BLOCK.addr("CMD"), DoeCmd.LOAD_ROW)
        self.cmds += 1

    async def table_state(self, image: Image) -> dict[int, list[tuple[Value, ...]]]:
        out = {}
        for t in image.tables:
            n = await self.doe_read(addr(REGION_COUNT, t.id))
            rows = []
            for r in range(n):
                row: list[Value] = []
                for c in range(len(t.columns)):
                    null = await self.doe_read(cell_addr(self.p, t.id, c, r, True))
                    value = await self.doe_read(cell_addr(self.p, t.id, c, r, False))
                    row.append(None if null else signed(value))
                rows.append(tuple(row))
            out[t.id] = rows
        return out

    async def flow(self, c: Counter) -> int:
        return await self.read64(COUNTERS_BLOCK.addr("FLOW", 2 * c))

    async def rule(self, r: int) -> int:
        return await self.read64(COUNTERS_BLOCK.addr("RULE", 2 * r))


# ---------------------------------------------------------------------------- running traffic

Packet = tuple[int, bytes]
Row = tuple[int, list[Value]]


async def exchange(card: Card, packets: list[Packet], model: CardModel, idle: float) -> list[Packet]:
    """Send the packets, let the model answer them too, and collect as many tx frames as it
    expects; a card that wedges or loses a frame fails the timeout."""
    for session, data in packets:
        model.packet(session, data)
    want = len(model.out.frames)
    got: list[Packet] = []

    async def collect() -> None:
        while len(got) < want:
            got.append(await card.recv())

    task = cocotb.start_soon(collect())
    for session, data in packets:
        await card.send(session, data, idle_prob=idle)
    await with_timeout(task, 2_000 + 400 * want + 2 * sum(len(d) for _, d in packets), "us")
    await ClockCycles(card.dut.clk, 50)
    assert card.tx_pending() == 0, "the card sent more frames than the model expects"
    return got


def compare(got: list[Packet], want: Expected) -> None:
    for i, ((gs, gf), (ws, wf)) in enumerate(zip(got, want.frames, strict=True)):
        assert (gs, without_ts(gf)) == (ws, wf), (
            f"tx frame {i}: card session {gs} {gf.hex()}, expected session {ws} {wf.hex()}"
        )


async def check_counters(card: Card, want: Expected, tx_frames: int) -> None:
    events = want.events
    expect = {
        Counter.RX_FRAMES: want.rx_frames,
        Counter.NEW: events.get(Event.NEW, 0),
        Counter.FILL: events.get(Event.FILL, 0),
        Counter.REJECT: events.get(Event.REJECT, 0),
        Counter.CANCEL: events.get(Event.CANCEL, 0),
        Counter.ACCEPTED: want.accepted,
        Counter.REJECTED: want.rejected,
        Counter.PROTOCOL_ERRORS: want.protocol_errors,
        Counter.TX_FRAMES: tx_frames,
    }
    for c, n in expect.items():
        assert await card.flow(c) == n, f"counter {c.name}"
    for r in range(card.p.rules):
        assert await card.rule(r) == want.rule_failures.get(r, 0), f"failures of rule {r}"


async def check_stamps(card: Card, want: Expected, cycles_before: int) -> None:
    n = len(want.new_orders)
    assert await card.axil_read(TS_BLOCK.addr("WRITTEN")) == n
    latencies = []
    for i in range(max(0, n - TS_RING), n):
        base = TS_BLOCK.addr("RING", 4 * (i % TS_RING))
        seq, session, rx, tx = [await card.axil_read(base + 4 * k) for k in range(4)]
        assert (seq, session) == want.new_orders[i], f"timestamp record {i}"
        assert cycles_before & M32 <= rx <= tx, f"record {i}: rx {rx} tx {tx}"
        latencies.append(tx - rx)
    if latencies:
        card.dut._log.info(
            "rx first beat -> tx first beat of the answer to a NEW: min %d max %d cycles",
            min(latencies),
            max(latencies),
        )


def as_packets(rng: random.Random, frames: list[Packet], max_frames: int) -> list[list[Packet]]:
    """Consecutive frames of one session grouped into packets of up to `max_frames`."""
    groups: list[list[Packet]] = []
    for s, f in frames:
        if groups and groups[-1][0][0] == s and len(groups[-1]) < rng.randint(1, max_frames):
            groups[-1].append((s, f))
        else:
            groups.append([(s, f)])
    return groups


def event_frames(rng: random.Random, n: int, seq0: int = 1) -> list[Packet]:
    """Frames of a random order flow: NEWs from the brokers, the rest from the exchange."""
    seqs: dict[int, int] = {}
    out = []
    for kind, fields in random_events(rng, n):
        session = rng.choice(BROKERS) if kind is Event.NEW else EXCH_IN
        seq = seqs.get(session, seq0)
        seqs[session] = seq + 1
        frame = order_frame(kind, seq, fields)
        assert frame_inputs(frame) == gateway_inputs(frame), "the card and the gateway map fields apart"
        out.append((session, frame))
    return out


async def load_rows(card: Card, engine: Engine, rows: list[tuple[int, list[Value]]]) -> None:
    for tid, words in rows:
        try:
            engine.load_row(tid, words)
        except DuplicateKeyError:
            continue
        await card.load_row(tid, words)
    await card.wait_cmds()


async def differential(  # type: ignore[no-untyped-def]  # dut: cocotb's handle, signals found by name
    dut,
    image: Image,
    rows: list[tuple[int, list[Value]]],
    frames: list[Packet],
    seed: int,
    idle: float,
    stall: float,
    garbage: float = 0.0,
    tail: tuple[Packet, ...] = (),
) -> None:
    """Load `image` and `rows`, send `frames` grouped into packets (garbled when `garbage` > 0,
    then the `tail` packets as they are), and compare every answer, the counters, the stamps and
    the final tables with the software engine."""
    card = Card(dut, seed)
    await card.up()
    await card.load_image(image)
    engine = Engine(image, backend="interp")
    rng = random.Random(seed)
    await load_rows(card, engine, rows)
    packets: list[Packet] = []
    for group in as_packets(rng, frames, 3):
        data = garble(rng, [f for _, f in group], garbage) if garbage else b"".join(f for _, f in group)
        if garbage and rng.random() < garbage / 3:
            data = data[: rng.randint(1, len(data) - 1)]  # truncated: the packet ends inside a frame
        packets.append((group[0][0], data))
    packets += tail
    card.set_tx_backpressure(stall)
    cycles_before = await card.read64(CONTROL_BLOCK.addr("CYCLES"))
    model = CardModel(engine, EXCH)
    got = await exchange(card, packets, model, idle)
    card.set_tx_backpressure(0)
    want = model.out
    compare(got, want)
    assert want.accepted and want.rejected, "the events should exercise both verdicts"
    dut._log.info(
        "%d packets: %d NEW accepted, %d rejected, %d protocol rejects, %d tx frames",
        len(packets),
        want.accepted,
        want.rejected,
        want.protocol_errors,
        len(got),
    )
    await check_counters(card, want, len(got))
    await check_stamps(card, want, cycles_before)
    status = await card.axil_read(CONTROL_BLOCK.addr("STATUS"))
    assert not status & (Status.INDEX_FULL | Status.TABLE_FULL), f"status {status:#x}: enlarge the DOE"
    assert bool(status & Status.PROTOCOL_ERROR) == bool(want.protocol_errors)
    state = await card.table_state(image)
    for t in image.tables:
        want_rows = engine.state.table(t.id).rows()
        assert state[t.id] == want_rows, f"table {t.name}: card {state[t.id]}, engine {want_rows}"


# ---------------------------------------------------------------------------- tests


@cocotb.test()
async def run_registers(dut) -> None:  # type: ignore[no-untyped-def]
    """The block chain, the ID block, CONTROL / STATUS, heartbeat, cycles, counters' reset."""
    card = Card(dut)
    await card.start()
    p = card.p
    # walk the chain from 0: every block of the map, in order, with its type and version
    a, seen = 0, []
    for _ in range(len(BLOCKS) + 1):
        tv = await card.axil_read(a)
        seen.append((a, tv >> 16, tv & 0xFFFF))
        a = await card.axil_read(a + 4)
        if a == 0:
            break
    assert seen == [(b.base, int(b.type), b.version) for b in BLOCKS], seen
    assert await card.axil_read(ID_BLOCK.addr("MAGIC")) == CARD_MAGIC
    assert await card.axil_read(ID_BLOCK.addr("ABI_VERSION")) == ABI_VERSION
    words = [await card.axil_read(ID_BLOCK.addr("GIT_HASH", i)) for i in range(5)]
    assert sum(w << (32 * (4 - i)) for i, w in enumerate(words)) == GIT_HASH
    ident = {
        "DATA_W": len(dut.s_axis_rx_tdata),
        "LANES": p.lanes,
        "TABLES": p.tables,
        "COLS": p.cols,
        "ROWS_LOG2": (p.rows - 1).bit_length(),
        "RULES": p.rules,
        "REGS": p.regs,
        "PROG_ROWS": p.prog_rows,
        "CLOCK_MHZ": 250,
        "KEY_WORDS": p.key_words,
        "WAYS": p.ways,
        "SCANS": p.scans,
        "IN_WORDS": p.in_words,
    }
    for name, want in ident.items():
        assert await card.axil_read(ID_BLOCK.addr(name)) == want, name
    assert await card.axil_read(COUNTERS_BLOCK.addr("N_FLOW")) == len(Counter)
    assert await card.axil_read(COUNTERS_BLOCK.addr("N_RULE")) == p.rules
    assert await card.axil_read(TS_BLOCK.addr("SIZE")) == TS_RING

    # right after reset the DOE clears its tables; rx is enabled only once it is ready
    status = await card.axil_read(CONTROL_BLOCK.addr("STATUS"))
    assert status & Status.DOE_BUSY and not status & Status.RX_ENABLED, f"{status:#x}"
    await card.wait_ready()
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) == 0
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE)
    assert await card.axil_read(CONTROL_BLOCK.addr("CONTROL")) == Control.ENABLE
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) == Status.RX_ENABLED
    await card.axil_write(CONTROL_BLOCK.addr("EXCH_SESSION"), 0xBEEF)
    assert await card.axil_read(CONTROL_BLOCK.addr("EXCH_SESSION")) == 0xBEEF

    # heartbeat and cycles advance; the cycle pair read low-then-high is consistent
    hb = await card.axil_read(CONTROL_BLOCK.addr("HEARTBEAT"))
    c0 = await card.read64(CONTROL_BLOCK.addr("CYCLES"))
    await ClockCycles(dut.clk, 3 << HEARTBEAT_SHIFT)
    c1 = await card.read64(CONTROL_BLOCK.addr("CYCLES"))
    hb1 = await card.axil_read(CONTROL_BLOCK.addr("HEARTBEAT"))
    assert c1 - c0 >= 3 << HEARTBEAT_SHIFT
    assert hb1 - hb in (3, 4), (hb, hb1)

    # a protocol reject sets the sticky bit and counts; write-1-to-clear; counters clear
    await card.send(1, b"\xff" * 16)
    session, frame = await card.recv()
    f = protocol.decode(frame)
    assert (session, f.type, f["reason"], f.seq) == (1, MsgType.REJECTED, protocol.Reason.PROTOCOL, 0)
    status = await card.axil_read(CONTROL_BLOCK.addr("STATUS"))
    assert status == Status.RX_ENABLED | Status.PROTOCOL_ERROR, f"{status:#x}"
    assert await card.flow(Counter.PROTOCOL_ERRORS) == 1
    assert await card.flow(Counter.TX_FRAMES) == 1
    await card.axil_write(CONTROL_BLOCK.addr("STATUS"), Status.PROTOCOL_ERROR)
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) == Status.RX_ENABLED
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE | Control.CLEAR_COUNTERS)
    assert await card.flow(Counter.PROTOCOL_ERRORS) == 0
    assert await card.axil_read(CONTROL_BLOCK.addr("CONTROL")) == Control.ENABLE

    # a disabled card back-pressures rx; enabling it lets the frame through
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), 0)
    await card.send(2, protocol.encode(MsgType.HEARTBEAT, 5))
    await ClockCycles(dut.clk, 200)
    assert card.tx_pending() == 0 and await card.flow(Counter.RX_FRAMES) == 0
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE)
    session, frame = await with_timeout(card.recv(), 10, "us")
    f = protocol.decode(frame)
    assert (session, f.seq, f["reason"]) == (2, 5, protocol.Reason.PROTOCOL), "HEARTBEAT is not run"
    assert await card.flow(Counter.RX_FRAMES) == 1

    # RESET clears the DOE (busy again), the counters and CMD_DONE; ENABLE stays
    await card.doe_write(0x3 << 28, 5)
    await card.wait_cmds()
    assert await card.axil_read(DOE_BLOCK.addr("CMD_DONE")) == 1
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE | Control.RESET)
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) & Status.DOE_BUSY
    await card.wait_ready()
    assert await card.flow(Counter.RX_FRAMES) == 0
    assert await card.axil_read(DOE_BLOCK.addr("CMD_DONE")) == 0
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) == Status.RX_ENABLED
    # the DOE's own ID through the window
    card.cmds = 0
    ident_word = await card.doe_read(0)
    assert ident_word == int.from_bytes(b"RGWD", "big") << 32 | ABI_VERSION, f"{ident_word:#x}"


def random_flow(image: Image, seed: int, n_rows: int, n_events: int) -> tuple[list[Row], list[Packet]]:
    rng = random.Random(seed)
    return random_rows(image, rng, n_rows), event_frames(rng, n_events)


def scenario_packets(image: Image, n_orders: int, seed: int) -> tuple[list[Row], list[Packet]]:
    """riskgw.scenario's session: NEW from the brokers in turn, the rest from the exchange."""
    rows, events = scenario_flow(image, n_orders, seed)
    frames = [
        (BROKERS[i % len(BROKERS)] if kind is Event.NEW else EXCH_IN, frame)
        for i, (kind, frame) in enumerate(events)
    ]
    for _, frame in frames:
        assert frame_inputs(frame) == gateway_inputs(frame), "the card and the gateway map fields apart"
    return rows, frames


@cocotb.test()
@cocotb.parametrize(stall=[0.0, 0.6])
async def run_streams(dut, stall: float) -> None:  # type: ignore[no-untyped-def]
    """Stream conversion on the reference rule file: NEW (both verdicts), FILL, EXCH_REJECT,
    CANCELLED, alone and several to a packet, with idle rx cycles and tx back-pressure."""
    image = compiled([SEED_RULES], params().lanes)
    rows, frames = random_flow(image, seed=21, n_rows=6, n_events=40)
    await differential(dut, image, rows, frames, seed=21, idle=0.3 if stall else 0.0, stall=stall)


@cocotb.test()
async def run_fuzz(dut) -> None:  # type: ignore[no-untyped-def]
    """Random bytes between and inside frames, truncated packets, frames the card does not run:
    each gets a PROTOCOL reject, every frame still gets its answer, nothing wedges; valid frames
    after all of it are answered as usual."""
    image = compiled([SEED_RULES], params().lanes)
    rng = random.Random(33)
    rows, frames = random_flow(image, seed=33, n_rows=6, n_events=60)
    for _ in range(8):
        stray = rng.choice(stray_frames(rng, rng.randint(1, 50)))
        frames.insert(rng.randrange(len(frames)), (rng.choice(BROKERS), stray))
    tail = tuple(event_frames(rng, 10, seq0=1000))
    await differential(dut, image, rows, frames, seed=33, idle=0.2, stall=0.3, garbage=0.4, tail=tail)


@cocotb.test()
async def run_rules(dut) -> None:  # type: ignore[no-untyped-def]
    """The example rule set (rules/*.sql) on riskgw.scenario's session against the software
    engine, through the whole card."""
    image = rules_image(params().lanes)
    rows, frames = scenario_packets(image, n_orders=30, seed=3)
    await differential(dut, image, rows, frames, seed=12, idle=0.2, stall=0.4)


@cocotb.test()
async def run_seed_rules(dut) -> None:  # type: ignore[no-untyped-def]
    """The reference rule file, unchanged, against the software engine through the whole card."""
    image = compiled([SEED_RULES], params().lanes)
    rows, frames = random_flow(image, seed=5, n_rows=8, n_events=80)
    await differential(dut, image, rows, frames, seed=5, idle=0.1, stall=0.5)


@cocotb.test()
async def run_full(dut) -> None:  # type: ignore[no-untyped-def]
    """A hash bucket with no free way and a table with no free row: STATUS shows INDEX_FULL and
    TABLE_FULL (sticky until a reset), and the rows that did fit are there."""
    card = Card(dut)
    await card.up()
    image = compiled([SEED_RULES], card.p.lanes)
    t = next(t for t in image.tables if not t.hidden and t.key and (Event.LOAD, t.id) in image.code)
    cl_buckets = (card.p.rows - 1).bit_length() + 1
    ways = card.p.ways

    async def load(keys: list[int]) -> None:
        for k in keys:
            words: list[Value] = [0] * len(t.columns)
            words[t.key[0]] = k
            await card.load_row(t.id, words)
        await card.wait_cmds()

    await card.load_image(image)
    same = [k for k in range(1, 100_000) if hash_bucket([k], cl_buckets) == hash_bucket([1], cl_buckets)][
        : ways + 1
    ]
    await load(same)
    assert await card.doe_read(addr(REGION_COUNT, t.id)) == ways
    status = await card.axil_read(CONTROL_BLOCK.addr("STATUS"))
    assert status & Status.INDEX_FULL and not status & Status.TABLE_FULL, f"status {status:#x}"

    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE | Control.RESET)
    await card.wait_ready()
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) == Status.RX_ENABLED
    card.cmds = 0
    await card.load_image(image)
    # keys spread over the buckets, so only the rows run out
    spread: dict[int, list[int]] = {}
    for k in range(1, 100_000):
        spread.setdefault(hash_bucket([k], cl_buckets), []).append(k)
    keys = [k for ks in spread.values() for k in ks[:2]][: card.p.rows + 1]
    await load(keys)
    assert await card.doe_read(addr(REGION_COUNT, t.id)) == card.p.rows
    status = await card.axil_read(CONTROL_BLOCK.addr("STATUS"))
    assert status & Status.TABLE_FULL and not status & Status.INDEX_FULL, f"status {status:#x}"
    await card.axil_write(CONTROL_BLOCK.addr("STATUS"), Status.TABLE_FULL)
    assert await card.axil_read(CONTROL_BLOCK.addr("STATUS")) & Status.TABLE_FULL, (
        "the DOE keeps its flag until its tables are cleared"
    )
    await card.axil_write(CONTROL_BLOCK.addr("CONTROL"), Control.ENABLE | Control.RESET)
    await card.wait_ready()
    assert not await card.axil_read(CONTROL_BLOCK.addr("STATUS")) & Status.TABLE_FULL


@cocotb.test()
async def run_latency(dut) -> None:  # type: ignore[no-untyped-def]
    """Cycles from the first rx beat of a NEW_ORDER to the first tx beat of its answer, one order
    at a time on the reference rule file, beside the DOE's own cycles for the same event: the
    difference is what the card's rx and tx add (logged, as DESIGN.md's budget asks)."""
    card = Card(dut)
    await card.up()
    image = compiled([SEED_RULES], card.p.lanes)
    await card.load_image(image)
    engine = Engine(image, backend="interp")
    rng = random.Random(7)
    await load_rows(card, engine, random_rows(image, rng, 6))
    frames = [(s, f) for s, f in event_frames(rng, 30) if f[0] == MsgType.NEW_ORDER]
    overheads: dict[bool, list[int]] = {}
    for i, (session, frame) in enumerate(frames):
        d = engine.process(Event.NEW, frame_inputs(frame))
        await card.send(session, frame)
        for _ in range(1 + d.accepted):
            await with_timeout(card.recv(), 20, "us")
        base = TS_BLOCK.addr("RING", 4 * (i % TS_RING))
        rx, tx = await card.axil_read(base + 8), await card.axil_read(base + 12)
        doe = await card.doe_read(addr(0, 4))  # the DOE's cycles of its last event
        overheads.setdefault(d.accepted, []).append(tx - rx - doe)
        dut._log.info(
            "NEW %s: %d cycles rx -> tx, %d in the DOE",
            "accepted" if d.accepted else "rejected",
            tx - rx,
            doe,
        )
    for accepted, ns in sorted(overheads.items()):
        dut._log.info(
            "card overhead over the DOE, NEW %s: min %d max %d cycles",
            "accepted" if accepted else "rejected",
            min(ns),
            max(ns),
        )
    assert overheads, "no NEW_ORDER in the flow"


# ---------------------------------------------------------------------------- pytest

PARAMS = DoeParams(rows=256)


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
@pytest.mark.parametrize("data_w", [64, 512])
def test_card(data_w: int) -> None:
    import simrun

    tests = os.environ.get("RGW_CARD_TESTS", ".*")  # a regex of test names, to run only some
    simrun.run(
        "rgw_card",
        "test_card",
        Path(__file__).parent,
        parameters={"DATA_W": data_w, "GIT_HASH": f"160'h{GIT_HASH:040x}", **PARAMS.hdl()},
        extra_env={
            "RGW_PARAMS": ",".join(f"{k}={v}" for k, v in vars(PARAMS).items()),
            "COCOTB_TEST_FILTER": rf"\.({tests})$",
        },
    )
