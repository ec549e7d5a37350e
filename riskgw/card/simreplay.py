"""`riskgw replay --backend sim`: the same replay on the simulated card.

Every input is read and checked first, with the software replay's own checks and messages (the
data files by loading them into a scratch software engine that is then dropped, the events by
the frame each must travel in), so a bad file costs no simulator start-up. Then the card gets the
program and the rows through its registers, the events through its TOE streams, and the final
state is read back from the card: nothing of the card's answer comes from the software engine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from riskgw.card.driver import CardError
from riskgw.card.simcard import SimCard, event_frame, section_reads
from riskgw.doe.image import Image
from riskgw.engine.csvdata import EventRow, read_table
from riskgw.engine.engine import Engine
from riskgw.engine.replay import load_data, run_events
from riskgw.engine.state import EngineState
from riskgw.engine.table import Value
from riskgw.errors import InputError, UserError


def _data_rows(image: Image, data_dir: Path) -> list[tuple[int, list[tuple[Value, ...]]]]:
    load_data(Engine(image, "interp"), data_dir)  # the checks and messages of --backend soft
    files = {p.stem.lower(): p for p in data_dir.iterdir() if p.suffix.lower() == ".csv"}
    out = []
    for config in image.tables:
        path = files.get(config.name)
        if path is not None:
            out.append((config.id, [row.words for row in read_table(path, config)]))
    return out


def _check_frames(image: Image, events: list[EventRow], where: str) -> None:
    reads = section_reads(image)
    for ev in events:
        try:
            event_frame(ev.event, ev.inputs, 1, reads[ev.event])
        except ValueError as exc:
            raise InputError(where, ev.line, f"--backend sim: {exc}") from None


def sim_replay(
    args: argparse.Namespace, image: Image, events: list[EventRow]
) -> tuple[list[list[str]], EngineState, float]:
    """OUT.csv's rows, the final state read back from the card, and the seconds the events took."""
    data = _data_rows(image, Path(args.data)) if args.data else []
    _check_frames(image, events, str(getattr(args, "journal", None) or args.events))
    address = getattr(args, "card_address", None)
    try:
        card = SimCard.connect(address) if address else SimCard.start()
    except CardError as exc:
        raise UserError(f"no simulated card: {exc}") from None
    try:
        card.load_image(image)
        for table_id, rows in data:
            card.load_rows(table_id, rows)
        start = time.perf_counter()
        out = run_events(_Batches(card), image, events, False)
        elapsed = time.perf_counter() - start
        state = EngineState(image)
        if args.dump_state:  # reading every cell back is slow on a simulated card: only when asked
            state.restore(card.snapshot())
        return out, state, elapsed
    except CardError as exc:
        raise UserError(f"the simulated card failed: {exc}") from None
    finally:
        card.close()


class _Batches:
    """A card seen as the replay's event runner."""

    def __init__(self, card: SimCard) -> None:
        self.process_batch = card.process_many
