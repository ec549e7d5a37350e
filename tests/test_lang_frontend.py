"""The front end on valid input: the seed fixture, several files, every expression form, limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from lang_support import TABLES, compile_text, write

from riskgw.lang import ast
from riskgw.lang.ast import BOOL, INT, INT8, RowKind, TypeKind, char
from riskgw.lang.frontend import parse_files

SEED = Path("/work/shared/fixtures/seed_rules.sql")
SEED_COPY = Path(__file__).parent / "fixtures" / "lang" / "seed_rules.sql"


def _seed() -> Path:
    return SEED if SEED.exists() else SEED_COPY


def test_seed_fixture_tables() -> None:
    program = parse_files([_seed()])
    assert [t.name for t in program.tables] == ["account_info", "account_ticket_info"]
    info, ticket = program.tables
    assert [(c.name, c.type, c.nullable) for c in info.columns] == [
        ("account_id", INT, False),
        ("available_balance", INT8, True),
        ("total_balance", INT8, True),
    ]
    assert [(c.name, c.type, c.nullable) for c in ticket.columns] == [
        ("account_id", INT, False),
        ("ticket_id", char(16), True),
        ("avail_quantity", INT, True),
        ("total_quantity", INT, True),
        ("avg_price", INT8, True),
        ("buy_top_price", INT8, True),
        ("sell_low_price", INT8, True),
    ]
    assert [c.index for c in ticket.columns] == list(range(7))
    assert info.primary_key is None
    assert program.triggers == ()


def test_seed_fixture_rule_and_guard() -> None:
    program = parse_files([_seed()])
    (rule,) = program.rules
    assert rule.name == "T1"
    assert (rule.loc.line, rule.loc.col) == (23, 6)
    expr = rule.expr
    assert isinstance(expr, ast.Binary) and expr.op is ast.BinaryOp.GT
    assert isinstance(expr.left, ast.Field) and expr.left.name == "price"
    sub = expr.right
    assert isinstance(sub, ast.Subquery)
    assert sub.scope.kind is RowKind.SUBQUERY and sub.scope.table.name == "account_ticket_info"
    assert isinstance(sub.select, ast.ColumnRef) and sub.select.column.name == "buy_top_price"
    assert sub.nullable and sub.type == INT8
    where = sub.where
    assert isinstance(where, ast.Binary) and where.op is ast.BinaryOp.AND
    left, right = where.left, where.right
    assert isinstance(left, ast.Binary) and isinstance(right, ast.Binary)
    assert isinstance(left.left, ast.ColumnRef) and left.left.scope is sub.scope
    assert left.left.column.name == "ticket_id"
    assert isinstance(left.right, ast.Field) and left.right.name == "ticket_id"
    assert isinstance(right.right, ast.Field) and right.right.name == "account_id"
    guard = rule.guard
    assert isinstance(guard, ast.Binary) and guard.op is ast.BinaryOp.EQ
    assert isinstance(guard.left, ast.Field) and guard.left.name == "direction"
    assert isinstance(guard.right, ast.Literal) and guard.right.value == 1


def test_seed_fixture_source_hash() -> None:
    path = _seed()
    program = parse_files([path])
    assert program.sources == (ast.Source(str(path), hashlib.sha256(path.read_bytes()).hexdigest()),)


def test_several_files_keep_order(tmp_path: Path) -> None:
    a = write(tmp_path, TABLES + "Rule Z1 (trade_order.price > 0)\nRule A1 (trade_order.price > 1)", "a.sql")
    b = write(
        tmp_path,
        "Rule M1 ((select balance from acct where account_id = trade_order.account_id) > 0)",
        "b.sql",
    )
    c = write(tmp_path, "Rule B1 (trade_order.quantity < 5) Rule B0 (trade_order.quantity < 6)", "c.sql")
    program = parse_files([a, b, c])
    assert [r.name for r in program.rules] == ["Z1", "A1", "M1", "B1", "B0"]
    assert [s.path for s in program.sources] == [str(a), str(b), str(c)]
    assert [r.loc.path for r in program.rules] == [str(a), str(a), str(b), str(c), str(c)]
    program = parse_files([c, a, b])
    assert [r.name for r in program.rules] == ["B1", "B0", "Z1", "A1", "M1"]


def test_table_declared_in_a_later_file(tmp_path: Path) -> None:
    rules = write(tmp_path, "Rule R ((select qty from pos where account_id = 1) > 0)", "rules.sql")
    tables = write(tmp_path, TABLES, "tables.sql")
    program = parse_files([rules, tables])
    assert isinstance(program.rules[0].expr, ast.Binary)


def test_statement_separators_and_case_insensitive_keywords(tmp_path: Path) -> None:
    text = (
        "CREATE TABLE a (x INT NOT NULL, y INTEGER, z BIGINT NOT NULL, w VARCHAR(4) NULL, v INT8,);\n"
        "CrEaTe TaBlE b (x int) rule r1 (trade_order.price > 0) RULE r2 (TRADE_ORDER.PRICE > 0);;\n"
        "/* a comment */ -- another\nRule r3 (trade_order.price > 0 /* inline */ -- tail\n)"
    )
    program = compile_text(tmp_path, text)
    a = program.tables[0]
    assert [(c.name, c.type, c.nullable) for c in a.columns] == [
        ("x", INT, False),
        ("y", INT, True),
        ("z", INT8, False),
        ("w", char(4), True),
        ("v", INT8, True),
    ]
    assert [r.name for r in program.rules] == ["r1", "r2", "r3"]
    assert isinstance(program.rules[1].expr, ast.Binary)
    assert isinstance(program.rules[1].expr.left, ast.Field)


def test_primary_key_forms(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path,
        "create table a (x INT primary key, y INT);\ncreate table b (x INT, y CHAR(3), primary key (y, x))",
    )
    assert program.tables[0].primary_key == ("x",)
    assert program.tables[1].primary_key == ("y", "x")


def test_utf8_comments_and_positions(tmp_path: Path) -> None:
    program = compile_text(tmp_path, TABLES + "/*中文注释*/ Rule 规则 (trade_order.price > 0)")
    rule = program.rules[0]
    assert rule.name == "规则"
    assert (rule.loc.line, rule.loc.col) == (3, 15)  # columns count characters


def test_where_inside_subquery_is_not_the_guard(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path, TABLES + "Rule R ((select balance from acct where account_id = trade_order.account_id) > 0)"
    )
    assert program.rules[0].guard is None
    program = compile_text(
        tmp_path,
        TABLES + "Rule R ((select balance from acct where account_id = 1) > 0 where "
        "(select count(*) from pos where qty > 0) > 0)",
    )
    guard = program.rules[0].guard
    assert isinstance(guard, ast.Binary) and isinstance(guard.left, ast.Subquery)


def test_scope_ids_are_unique(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path,
        TABLES + "Rule R1 ((select balance from acct where account_id = trade_order.account_id) > "
        "(select qty from pos where account_id = trade_order.account_id "
        "and ticket_id = trade_order.ticket_id))\n"
        "Rule R2 ((select balance from acct where account_id = trade_order.account_id) > 0)\n"
        "create trigger t after fill on trade_order begin\n"
        "update acct set balance = balance - 1 where account_id = trade_order.account_id;\n"
        "insert into pos (account_id, ticket_id, qty) "
        "values (trade_order.account_id, trade_order.ticket_id, 1)\n"
        "  on conflict (account_id, ticket_id) do update set qty = qty + excluded.qty;\nend;",
    )
    ids = []
    for rule in program.rules:
        expr = rule.expr
        assert isinstance(expr, ast.Binary)
        for side in (expr.left, expr.right):
            if isinstance(side, ast.Subquery):
                ids.append(side.scope.id)
    update, insert = program.triggers[0].body
    assert isinstance(update, ast.Update) and isinstance(insert, ast.Insert)
    assert insert.target is not None and insert.excluded is not None
    ids += [update.target.id, insert.target.id, insert.excluded.id]
    assert len(ids) == 6 and len(set(ids)) == 6


# ------------------------------------------------------------------------------ expressions

SUB_ACCT = "(select balance from acct where account_id = trade_order.account_id)"


def _rule_expr(tmp_path: Path, expr: str) -> ast.Expr:
    program = compile_text(tmp_path, TABLES + f"Rule R ({expr})")
    return program.rules[0].expr


@pytest.mark.parametrize(
    ("text", "node", "sqltype", "nullable"),
    [
        ("1", ast.Literal, INT8, False),
        ("NULL", ast.Literal, INT8, True),
        ("trade_order.price", ast.Field, INT8, True),
        ("trade_order.direction", ast.Field, INT, True),
        ("trade_order.ticket_id = 'X'", ast.Binary, BOOL, True),
        ("1 + 2", ast.Binary, INT8, True),
        ("1 - 2", ast.Binary, INT8, True),
        ("1 * 2", ast.Binary, INT8, True),
        ("1 / 2", ast.Binary, INT8, True),
        ("1 % 2", ast.Binary, INT8, True),
        ("-trade_order.price", ast.Unary, INT8, True),
        ("1 = 2", ast.Binary, BOOL, False),
        ("1 != 2", ast.Binary, BOOL, False),
        ("1 <> 2", ast.Binary, BOOL, False),
        ("1 < 2", ast.Binary, BOOL, False),
        ("1 <= 2", ast.Binary, BOOL, False),
        ("1 > 2", ast.Binary, BOOL, False),
        ("1 >= trade_order.price", ast.Binary, BOOL, True),
        ("1 and 2", ast.Binary, BOOL, False),
        ("1 or trade_order.price", ast.Binary, BOOL, True),
        ("not 1", ast.Unary, BOOL, False),
        ("trade_order.price is null", ast.Unary, BOOL, False),
        ("trade_order.price is not null", ast.Unary, BOOL, False),
        ("trade_order.price between 1 and 2", ast.Between, BOOL, True),
        ("trade_order.price not between 1 and 2", ast.Between, BOOL, True),
        ("trade_order.direction in (1, 2)", ast.InList, BOOL, True),
        ("trade_order.ticket_id not in ('A', 'B')", ast.InList, BOOL, True),
        ("case when trade_order.price > 1 then 1 else 2 end", ast.Case, INT8, False),
        ("case when trade_order.price > 1 then 1 end", ast.Case, INT8, True),
        (
            "case trade_order.direction when 1 then 'buy' when 2 then 'sell!' end = 'buy'",
            ast.Binary,
            BOOL,
            True,
        ),
        ("coalesce(trade_order.price, 0)", ast.Coalesce, INT8, False),
        ("coalesce(trade_order.price, trade_order.quantity)", ast.Coalesce, INT8, True),
        ("abs(trade_order.price)", ast.Unary, INT8, True),
        (SUB_ACCT, ast.Subquery, INT8, True),
        ("(select account_id from acct where account_id = 1)", ast.Subquery, INT, True),
        ("(select sum(qty) from pos where account_id = 1)", ast.Subquery, INT8, True),
        ("(select count(*) from pos where account_id = 1)", ast.Subquery, INT8, False),
        ("(select count(qty) from pos where account_id = 1)", ast.Subquery, INT8, False),
        ("(select avg(qty) from pos where account_id = 1)", ast.Subquery, INT8, True),
        ("(select min(account_id) from pos)", ast.Subquery, INT, True),
        ("(select max(qty) from pos where account_id = 1)", ast.Subquery, INT8, True),
        ("(select price from pos where account_id = 1 order by qty desc limit 1)", ast.Subquery, INT8, True),
    ],
)
def test_expression_forms(
    tmp_path: Path, text: str, node: type, sqltype: ast.SqlType, nullable: bool
) -> None:
    expr = _rule_expr(tmp_path, text)
    assert type(expr) is node
    assert expr.type == sqltype
    assert expr.nullable is nullable


def test_string_literals_are_char_of_their_byte_length(tmp_path: Path) -> None:
    for text, size in (("'abc'", 3), ("'中'", 3), ("'it''s'", 4)):
        expr = _rule_expr(tmp_path, f"{text} = trade_order.ticket_id")
        assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Literal)
        assert expr.left.type == char(size) and not expr.left.nullable
    expr = _rule_expr(tmp_path, "'it''s' = trade_order.ticket_id")
    assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Literal)
    assert expr.left.value == "it's"


def test_unary_and_binary_operators(tmp_path: Path) -> None:
    ops = {
        "-trade_order.price": ast.UnaryOp.NEG,
        "not trade_order.price": ast.UnaryOp.NOT,
        "trade_order.price is null": ast.UnaryOp.IS_NULL,
        "trade_order.price is not null": ast.UnaryOp.IS_NOT_NULL,
        "abs(trade_order.price)": ast.UnaryOp.ABS,
    }
    for text, op in ops.items():
        expr = _rule_expr(tmp_path, text)
        assert isinstance(expr, ast.Unary) and expr.op is op, text
    binops = {"+": "ADD", "-": "SUB", "*": "MUL", "/": "DIV", "%": "MOD", "=": "EQ", "!=": "NE", "<>": "NE"}
    binops.update({"<": "LT", "<=": "LE", ">": "GT", ">=": "GE", "and": "AND", "or": "OR"})
    for text, name in binops.items():
        expr = _rule_expr(tmp_path, f"trade_order.price {text} 3")
        assert isinstance(expr, ast.Binary) and expr.op is ast.BinaryOp[name], text


def test_negative_literal_and_range(tmp_path: Path) -> None:
    expr = _rule_expr(tmp_path, "trade_order.price > -9223372036854775808")
    assert isinstance(expr, ast.Binary) and isinstance(expr.right, ast.Literal)
    assert expr.right.value == -(2**63)


def test_not_between_and_not_in_are_negated(tmp_path: Path) -> None:
    expr = _rule_expr(tmp_path, "trade_order.price not between 1 and 2")
    assert isinstance(expr, ast.Between) and expr.negated
    assert isinstance(expr.low, ast.Literal) and expr.low.value == 1
    expr = _rule_expr(tmp_path, "trade_order.price between 1 and 2")
    assert isinstance(expr, ast.Between) and not expr.negated
    expr = _rule_expr(tmp_path, "trade_order.direction not in (1, 2, 3)")
    assert isinstance(expr, ast.InList) and expr.negated and len(expr.items) == 3


def test_simple_case_is_rewritten_to_equalities(tmp_path: Path) -> None:
    expr = _rule_expr(tmp_path, "case trade_order.direction when 1 then 10 when 2 then 20 else 30 end > 0")
    assert isinstance(expr, ast.Binary)
    case = expr.left
    assert isinstance(case, ast.Case)
    assert len(case.whens) == 2
    for (cond, _), value in zip(case.whens, (1, 2), strict=True):
        assert isinstance(cond, ast.Binary) and cond.op is ast.BinaryOp.EQ
        assert isinstance(cond.left, ast.Field) and cond.left.name == "direction"
        assert isinstance(cond.right, ast.Literal) and cond.right.value == value
    assert isinstance(case.else_, ast.Literal) and case.else_.value == 30


def test_null_takes_the_type_of_what_it_meets(tmp_path: Path) -> None:
    expr = _rule_expr(tmp_path, "trade_order.ticket_id = NULL")
    assert isinstance(expr, ast.Binary) and isinstance(expr.right, ast.Literal)
    assert expr.right.value is None and expr.right.type == char(16)
    case = _rule_expr(tmp_path, "case when 1 then 'ab' else null end = 'ab'")
    assert isinstance(case, ast.Binary) and isinstance(case.left, ast.Case)
    assert case.left.type == char(2)


def test_aggregates(tmp_path: Path) -> None:
    funcs = {
        "sum(qty)": ast.AggFunc.SUM,
        "count(*)": ast.AggFunc.COUNT_STAR,
        "count(qty)": ast.AggFunc.COUNT,
        "avg(qty)": ast.AggFunc.AVG,
        "min(qty)": ast.AggFunc.MIN,
        "max(qty)": ast.AggFunc.MAX,
    }
    for text, func in funcs.items():
        expr = _rule_expr(tmp_path, f"(select {text} from pos where account_id = trade_order.account_id) > 0")
        assert isinstance(expr, ast.Binary)
        sub = expr.left
        assert isinstance(sub, ast.Subquery) and isinstance(sub.select, ast.Agg)
        assert sub.select.func is func
        assert (sub.select.arg is None) == (func is ast.AggFunc.COUNT_STAR)
        assert sub.order_by is None


def test_order_by_limit_one(tmp_path: Path) -> None:
    for direction, descending in (("", False), ("asc", False), ("desc", True)):
        expr = _rule_expr(
            tmp_path, f"(select price from pos where account_id = 1 order by qty {direction} limit 1) > 0"
        )
        assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Subquery)
        sub = expr.left
        assert isinstance(sub.order_by, ast.ColumnRef) and sub.order_by.column.name == "qty"
        assert sub.order_by.scope is sub.scope
        assert sub.descending is descending


def test_subquery_column_resolution(tmp_path: Path) -> None:
    # bare `qty` is pos's (innermost); bare `balance` is only in the outer acct; p.x by alias
    expr = _rule_expr(
        tmp_path,
        "(select balance from acct a where account_id = trade_order.account_id and "
        "balance > (select max(qty) from pos p where p.account_id = a.account_id and qty > balance)) > 0",
    )
    assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Subquery)
    outer = expr.left
    assert isinstance(outer.where, ast.Binary)
    inner = outer.where.right
    assert isinstance(inner, ast.Binary) and isinstance(inner.right, ast.Subquery)
    sub = inner.right
    assert isinstance(sub.where, ast.Binary)
    key, filt = sub.where.left, sub.where.right
    assert isinstance(key, ast.Binary) and isinstance(filt, ast.Binary)
    assert isinstance(key.left, ast.ColumnRef) and key.left.scope is sub.scope
    assert isinstance(key.right, ast.ColumnRef) and key.right.scope is outer.scope
    assert isinstance(filt.left, ast.ColumnRef) and filt.left.scope is sub.scope
    assert isinstance(filt.right, ast.ColumnRef) and filt.right.scope is outer.scope
    # the innermost table wins for a column both have
    expr = _rule_expr(
        tmp_path,
        "(select balance from acct where account_id = "
        "(select max(account_id) from pos where account_id = 3)) > 0",
    )
    assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Subquery)
    assert isinstance(expr.left.where, ast.Binary) and isinstance(expr.left.where.right, ast.Subquery)
    innermost = expr.left.where.right
    assert isinstance(innermost.where, ast.Binary) and isinstance(innermost.where.left, ast.ColumnRef)
    assert innermost.where.left.scope is innermost.scope


def test_alias_with_as_and_table_name(tmp_path: Path) -> None:
    for from_clause, qual in (("pos as p", "p"), ("pos p", "p"), ("pos", "pos")):
        expr = _rule_expr(tmp_path, f"(select {qual}.qty from {from_clause} where {qual}.account_id = 1) > 0")
        assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Subquery)
        assert isinstance(expr.left.select, ast.ColumnRef) and expr.left.select.column.name == "qty"


# ------------------------------------------------------------------------------ triggers


def test_triggers(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path,
        TABLES + "create trigger on_fill after FILL on trade_order when trade_order.direction = 1 begin\n"
        "  update acct set balance = balance - trade_order.exec_price * trade_order.exec_quantity,\n"
        "                  name = 'filled' where account_id = trade_order.account_id;\n"
        "  insert into pos (account_id, ticket_id, qty) "
        "values (trade_order.account_id, trade_order.ticket_id,\n"
        "      trade_order.exec_quantity)\n"
        "    on conflict (account_id, ticket_id) do update set qty = pos.qty + excluded.qty, price = price;\n"
        "end;\n"
        "CREATE TRIGGER a AFTER ACCEPT ON trade_order BEGIN "
        "UPDATE acct SET name = NULL WHERE account_id = 1 END\n"
        "create trigger r after reject on trade_order for each row begin "
        "insert into acct values (1, 2, 'x'); end;\n"
        "create trigger c after cancel on trade_order begin update acct set balance = case when balance > 0 "
        "then balance end where account_id = trade_order.account_id; end",
    )
    assert [(t.name, t.event) for t in program.triggers] == [
        ("on_fill", ast.TriggerEvent.FILL),
        ("a", ast.TriggerEvent.ACCEPT),
        ("r", ast.TriggerEvent.REJECT),
        ("c", ast.TriggerEvent.CANCEL),
    ]
    fill = program.triggers[0]
    assert isinstance(fill.when, ast.Binary)
    update, insert = fill.body
    assert isinstance(update, ast.Update) and update.table.name == "acct"
    assert update.target.kind is RowKind.TARGET
    assert [a.column.name for a in update.sets] == ["balance", "name"]
    value = update.sets[0].value
    assert isinstance(value, ast.Binary) and isinstance(value.left, ast.ColumnRef)
    assert value.left.scope is update.target
    assert isinstance(update.where, ast.Binary) and isinstance(update.where.left, ast.ColumnRef)
    assert update.where.left.scope is update.target
    assert isinstance(insert, ast.Insert)
    assert [c.name for c in insert.columns] == ["account_id", "ticket_id", "qty"]
    assert all(isinstance(v, ast.Field) for v in insert.values)
    assert insert.conflict is not None and [c.name for c in insert.conflict] == ["account_id", "ticket_id"]
    assert insert.target is not None and insert.excluded is not None
    assert insert.target.kind is RowKind.TARGET and insert.excluded.kind is RowKind.EXCLUDED
    qty = insert.conflict_sets[0].value
    assert isinstance(qty, ast.Binary)
    assert isinstance(qty.left, ast.ColumnRef) and qty.left.scope is insert.target
    assert isinstance(qty.right, ast.ColumnRef) and qty.right.scope is insert.excluded
    price = insert.conflict_sets[1].value
    assert isinstance(price, ast.ColumnRef) and price.scope is insert.target  # bare is the existing row
    accept = program.triggers[1]
    assert accept.when is None
    (set_null,) = accept.body
    assert isinstance(set_null, ast.Update)
    null = set_null.sets[0].value
    assert isinstance(null, ast.Literal) and null.value is None and null.type == char(8)
    (plain,) = program.triggers[2].body
    assert isinstance(plain, ast.Insert) and [c.name for c in plain.columns] == [
        "account_id",
        "balance",
        "name",
    ]
    assert plain.conflict is None and plain.target is None and plain.excluded is None


def test_case_end_inside_trigger_body(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path,
        TABLES
        + "create trigger t after fill on trade_order when case when trade_order.price > 0 then 1 end begin\n"
        "update acct set balance = case when 1 then 1 else 2 end where account_id = 1;\n"
        "update acct set balance = case when 1 then 3 end where account_id = 2 end Rule R (1)",
    )
    assert len(program.triggers[0].body) == 2
    assert [r.name for r in program.rules] == ["R"]


def test_char_literal_longer_than_an_expression_column_warns(tmp_path: Path) -> None:
    program = compile_text(
        tmp_path,
        TABLES + "create trigger t after fill on trade_order begin\n"
        "update acct set name = trade_order.ticket_id where account_id = 1; end",
    )
    (warning,) = program.warnings
    assert warning.severity is ast.Severity.WARNING
    assert "may be too long for column acct.name (CHAR(8))" in warning.message
    assert warning.loc is not None and (warning.loc.line, warning.loc.col) == (4, 24)


# ------------------------------------------------------------------------------ limits


def test_32_levels_of_subqueries(tmp_path: Path) -> None:
    expr = "trade_order.price"
    for _ in range(32):
        expr = f"(select balance from acct where account_id = ({expr}) + 1)"
    program = compile_text(tmp_path, TABLES + f"Rule R ({expr} > 0)")
    node = program.rules[0].expr
    assert isinstance(node, ast.Binary)
    depth = 0
    current: ast.Expr = node.left
    while isinstance(current, ast.Subquery):
        depth += 1
        assert isinstance(current.where, ast.Binary) and isinstance(current.where.right, ast.Binary)
        current = current.where.right.left
    assert depth == 32
    assert isinstance(current, ast.Field)


def test_deep_expressions_up_to_the_limit(tmp_path: Path) -> None:
    text = "(" * 250 + "trade_order.price" + ")" * 250 + " > 0"
    assert isinstance(_rule_expr(tmp_path, text), ast.Binary)
    nots = _rule_expr(tmp_path, "not " * 200 + "1")
    assert isinstance(nots, ast.Unary) and nots.op is ast.UnaryOp.NOT
    cases = _rule_expr(tmp_path, "case when 1 then " * 100 + "1" + " end" * 100)
    assert isinstance(cases, ast.Case)


def test_128_rules_in_a_file(tmp_path: Path) -> None:
    text = TABLES + "\n".join(
        f"Rule R{i} ((select balance from acct where account_id = trade_order.account_id) > {i})"
        for i in range(128)
    )
    program = compile_text(tmp_path, text)
    assert [r.name for r in program.rules] == [f"R{i}" for i in range(128)]
    for i, rule in enumerate(program.rules):
        assert isinstance(rule.expr, ast.Binary) and isinstance(rule.expr.right, ast.Literal)
        assert rule.expr.right.value == i


def test_char_sizes(tmp_path: Path) -> None:
    program = compile_text(tmp_path, "create table t (a CHAR(1), b VARCHAR(32))")
    assert [c.type for c in program.tables[0].columns] == [char(1), char(32)]
    assert all(c.type.kind is TypeKind.CHAR for c in program.tables[0].columns)


def test_all_null_case_and_coalesce_meet_char(tmp_path: Path) -> None:
    expr = _rule_expr(tmp_path, "coalesce(coalesce(NULL, NULL), NULL) = coalesce(coalesce(NULL, NULL), 'A')")
    assert isinstance(expr, ast.Binary)
    assert isinstance(expr.left, ast.Literal) and expr.left.value is None and expr.left.type == char(1)
    assert isinstance(expr.right, ast.Coalesce) and expr.right.type == char(1)
    expr = _rule_expr(tmp_path, "case when trade_order.price > 0 then NULL end = trade_order.ticket_id")
    assert isinstance(expr, ast.Binary) and isinstance(expr.left, ast.Literal)
    assert expr.left.value is None and expr.left.type == char(16)
