"""Which executor `riskgw serve --card auto` runs on, and what each card is called in status.

auto: a U200 when pynq and XRT find one, else the simulated card when it is built in, else the
software engine. The choice and the reason for it are logged once at start.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from riskgw.card.driver import CardDriver


def resolve_auto(available: tuple[str, ...], log: Callable[[str], None]) -> str:
    """The card kind `auto` stands for on this machine; `available` are the kinds serve knows."""
    from riskgw.card.pynq import card_available

    why_not = card_available()
    if why_not is None:
        log("card auto: a U200 is present, running on it (pynq)")
        return "pynq"
    why_not = why_not.removeprefix("--card pynq: ")
    if "sim" in available and importlib.util.find_spec("riskgw.card.simcard") is not None:
        log(f"card auto: no U200 ({why_not}); running on the simulated card")
        return "sim"
    log(f"card auto: no U200 ({why_not}); running on the software engine")
    return "soft"


def card_kind(card: CardDriver) -> str:
    """`pynq`, `sim` or `soft`: what decides the orders (the card under a hot standby)."""
    from riskgw.card.pynq import PynqCard
    from riskgw.card.simcard import SimCard

    inner = getattr(card, "card", None)  # LockstepCard keeps its card here (None once it failed)
    if isinstance(inner, CardDriver):
        card = inner
    if isinstance(card, PynqCard):
        return "pynq"
    return "sim" if isinstance(card, SimCard) else "soft"
