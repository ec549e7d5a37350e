"""rgw_doe_alu against the reference semantics in riskgw/engine/alu.py, op by op."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path

import cocotb
import pytest
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from riskgw.doe.isa import ALU_OPS, INT64_MAX, INT64_MIN, UNARY_OPS, Op
from riskgw.engine import alu

Value = int | None

EDGES: list[Value] = [
    None,
    0,
    1,
    -1,
    2,
    -2,
    7,
    -7,
    INT64_MIN,
    INT64_MIN + 1,
    INT64_MAX,
    INT64_MAX - 1,
    (1 << 31) - 1,
    1 << 31,
    -(1 << 31),
    -(1 << 31) - 1,
    1 << 32,
    3037000499,  # floor(sqrt(2^63)): its square fits, one more does not
    3037000500,
]
BINARY_OPS = sorted(op for op in ALU_OPS if op not in UNARY_OPS and op is not Op.SEL)
UNARY = sorted(UNARY_OPS)


def to_word(v: Value) -> tuple[int, int]:
    return (0, 1) if v is None else (v & ((1 << 64) - 1), 0)


def from_word(value: int, null: int) -> Value:
    if null:
        return None
    return value - (1 << 64) if value >> 63 else value


def random_value(rng: random.Random) -> Value:
    kind = rng.randrange(6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice(EDGES)
    if kind == 2:
        return rng.randint(-100, 100)
    if kind == 3:
        return rng.randint(-(1 << 32), 1 << 32)
    return rng.randint(INT64_MIN, INT64_MAX)


class TB:
    def __init__(self, dut) -> None:  # type: ignore[no-untyped-def]
        self.dut = dut
        # cocotb 2's Clock.start() schedules the clock's task itself
        Clock(dut.clk, 4, unit="ns").start()
        dut.s_valid.value = 0
        dut.s_op.value = 0
        for port in ("a", "b", "c"):
            getattr(dut, f"s_{port}").value = 0
            getattr(dut, f"s_{port}_null").value = 1

    async def reset(self) -> None:
        self.dut.rst.value = 1
        for _ in range(3):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def run_ops(
        self, ops: list[tuple[Op, Value, Value, Value]], idle: float = 0.0, seed: int = 1
    ) -> list[tuple[Value, int]]:
        """Issue ops back to back (with random idle cycles) and return (result, latency) of each."""
        rng = random.Random(seed)
        dut = self.dut
        results: list[tuple[Value, int]] = []
        issued: list[int] = []
        cycle = 0
        pending = list(ops)
        while pending or len(results) < len(ops):
            await ReadOnly()
            ready = int(dut.s_ready.value)
            if int(dut.m_valid.value):
                results.append((from_word(int(dut.m_value.value), int(dut.m_null.value)), cycle))
            fire = int(dut.s_valid.value) and ready
            if fire and pending[0][0] not in (Op.DIV, Op.MOD):
                comb = from_word(int(dut.c_value.value), int(dut.c_null.value))
                want = alu.evaluate(*pending[0])
                assert comb == want, f"combinational {pending[0]} = {comb}, expected {want}"
            await RisingEdge(dut.clk)
            cycle += 1
            if fire:
                issued.append(cycle)
                pending.pop(0)
            dut.s_valid.value = 0
            if pending and rng.random() >= idle:
                op, a, b, c = pending[0]
                dut.s_op.value = int(op)
                for port, v in (("a", a), ("b", b), ("c", c)):
                    word, null = to_word(v)
                    getattr(dut, f"s_{port}").value = word
                    getattr(dut, f"s_{port}_null").value = null
                dut.s_valid.value = 1
            if cycle > 200 * (len(ops) + 10):
                raise AssertionError("ALU stopped answering")
        # latency: clock edges from the one that accepts the op to the one that registers its result
        return [(r, t - issued[i] + 1) for i, (r, t) in enumerate(results)]


def check(ops: list[tuple[Op, Value, Value, Value]], got: list[tuple[Value, int]]) -> None:
    assert len(got) == len(ops)
    for (op, a, b, c), (value, _lat) in zip(ops, got, strict=True):
        want = alu.evaluate(op, a, b, c)
        assert value == want, f"{op.name}({a}, {b}, {c}) = {value}, expected {want}"


@cocotb.test()
async def run_edge_values(dut) -> None:  # type: ignore[no-untyped-def]
    tb = TB(dut)
    await tb.reset()
    ops: list[tuple[Op, Value, Value, Value]] = []
    for op in UNARY:
        ops += [(op, a, None, None) for a in EDGES]
    for op in BINARY_OPS:
        ops += [(op, a, b, None) for a, b in itertools.product(EDGES, EDGES)]
    small = [None, 0, 1, -1, INT64_MIN, 5]
    ops += [(Op.SEL, a, b, c) for a, b, c in itertools.product(small, small, small)]
    got = await tb.run_ops(ops)
    check(ops, got)
    div_latency = {lat for (op, *_), (_, lat) in zip(ops, got, strict=True) if op in (Op.DIV, Op.MOD)}
    other_latency = {lat for (op, *_), (_, lat) in zip(ops, got, strict=True) if op not in (Op.DIV, Op.MOD)}
    assert other_latency == {1}, other_latency
    div_bits = int(os.environ["RGW_DIV_BITS"])
    # 1: NULL operands, / 0 and MIN / -1 answer at once; otherwise the documented 2 + 64 / DIV_BITS
    assert div_latency == {1, 2 + 64 // div_bits}, div_latency
    dut._log.info("latency: DIV/MOD %s cycles, every other op 1 cycle", sorted(div_latency))


@cocotb.test()
@cocotb.parametrize(idle=[0.0, 0.5])
async def run_random(dut, idle: float) -> None:  # type: ignore[no-untyped-def]
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(2026 + int(idle * 10))
    ops: list[tuple[Op, Value, Value, Value]] = []
    for _ in range(3000):
        op = rng.choice(sorted(ALU_OPS))
        ops.append((op, random_value(rng), random_value(rng), random_value(rng)))
    check(ops, await tb.run_ops(ops, idle=idle, seed=int(idle * 10)))


@cocotb.test()
async def run_reset_during_divide(dut) -> None:  # type: ignore[no-untyped-def]
    """A reset in the middle of a division leaves the lane idle and correct."""
    tb = TB(dut)
    await tb.reset()
    dut.s_op.value = int(Op.DIV)
    dut.s_a.value, dut.s_a_null.value = to_word(1000)
    dut.s_b.value, dut.s_b_null.value = to_word(7)
    dut.s_valid.value = 1
    await RisingEdge(dut.clk)
    dut.s_valid.value = 0
    await RisingEdge(dut.clk)
    await ReadOnly()
    assert int(dut.s_ready.value) == 0
    await RisingEdge(dut.clk)
    await tb.reset()
    await ReadOnly()
    assert int(dut.s_ready.value) == 1
    await RisingEdge(dut.clk)
    ops: list[tuple[Op, Value, Value, Value]] = [(Op.MOD, -1000, 7, None), (Op.ADD, 1, 2, None)]
    check(ops, await tb.run_ops(ops))


@pytest.mark.sim
@pytest.mark.xdist_group("sim")
@pytest.mark.parametrize("div_bits", [4, 1])
def test_doe_alu(div_bits: int) -> None:
    import simrun

    simrun.run(
        "rgw_doe_alu",
        "test_doe_alu",
        Path(__file__).parent,
        parameters={"DIV_BITS": div_bits},
        extra_env={"RGW_DIV_BITS": str(div_bits)},
    )
