"""Every diagnostic of the front end: where it points (path, line, column) and what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from lang_support import TABLES, assert_at, errors, one_error, write

from riskgw.lang import source
from riskgw.lang.ast import CompileError
from riskgw.lang.frontend import parse_files

RULE_LINE = TABLES.count("\n") + 1  # the line a statement appended to TABLES starts on


def check(tmp_path: Path, stmt: str, needle: str, *fragments: str, occurrence: int = 0) -> None:
    """`stmt` (one line, after TABLES) has exactly one error, at the `occurrence`-th `needle`."""
    d = one_error(tmp_path, TABLES + stmt)
    col = -1
    for _ in range(occurrence + 1):
        col = stmt.index(needle, col + 1)
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, col + 1, *fragments)


# ------------------------------------------------------------------------------ names


def test_unknown_table(tmp_path: Path) -> None:
    check(tmp_path, "Rule R ((select x from nosuch where a = 1) > 0)", "nosuch", "unknown table nosuch")


def test_unknown_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select balance from acct where nosuch = 1) > 0)",
        "nosuch",
        "unknown column nosuch",
        "acct",
    )


def test_unknown_qualified_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select a.nosuch from acct a where a.account_id = 1) > 0)",
        "a.nosuch",
        "table acct has no column nosuch",
        "account_id, balance, name",
    )


def test_unknown_trade_order_field(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R (trade_order.size > 0)",
        "trade_order.size",
        "trade_order has no field size",
        "quantity",
    )


def test_bare_column_in_rule_suggests_the_field(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (price > 0)", "price", "unknown name price", "did you mean trade_order.price?")


def test_bare_column_in_subquery_suggests_the_field(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select balance from acct where account_id = direction) > 0)",
        "direction",
        "unknown column direction",
        "trade_order.direction",
    )


def test_table_not_in_scope(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R (acct.balance > 0)",
        "acct.balance",
        "table acct is not in scope",
        "(SELECT col FROM acct",
    )


def test_alias_hides_table_name(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select balance from acct a where acct.account_id = 1) > 0)",
        "acct.account_id",
        "not in scope",
    )


def test_excluded_outside_do_update(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin update acct set balance = excluded.balance "
        "where account_id = 1; end",
        "excluded.balance",
        "only available in INSERT ... ON CONFLICT",
    )


def test_insert_values_cannot_read_the_target(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin insert into acct (account_id, balance) "
        "values (1, balance); end",
        "balance)",
        "unknown name balance",
        occurrence=1,
    )


# ------------------------------------------------------------------------------ types


def test_char_in_arithmetic(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R (trade_order.price + trade_order.ticket_id > 0)",
        "trade_order.ticket_id",
        "CHAR(16) value cannot be used in arithmetic (+)",
    )


def test_char_with_less_than(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R (trade_order.ticket_id < 'A')",
        "trade_order.ticket_id",
        "CHAR values can only be compared with =, !=, <> and IN, not with <",
    )


def test_char_between(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.ticket_id between 'A' and 'B')", "trade_order", "not BETWEEN")


def test_char_compared_with_number(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.ticket_id = 5)", "5", "cannot compare CHAR(16) with INT8")


def test_char_in_number_list(tmp_path: Path) -> None:
    check(
        tmp_path, "Rule R (trade_order.direction in (1, 'two'))", "'two'", "cannot compare INT with CHAR(3)"
    )


def test_char_as_condition(tmp_path: Path) -> None:
    check(
        tmp_path, "Rule R (1 = 1 where trade_order.ticket_id)", "trade_order.ticket_id", "is not a condition"
    )


def test_string_into_int_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin "
        "update acct set balance = 'x' where account_id = 1; end",
        "'x'",
        "cannot store a CHAR(1) value into column acct.balance (INT8)",
    )


def test_number_into_char_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin "
        "insert into acct (account_id, name) values (1, 2); end",
        "2)",
        "cannot store a number into column acct.name (CHAR(8))",
    )


def test_string_too_long_for_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin insert into acct (account_id, name) "
        "values (1, '123456789'); end",
        "'123456789'",
        "9 bytes, too long for column acct.name (CHAR(8))",
    )


def test_case_mixing_char_and_number(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (case when 1 then 'a' else 2 end = 'a')", "2 end", "CASE mixes CHAR and numeric")


def test_not_an_integer(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.price > 1.5)", "1.5", "1.5 is not an integer", "fixed point")


def test_integer_out_of_range(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.price > 9223372036854775808)", "922", "does not fit 64 bits")


def test_string_literal_longer_than_32_bytes(tmp_path: Path) -> None:
    check(tmp_path, f"Rule R (trade_order.ticket_id = '{'x' * 33}')", "'x", "33 bytes", "at most 32 bytes")


# ------------------------------------------------------------------------------ aggregates


def test_aggregate_outside_subquery(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (sum(trade_order.price) > 0)", "sum", "aggregate must be inside a sub-query")


def test_aggregate_inside_arithmetic_in_select(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select sum(qty) + 1 from pos where account_id = 1) > 0)",
        "sum",
        "aggregate must be the whole select value",
    )


def test_nested_aggregates(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select sum(max(qty)) from pos where account_id = 1) > 0)",
        "max",
        "aggregates cannot be nested",
    )


def test_aggregate_in_where(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select qty from pos where count(*) > 1) > 0)",
        "count",
        "aggregates are not allowed in WHERE",
    )


def test_order_by_aggregate(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select qty from pos where account_id = 1 order by max(price) limit 1) > 0)",
        "max",
        "ORDER BY cannot use an aggregate",
    )


def test_order_by_with_aggregate_select(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select max(qty) from pos where account_id = 1 order by price limit 1) > 0)",
        "price limit",
        "cannot be used with an aggregate",
    )


def test_aggregate_argument_reads_only_the_row(tmp_path: Path) -> None:
    check(
        tmp_path,
        "Rule R ((select sum(qty * trade_order.price) from pos where account_id = 1) > 0)",
        "trade_order.price",
        "argument of SUM may only read the sub-query's row",
    )


def test_aggregate_in_update(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin update acct set balance = max(balance) "
        "where account_id = 1; end",
        "max",
        "aggregates are not allowed in UPDATE",
    )


# ------------------------------------------------------------------------------ unsupported SQL


@pytest.mark.parametrize(
    ("stmt", "needle", "message"),
    [
        (
            "Rule R ((select qty from pos join acct on 1 = 1 where pos.account_id = 1) > 0)",
            "join",
            "JOIN is not supported",
        ),
        ("Rule R (trade_order.ticket_id like 'A%')", "like", "LIKE is not supported"),
        ("Rule R (trade_order.ticket_id glob 'A*')", "glob", "GLOB is not supported"),
        (
            "Rule R ((select sum(qty) over () from pos where account_id = 1) > 0)",
            "sum",
            "window functions (OVER) are not supported",
        ),
        (
            "Rule R ((select sum(qty) from pos where account_id = 1 group by ticket_id) > 0)",
            "group by",
            "GROUP BY is not supported",
        ),
        (
            "Rule R ((select sum(qty) from pos where account_id = 1 having sum(qty) > 1) > 0)",
            "having",
            "HAVING is not supported",
        ),
        (
            "Rule R ((select distinct qty from pos where account_id = 1) > 0)",
            "distinct",
            "DISTINCT is not supported",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 "
            "union select qty from pos where account_id = 2) > 0)",
            "select qty",
            "UNION is not supported",
        ),
        (
            "Rule R ((select qty, price from pos where account_id = 1) > 0)",
            "price",
            "selects exactly one value",
        ),
        ("Rule R ((select * from pos where account_id = 1) > 0)", "*", "SELECT * is not supported"),
        ("Rule R (frobnicate(trade_order.price) > 0)", "frobnicate", "unknown function FROBNICATE"),
        ("Rule R (length(trade_order.ticket_id) > 0)", "length", "function LENGTH(...) is not supported"),
        (
            "Rule R ((select qty from pos where account_id = 1 order by price) > 0)",
            "price)",
            "ORDER BY needs LIMIT 1",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 order by price limit 2) > 0)",
            "2)",
            "LIMIT must be LIMIT 1",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 limit 1) > 0)",
            "1)",
            "LIMIT 1 needs ORDER BY",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 order by price, qty limit 1) > 0)",
            "qty limit",
            "ORDER BY takes one expression",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 order by price nulls last limit 1) > 0)",
            "price nulls",
            "NULLS FIRST/LAST is not supported",
        ),
        (
            "Rule R ((select qty from pos where account_id = 1 order by 1 limit 1) > 0)",
            "1 limit",
            "ORDER BY needs a column of the sub-query's table, not a constant",
        ),
        ("Rule R (exists (select qty from pos where account_id = 1))", "exists", "EXISTS is not supported"),
        ("Rule R (trade_order.account_id in (select account_id from acct))", "(select", "IN (SELECT ...)"),
        ("Rule R (cast(trade_order.price as int) > 0)", "cast", "CAST is not supported"),
        ("Rule R ((select qty from trade_order where 1) > 0)", "trade_order", "not a table"),
        ("delete from acct where account_id = 1", "delete", "DELETE is not supported"),
        ("update acct set balance = 1", "update", "must be inside a trigger"),
        ("create view v as select 1", "view", "CREATE VIEW is not supported"),
        (
            "create trigger t after fill on trade_order begin delete from acct where account_id = 1; end",
            "delete",
            "DELETE is not allowed in a trigger",
        ),
        (
            "create trigger t after fill on trade_order begin insert or replace into acct (account_id) "
            "values (1); end",
            "insert",
            "INSERT OR REPLACE is not supported",
        ),
        (
            "create trigger t after fill on trade_order begin insert into acct (account_id) "
            "select account_id from pos; end",
            "select",
            "INSERT ... SELECT is not supported",
        ),
        (
            "create trigger t after fill on trade_order begin update acct set balance = 1 "
            "where account_id = 1 returning balance; end",
            "returning",
            "RETURNING is not supported",
        ),
        (
            "create trigger t after fill on trade_order begin insert into acct (account_id) values (1) "
            "on conflict do nothing; end",
            "on conflict",
            "DO NOTHING",
        ),
        (
            "create trigger t before fill on trade_order begin update acct set balance = 1; end",
            "before",
            "AFTER",
        ),
        (
            "create trigger t after insert on trade_order begin update acct set balance = 1; end",
            "insert",
            "unknown trigger event 'insert'; use ACCEPT, FILL, REJECT or CANCEL",
        ),
        (
            "create trigger t after fill on acct begin update acct set balance = 1; end",
            "acct",
            "write ON trade_order",
        ),
    ],
)
def test_unsupported_sql(tmp_path: Path, stmt: str, needle: str, message: str) -> None:
    d = one_error(tmp_path, TABLES + stmt)
    col = stmt.lower().index(needle) + 1
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, col, message)


# ------------------------------------------------------------------------------ lexical and file


def test_unterminated_comment(tmp_path: Path) -> None:
    d = one_error(tmp_path, TABLES + "Rule R (1) /* never\nclosed")
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, 12, "unterminated comment", "*/")


def test_unterminated_string(tmp_path: Path) -> None:
    d = one_error(tmp_path, TABLES + "Rule R (trade_order.ticket_id = 'abc)\n")
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, 33, "unterminated string")


def test_empty_file(tmp_path: Path) -> None:
    d = one_error(tmp_path, "")
    assert_at(d, tmp_path / "rules.sql", 1, 1, "the file is empty")


def test_file_with_only_comments(tmp_path: Path) -> None:
    d = one_error(tmp_path, "-- nothing here\n/* or here */\n")
    assert_at(d, tmp_path / "rules.sql", 1, 1, "has no statements")


def test_invalid_utf8(tmp_path: Path) -> None:
    data = (TABLES + "/* 中文 */ Rule R (trade_order.price > 0) -- caf").encode() + b"\xe9\n"
    d = one_error(tmp_path, data)
    line = TABLES.count("\n") + 1
    assert_at(
        d, tmp_path / "rules.sql", line, len("/* 中文 */ Rule R (trade_order.price > 0) -- caf") + 1, "UTF-8"
    )
    assert "0xe9" in d.message


def test_file_over_the_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path, b"-- padding\n" + b" " * source.MAX_FILE_BYTES)
    with pytest.raises(CompileError) as info:
        parse_files([path])
    (d,) = info.value.diagnostics
    assert d.loc is None
    assert str(path) in d.message and "larger than 10 MB" in d.message


def test_file_at_the_size_limit_is_read(tmp_path: Path) -> None:
    text = TABLES + "Rule R (trade_order.price > 0)\n"
    path = write(tmp_path, text.encode() + b" " * (source.MAX_FILE_BYTES - len(text.encode())))
    assert [r.name for r in parse_files([path]).rules] == ["R"]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.sql"
    with pytest.raises(CompileError) as info:
        parse_files([path])
    (d,) = info.value.diagnostics
    assert str(path) in d.message and "no such file" in d.message


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CompileError) as info:
        parse_files([tmp_path])
    (d,) = info.value.diagnostics
    assert str(tmp_path) in d.message and "is a directory" in d.message


def test_path_through_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x") / "rules.sql"
    with pytest.raises(CompileError) as info:
        parse_files([path])
    (d,) = info.value.diagnostics
    assert str(path) in d.message and "cannot read rule file" in d.message


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The suite may run as root, who reads any file, so the denial is simulated at open().
    path = write(tmp_path, "Rule R (1)")

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(CompileError) as info:
        parse_files([path])
    (d,) = info.value.diagnostics
    assert str(path) in d.message and "permission denied" in d.message


def test_missing_file_does_not_hide_other_files(tmp_path: Path) -> None:
    good = write(tmp_path, "Rule R (price > 0)", "good.sql")
    with pytest.raises(CompileError) as info:
        parse_files([tmp_path / "missing.sql", good])
    messages = [d.message for d in info.value.diagnostics]
    assert len(messages) == 2
    assert "no such file" in messages[0] and "unknown name price" in messages[1]


# ------------------------------------------------------------------------------ declarations


def test_duplicate_rule_names_ignore_case(tmp_path: Path) -> None:
    d = one_error(tmp_path, "Rule Limit1 (1 = 1)\nRule LIMIT1 (1 = 1)")
    assert_at(
        d, tmp_path / "rules.sql", 2, 6, "rule LIMIT1 is already defined at", f"{tmp_path / 'rules.sql'}:1:6"
    )


def test_duplicate_rule_names_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "Rule R (1 = 1)", "a.sql")
    b = write(tmp_path, "Rule r (1 = 1)", "b.sql")
    with pytest.raises(CompileError) as info:
        parse_files([a, b])
    (d,) = info.value.diagnostics
    assert_at(d, b, 1, 6, "already defined at", f"{a}:1:6")


def test_duplicate_table(tmp_path: Path) -> None:
    d = one_error(tmp_path, "create table t (a INT)\ncreate table T (b INT)")
    assert_at(d, tmp_path / "rules.sql", 2, 14, "table t is already declared at")


def test_duplicate_column(tmp_path: Path) -> None:
    d = one_error(tmp_path, "create table t (a INT, b INT8, A CHAR(2))")
    assert_at(d, tmp_path / "rules.sql", 1, 32, "column a is declared twice in table t")


def test_duplicate_trigger(tmp_path: Path) -> None:
    trig = (
        "create trigger Upd after fill on trade_order begin "
        "update acct set balance = 1 where account_id = 1; end\n"
    )
    d = one_error(tmp_path, TABLES + trig + trig.replace("Upd", "UPD"))
    assert_at(d, tmp_path / "rules.sql", RULE_LINE + 1, 16, "trigger UPD is already defined at")


@pytest.mark.parametrize(
    ("decl", "needle", "message"),
    [
        ("create table t (a CHAR(0))", "CHAR(0)", "CHAR(0) is out of range; the size must be 1..32 bytes"),
        ("create table t (a VARCHAR(33))", "VARCHAR(33)", "CHAR(33) is out of range"),
        ("create table t (a CHAR)", "CHAR", "CHAR needs a size"),
        ("create table t (a FLOAT)", "FLOAT", "unknown type FLOAT"),
        ("create table t (a TEXT)", "TEXT", "unknown type TEXT"),
        ("create table t (a MONEY)", "MONEY", "unknown type MONEY"),
        ("create table t (a INT, b INT default 1)", "b INT", "DEFAULT is not supported on a column"),
        (
            "create table t (a INT, primary key (b))",
            "b)",
            "PRIMARY KEY column b is not a column of table t",
        ),
        ("create table trade_order (a INT)", "trade_order", "trade_order is built in"),
    ],
)
def test_bad_declarations(tmp_path: Path, decl: str, needle: str, message: str) -> None:
    d = one_error(tmp_path, decl)
    assert_at(d, tmp_path / "rules.sql", 1, decl.index(needle) + 1, message)


@pytest.mark.parametrize(
    ("stmt", "needle", "message"),
    [
        (
            "create trigger t after fill on trade_order begin update trade_order set price = 1; end",
            "trade_order set",
            "trade_order is the event and is read-only",
        ),
        (
            "create trigger t after fill on trade_order begin "
            "insert into trade_order (price) values (1); end",
            "trade_order (",
            "read-only",
        ),
        (
            "create trigger t after fill on trade_order begin insert into acct (account_id, balance) "
            "values (1); end",
            "(1)",
            "INSERT lists 2 column(s) but 1 value(s)",
        ),
        (
            "create trigger t after fill on trade_order begin update acct set nosuch = 1 "
            "where account_id = 1; end",
            "nosuch",
            "table acct has no column nosuch",
        ),
        (
            "create trigger t after fill on trade_order begin insert into acct (account_id) values (1) "
            "on conflict (account_id) do update set nosuch = 1; end",
            "nosuch",
            "table acct has no column nosuch",
        ),
        (
            "create trigger t after fill on trade_order begin insert into acct (account_id, nosuch) "
            "values (1, 2); end",
            "nosuch",
            "table acct has no column nosuch",
        ),
        (
            "create trigger t after fill on trade_order begin update acct set balance = 1, balance = 2 "
            "where account_id = 1; end",
            "balance = 2",
            "SET twice",
        ),
        (
            "create trigger t after fill on trade_order begin update nosuch set a = 1; end",
            "nosuch",
            "unknown table nosuch",
        ),
        ("create trigger t after fill on trade_order begin end", "begin", "the trigger has no statements"),
    ],
)
def test_bad_statements(tmp_path: Path, stmt: str, needle: str, message: str) -> None:
    d = one_error(tmp_path, TABLES + stmt)
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, stmt.index(needle) + 1, message)


# ------------------------------------------------------------------------------ syntax and nesting


def test_syntax_error_points_at_the_token(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.price > 1 2)", "2", "syntax error")


def test_trigger_without_end(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin update acct set balance = 1 where account_id = 1;",
        "begin",
        "this BEGIN has no END",
    )


def test_rule_without_closing_paren(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (trade_order.price > 1", "(", "never closed")


def test_two_guards(tmp_path: Path) -> None:
    check(tmp_path, "Rule R (1 = 1 where 1 = 1 where 2 = 2)", "where", "one WHERE guard", occurrence=1)


def test_five_thousand_parentheses(tmp_path: Path) -> None:
    stmt = "Rule R (" + "(" * 5000 + "1" + ")" * 5000 + ")"
    d = one_error(tmp_path, TABLES + stmt)
    # the rule's own ( is level 1, so the 257th ( is the first past the limit
    assert_at(
        d,
        tmp_path / "rules.sql",
        RULE_LINE,
        len("Rule R ") + 257,
        "nested too deeply (5001 levels, the limit is 256)",
    )


def test_five_thousand_nots(tmp_path: Path) -> None:
    stmt = "Rule R (" + "not " * 5000 + "1)"
    d = one_error(tmp_path, TABLES + stmt)
    assert "nested too deeply" in d.message and "the limit is 256" in d.message


def test_a_very_long_chain_is_a_diagnostic(tmp_path: Path) -> None:
    stmt = "Rule R (" + " + ".join(["trade_order.price"] * 30000) + " > 0)"
    d = one_error(tmp_path, TABLES + stmt)
    assert_at(d, tmp_path / "rules.sql", RULE_LINE, 6, "too complex")


def test_every_statement_reports_its_error(tmp_path: Path) -> None:
    text = (
        "create table t (a CHAR(40))\n"
        "Rule A (price > 0)\n"
        "Rule B (trade_order.nosuch > 0)\n"
        "Rule C (trade_order.price > 0)\n"
        "Rule D (1 +)\n"
        "create trigger x after fill on trade_order begin update nosuch set a = 1; end\n"
    )
    found = errors(tmp_path, text)
    assert [d.loc.line for d in found if d.loc] == [1, 2, 3, 5, 6]


def test_rule_expression_and_guard_both_reported(tmp_path: Path) -> None:
    found = errors(tmp_path, "Rule R (price > 0 where direction = 1)")
    assert [(d.loc.line, d.loc.col) for d in found if d.loc] == [(1, 9), (1, 25)]


def test_table_error_does_not_cascade(tmp_path: Path) -> None:
    d = one_error(tmp_path, "create table t (a TEXT)\nRule R ((select a from t where a = 1) > 0)")
    assert_at(d, tmp_path / "rules.sql", 1, 19, "unknown type TEXT")


def test_rendered_diagnostic_has_a_caret(tmp_path: Path) -> None:
    d = one_error(tmp_path, "Rule R (trade_order.nosuch > 0)")
    lines = d.render().splitlines()
    assert lines[0] == f"{tmp_path / 'rules.sql'}:1:9: error: " + d.message
    assert lines[1].strip() == "Rule R (trade_order.nosuch > 0)"
    assert lines[2] == " " * (4 + 8) + "^"


def test_unclosed_parenthesis_costs_one_statement(tmp_path: Path) -> None:
    text = (
        "create table b (x INT, y INT8\n"
        "Rule R1 ((select x from b where x = 1) > 0\n"
        "Rule R2 (trade_order.nosuch > 0)\n"
        "Rule R3 trade_order.price > 0\n"
        "Rule R4 (1 = 1)\n"
    )
    found = errors(tmp_path, text)
    got = [(d.loc.line, d.loc.col, d.message) for d in found if d.loc]
    assert [(line, col) for line, col, _ in got] == [(1, 26), (2, 9), (3, 10), (4, 1)]
    assert "syntax error: Expecting )" in got[0][2]
    assert "never closed" in got[1][2]
    assert "trade_order has no field nosuch" in got[2][2]
    assert "a rule is written Rule NAME ( expression [WHERE guard] )" in got[3][2]


def test_rule_parts_are_checked(tmp_path: Path) -> None:
    found = errors(tmp_path, "Rule A (1 = 1 where)\nRule B (where 1)\nRule C ()\nRule D (1 = 1) extra\n")
    got = [(d.loc.line, d.loc.col, d.message) for d in found if d.loc]
    assert [(line, col) for line, col, _ in got] == [(1, 15), (2, 9), (3, 9), (4, 16)]
    assert "expected an expression after where" in got[0][2]
    assert "no expression before it" in got[1][2]
    assert "the rule is empty" in got[2][2]
    assert "unexpected text after the rule's closing )" in got[3][2]


def test_set_of_excluded_column(tmp_path: Path) -> None:
    check(
        tmp_path,
        "create trigger t after fill on trade_order begin insert into acct (account_id) values (1) "
        "on conflict (account_id) do update set excluded.balance = 1; end",
        "excluded.balance",
        "SET names a column of acct without a prefix",
    )
