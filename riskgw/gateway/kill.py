"""Kill switches: stop new orders for an account, a broker login, or the whole gateway.

A switch that is on rejects new orders with reason KILL_SWITCH before they reach the card; cancels
still go through, since they only reduce risk. The switches are saved to a small JSON file (written
beside it and renamed, then fsynced) before a change is confirmed, so a restart keeps them on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskgw.errors import UserError


@dataclass
class KillSwitches:
    path: Path | None = None  # where they are saved; None: not saved (tests)
    all: bool = False
    accounts: set[int] = field(default_factory=set)
    users: set[str] = field(default_factory=set)

    def blocks(self, user: str, account: int) -> bool:
        return self.all or account in self.accounts or user in self.users

    def as_dict(self) -> dict[str, Any]:
        return {"all": self.all, "accounts": sorted(self.accounts), "users": sorted(self.users)}

    def set(
        self, on: bool, account: int | None = None, user: str | None = None, everything: bool = False
    ) -> None:
        if everything:
            self.all = on
        if account is not None:
            (self.accounts.add if on else self.accounts.discard)(account)
        if user is not None:
            (self.users.add if on else self.users.discard)(user)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self.as_dict(), f)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)

    @classmethod
    def load(cls, path: Path) -> KillSwitches:
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                path, bool(raw["all"]), {int(a) for a in raw["accounts"]}, {str(u) for u in raw["users"]}
            )
        except OSError as exc:
            raise UserError(f"cannot read kill switches {path}: {exc.strerror}") from None
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{path} is not a kill switch file: fix or remove it (it keeps switches on)"
            ) from None
