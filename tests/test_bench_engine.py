"""bench.engine's chunked level measures the same session as an unchunked one: the engines end in
the same state, every event is timed once, and the latency histogram gives exact order statistics."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench import engine as bench
from riskgw.doe.compiler import compile_files
from riskgw.doe.image import Image
from riskgw.engine.cbuild import compiler
from riskgw.engine.engine import Backend, Engine
from riskgw.engine.replay import load_data
from riskgw.scenario import DataSet

ORDERS = 150  # per account: a session of about 9,000 events


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Image, Path, DataSet]:
    data = DataSet()
    return compile_files(bench.RULES).image, data.write(tmp_path_factory.mktemp("data")), data


def test_histogram_percentiles_are_the_exact_order_statistics() -> None:
    rnd = random.Random(7)
    for n in (1, 2, 99, 1000, 12345):
        values = [int(rnd.lognormvariate(8.5, 1.2)) for _ in range(n)]  # some over HIST_NS
        hist = bench.Latencies()
        half = n // 2
        hist.add(values[:half])
        other = bench.Latencies()
        other.add(values[half:])
        hist.merge(other)
        assert hist.percentiles() == bench._percentiles(values)


def test_chunked_session_ends_in_the_unchunked_state(setup: tuple[Image, Path, DataSet]) -> None:
    image, data_dir, data = setup
    events = bench.record_session(image, data_dir, data, ORDERS)
    reference = Engine(image, "fast")
    load_data(reference, data_dir)
    for e, inputs, _, _ in events:
        reference.process(e, inputs)

    backends: list[Backend] = ["fast", "native"] if compiler() is not None else ["fast"]
    n_events, results = bench.bench_chunked(image, data_dir, data, ORDERS, backends, 700)
    assert n_events == len(events)
    for backend, result in results.items():
        assert result["state_hash"] == reference.state_hash(), backend
        chunked = result["chunked"]
        assert chunked["chunks"] == -(-len(events) // 700)
        # every event is timed once: for throughput, the batch call or latency
        assert sum(chunked["timed_events"].values()) + result["all"]["n"] == len(events)
        assert sum(f["n"] for f in result["flows"].values()) == result["all"]["n"]
        memory = result["table_memory"]
        orders = memory["tables"]["order_info"]
        assert orders["rows"] == reference.state.by_name("order_info").n_rows
        assert orders["columns_allocated_bytes"] >= orders["columns_used_bytes"] > 0
        assert orders["index_bytes"] > 0
        assert (orders["mirror_bytes"] > 0) == (backend == "fast")
