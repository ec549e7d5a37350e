"""Whatever the text, the front end answers with a Program or a CompileError, never a traceback."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from riskgw.lang.ast import CompileError, Program
from riskgw.lang.frontend import parse_files

SQL_WORDS = (
    "( ) ( ) , ; select from where order by limit 1 0 'a' NULL trade_order.price trade_order.ticket_id "
    "t a b c t.a x.a excluded.b not and or = < > + - * / % case when then else end is in between "
    "coalesce abs sum count max min avg desc as x join group having distinct union like exists "
    "begin create table trigger update set insert into values on conflict do rule after fill"
)
WORDS = SQL_WORDS.split()
TABLE = "create table t (a INT not null, b INT8, c CHAR(4));\n"
TEMPLATES = (
    "Rule R ({})",
    "Rule R ((select a from t where {}) > 0)",
    "create trigger g after fill on trade_order begin update t set b = {} where a = 1; end",
    "create trigger g after fill on trade_order begin insert into t (a, b) values (1, 2) "
    "on conflict (a) do update set b = {}; end",
    "{}",
)


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(TEMPLATES), words=st.lists(st.sampled_from(WORDS), max_size=30))
def test_random_text_gives_a_program_or_diagnostics(template: str, words: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.sql"
        path.write_text(TABLE + template.format(" ".join(words)), encoding="utf-8")
        try:
            result = parse_files([path])
        except CompileError as exc:
            assert exc.diagnostics
            for d in exc.diagnostics:
                assert d.message and "\n" not in d.message
                if d.loc is not None:
                    assert d.loc.path == str(path) and d.loc.line >= 1 and d.loc.col >= 1
        else:
            assert isinstance(result, Program)
