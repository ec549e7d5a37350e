"""The examples in docs/language.md compile as written."""

from __future__ import annotations

import re
from pathlib import Path

from lang_support import write

from riskgw.lang import ast
from riskgw.lang.frontend import parse_files

DOC = Path(__file__).parent.parent / "docs" / "language.md"


def _blocks() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_doc_examples_compile(tmp_path: Path) -> None:
    blocks = _blocks()
    intro = next(b for b in blocks if b.startswith("/* Holdings"))
    account_info = next(b for b in blocks if b.startswith("create table account_info"))
    flows = next(b for b in blocks if b.startswith("create trigger accept_buy"))
    program = parse_files([write(tmp_path, intro + "\n" + account_info + "\n" + flows)])
    assert [t.name for t in program.tables] == ["account_ticket_info", "account_info"]
    assert [r.name for r in program.rules] == ["no_self_trade"]
    assert program.rules[0].guard is not None
    assert [(t.name, t.event) for t in program.triggers] == [
        ("accept_buy", ast.TriggerEvent.ACCEPT),
        ("fill_buy", ast.TriggerEvent.FILL),
    ]
