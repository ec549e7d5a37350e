"""Journal lag on /metrics: how far the journal on disk is behind what the gateway wrote (and so may
have answered), for each journal_sync mode."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from gateway_support import Stack, held_order, run_async, start_stack, until
from prometheus_client.parser import text_string_to_metric_families

from riskgw.exchange.sim import Behaviour
from riskgw.gateway.metrics import render
from riskgw.gateway.protocol import MsgType

pytestmark = pytest.mark.timeout(60)

FILL_ALL = Behaviour(fill=1.0, partial=0.0, reject=0.0)


def lag(stack: Stack) -> tuple[str, float, float]:
    """The page's journal_sync mode, unsynced bytes and sync age."""
    page = {f.name: f.samples for f in text_string_to_metric_families(render(stack.gateway))}
    (mode,) = [s.labels["mode"] for s in page["riskgw_journal_sync_mode"] if s.value == 1]
    unsynced, age = page["riskgw_journal_unsynced_bytes"][0], page["riskgw_journal_sync_age_seconds"][0]
    return mode, unsynced.value, age.value


async def one_order(stack: Stack, order_id: int) -> None:
    broker = await stack.broker("alice")
    broker.send(MsgType.NEW_ORDER, **held_order(order_id, account=1))
    await broker.recv_type(MsgType.ACCEPTED)  # sent after the commit that holds the order
    await broker.close()


def test_commit_mode_has_nothing_unsynced_after_a_commit(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL)
        journal = stack.gateway.journal
        for order_id in (1, 2):
            before_written, before = journal.written, time.monotonic()
            await one_order(stack, order_id)
            mode, unsynced, age = lag(stack)
            assert mode == "commit" and journal.written > before_written
            assert unsynced == 0
            assert 0 <= age <= time.monotonic() - before  # the commit's fsync, not the start
        await stack.close()

    run_async(script())


def test_interval_mode_is_behind_until_the_syncer_fsyncs(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL, journal_sync="interval", journal_sync_ms=50)
        gw = stack.gateway
        syncer, journal = gw.syncer, gw.journal
        assert syncer is not None and not journal.fsync
        opened_at = journal.synced_at  # the gateway's own journal never fsyncs in this mode
        await until(lambda: lag(stack)[1] == 0 and syncer.syncs > 0, "the syncer's first fsync")
        # Right after a commit the new records are written but not fsynced, unless the thread's
        # fsync happened to fall in between: then try another order. An fsync that began before the
        # last order's commit and ended after it leaves that order's records unsynced too, so the
        # lag is measured from what the last completed fsync covered, not assumed 0 before.
        for order_id in range(1, 21):
            syncs, synced, written = syncer.syncs, syncer.synced, journal.written
            await one_order(stack, order_id)
            mode, unsynced, _ = lag(stack)
            # synced only grows and is set before syncs counts: both unchanged after the page
            # means the page saw this same fsync
            if syncer.syncs == syncs and syncer.synced == synced:
                assert mode == "interval"
                assert synced <= written < journal.written
                assert unsynced == journal.written - synced
                break
        else:
            pytest.fail("every order of 20 met a fsync between its commit and the page")
        synced_before = syncer.syncs
        since = time.monotonic()
        await until(lambda: lag(stack)[1] == 0, "the syncer's fsync of the new records")
        assert syncer.syncs > synced_before and syncer.synced == journal.written
        age = lag(stack)[2]
        assert 0 <= age <= time.monotonic() - since < time.monotonic() - opened_at
        await stack.close()

    run_async(script())


def test_none_mode_counts_everything_written_since_the_start(tmp_path: Path) -> None:
    async def script() -> None:
        stack = await start_stack(tmp_path, FILL_ALL, journal_sync="none")
        journal = stack.gateway.journal
        assert stack.gateway.syncer is None and not journal.fsync
        mode, first, age_first = lag(stack)
        assert mode == "none" and first == journal.written > 0  # a new journal: its header too
        await one_order(stack, 1)
        _, second, age_second = lag(stack)
        assert second == journal.written > first
        assert age_second >= age_first  # since the start: no fsync resets it
        # a restart opens the journal where it ends: what an earlier run wrote is not its lag
        await stack.restart()
        restarted = stack.gateway.journal
        assert restarted.written >= journal.written
        assert lag(stack)[1] == 0
        await one_order(stack, 2)
        assert lag(stack)[1] == restarted.written - journal.written > 0
        await stack.close()

    run_async(script())
