"""The DOE hash index's bucket function (riskgw.card.doeport.hash_bucket, the model of
hdl/rgw_doe_hash.sv): structured keys spread over the buckets at the sizes the simulated card uses.

The cocotb benches (sim/doe_table, sim/card) check that the HDL computes the same function.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Iterable, Sequence

import pytest
from gateway_support import RULES

from riskgw.card.doeport import hash_bucket
from riskgw.card.simgw import DataShape, data_shape, fits, rows_for
from riskgw.doe.compiler import compile_files
from riskgw.scenario import DataSet

M64 = (1 << 64) - 1
WAYS = 4  # the DOE's default slots per bucket, what the simulated card takes for the reference data


def cl_buckets(rows: int) -> int:
    """Buckets per table as the DOE builds them: 2 * ROWS (rgw_doe_table.sv's CL_BUCKETS)."""
    return (rows - 1).bit_length() + 1


def most_per_bucket(keys: Iterable[Sequence[int]], rows: int) -> int:
    return max(collections.Counter(hash_bucket(k, cl_buckets(rows)) for k in keys).values())


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> DataShape:
    """The reference data set as the simulated card's sizing sees it."""
    image = compile_files(RULES).image
    return data_shape(image, DataSet().write(tmp_path_factory.mktemp("ref")))


@pytest.mark.parametrize("rows", [32768, 65536, 131072])
def test_the_reference_holdings_fit_four_ways(reference: DataShape, rows: int) -> None:
    holdings = max(reference.keys, key=len)  # the 20 x 1024 (account_id, ticket_id) keys
    assert len(holdings) == 20 * 1024 and len(set(holdings)) == len(holdings)
    # the GF(2)-linear hash put 6 of them in one bucket at 32768 rows and 30 at 65536
    assert most_per_bucket(holdings, rows) <= WAYS


def test_the_simulated_card_holds_the_reference_data_in_four_ways(reference: DataShape) -> None:
    assert rows_for(reference) == (32768, WAYS)
    assert fits(reference, 65536, WAYS)


@pytest.mark.parametrize("rows", [256, 4096, 32768, 131072])
def test_sequential_order_ids_spread(rows: int) -> None:
    """Order ids 1..N, N up to a full table (the index has two buckets a row): no bucket overflows,
    as the order table fills one row per order."""
    assert most_per_bucket(((k,) for k in range(1, rows + 1)), rows) <= WAYS
    assert most_per_bucket(((k,) for k in range(1, rows * 2 // 3 + 1)), rows) <= WAYS


@pytest.mark.parametrize("rows", [1024, 32768])
@pytest.mark.parametrize("shift", [0, 12, 24, 32, 48])
def test_keys_that_differ_in_one_bit_field_spread(rows: int, shift: int) -> None:
    """(account, instrument) grids with the fields at different bit offsets: the kind of key a
    linear hash folds onto few buckets (it sent 1,024 x 64 such keys into 64-key buckets)."""
    accounts = 16
    grid = [(a, t << shift) for a in range(accounts) for t in range(rows // 2 // accounts)]
    assert most_per_bucket(grid, rows) <= WAYS
    one_word = [
        ((a << 48) | t) << (shift // 4) for a in range(accounts) for t in range(rows // 2 // accounts)
    ]
    assert most_per_bucket(((k,) for k in one_word), rows) <= WAYS


def test_the_hash_is_not_linear_over_gf2() -> None:
    """h(a ^ b ^ c) == h(a) ^ h(b) ^ h(c) held for every key of the old rotate/xor/fold hash, which
    is why keys that vary in a few bit fields shared buckets."""
    rng = random.Random(4)
    cl = cl_buckets(32768)
    held = 0
    for _ in range(1000):
        a, b, c = ([rng.getrandbits(64) for _ in range(2)] for _ in range(3))
        abc = [x ^ y ^ z for x, y, z in zip(a, b, c, strict=True)]
        held += hash_bucket(abc, cl) == hash_bucket(a, cl) ^ hash_bucket(b, cl) ^ hash_bucket(c, cl)
    assert held < 10, f"{held} of 1000 triples are linear"


def test_words_are_64_bit_patterns_and_their_order_counts() -> None:
    cl = cl_buckets(1 << 20)
    assert hash_bucket([-1], cl) == hash_bucket([M64], cl)
    assert hash_bucket([5, 7], cl) != hash_bucket([7, 5], cl)
    assert all(0 <= hash_bucket([k], 2) < 4 for k in range(100))
    with pytest.raises(ValueError, match="at most 6"):
        hash_bucket([1] * 7, cl)
