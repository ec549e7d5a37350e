"""Assembly listings of program images: `disassemble` writes one, `assemble` reads it back.

The listing is complete: assembling a disassembled image gives the same bytes. Format::

    .image abi=1 lanes=8 regs=69 hash=<64 hex>
    .source 0 <sha256> path/to/rules.sql
    .table 1 account_ticket_info key=account_id,ticket_id,ticket_id.w1 [hidden]
    .col account_id INT32 notnull logical=0 word=0 size=0
    .const r64 NULL
    .rule 0 T1 reason=1 at=0:21:1
    .scan 0 account_ticket_info mode=MIN match=account_id order=avg_price
    .section NEW
      0:  r67 = eq r4, r66
          r68 = lookup account_ticket_info [r1, r2, r3]
      1:  r68 = read account_ticket_info.sell_low_price r68
          write account_info.available_balance r70, r71 if r72
          rule 0 r67, r68
"""

from __future__ import annotations

import re

from riskgw.doe.image import Image, PhysColumn, RuleInfo, ScanSpec, SourceInfo, TableConfig
from riskgw.doe.isa import ALU_OPS, REG_CONST_BASE, REG_TRUE, ColType, Event, Insn, Op, ScanMode


class AsmError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")


def _section_name(event: Event, table: int, tables: dict[int, TableConfig]) -> str:
    return f"LOAD {tables[table].name}" if event is Event.LOAD else event.name


def _insn_text(insn: Insn, tables: dict[int, TableConfig], scans: dict[int, ScanSpec]) -> str:
    regs = ", ".join(f"r{r}" for r in insn.srcs)
    op = insn.op
    if op in ALU_OPS:
        return f"r{insn.dst} = {op.name.lower()} {regs}"
    if op is Op.RULE:
        return f"rule {insn.imm} {regs}"
    t = tables[insn.table] if op is not Op.SCAN else None
    pred = "" if insn.pred == REG_TRUE else f" if r{insn.pred}"
    if op is Op.LOOKUP:
        assert t is not None
        return f"r{insn.dst} = lookup {t.name} [{regs}]"
    if op is Op.READ:
        assert t is not None
        return f"r{insn.dst} = read {t.name}.{t.columns[insn.imm].name} {regs}"
    if op is Op.ALLOC:
        assert t is not None
        return f"r{insn.dst} = alloc {t.name} [{regs}]{pred}"
    if op is Op.WRITE:
        assert t is not None
        return f"write {t.name}.{t.columns[insn.imm].name} {regs}{pred}"
    if op is Op.SCAN:
        return f"r{insn.dst} = scan {insn.table} [{regs}]"
    if op is Op.NOP:
        return "nop"
    raise AssertionError(op)


def disassemble(image: Image) -> str:
    tables = {t.id: t for t in image.tables}
    scans = {s.id: s for s in image.scans}
    out = [f".image abi={image.abi} lanes={image.lanes} regs={image.n_regs} hash={image.source_hash.hex()}"]
    for i, s in enumerate(image.sources):
        out.append(f".source {i} {s.sha256} {s.path}")
    for t in image.tables:
        key = ",".join(t.columns[k].name for k in t.key) or "-"
        out.append(f".table {t.id} {t.name} key={key}" + (" hidden" if t.hidden else ""))
        for c in t.columns:
            null = "null" if c.nullable else "notnull"
            out.append(
                f".col {c.name} {c.type.name} {null} logical={c.logical} word={c.word} size={c.char_size}"
            )
    for i, v in enumerate(image.consts):
        out.append(f".const r{REG_CONST_BASE + i} {'NULL' if v is None else v}")
    for r in image.rules:
        out.append(f".rule {r.id} {r.name} reason={r.reason} at={r.source}:{r.line}:{r.col}")
    for spec in image.scans:
        t = tables[spec.table]
        match = ",".join(t.columns[m].name for m in spec.match) or "-"
        order = t.columns[spec.order].name
        out.append(f".scan {spec.id} {t.name} mode={spec.mode.name} match={match} order={order}")
    for (event, table), bundles in sorted(image.code.items()):
        out.append(f".section {_section_name(event, table, tables)}")
        for b, bundle in enumerate(bundles):
            for i, insn in enumerate(bundle):
                label = f"{b}:" if i == 0 else ""
                out.append(f"  {label:<5} {_insn_text(insn, tables, scans)}")
    return "\n".join(out) + "\n"


_REG = re.compile(r"r(\d+)")


def _regs(text: str, line: int) -> tuple[int, ...]:
    text = text.strip()
    if not text:
        return ()
    out = []
    for part in text.split(","):
        m = _REG.fullmatch(part.strip())
        if not m:
            raise AsmError(line, f"expected a register, got {part.strip()!r}")
        out.append(int(m.group(1)))
    return tuple(out)


def _kv(parts: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in parts if "=" in p)


def assemble(text: str) -> Image:
    image = Image([], [], [], [], [], {}, lanes=1, n_regs=0)
    cols: dict[int, list[PhysColumn]] = {}
    table_meta: dict[int, tuple[str, str, bool]] = {}
    names: dict[str, int] = {}
    section: tuple[Event, int] | None = None
    bundle: list[Insn] = []
    pending_scans: list[tuple[int, str, str, str, str, int]] = []

    def col_index(table: str, col: str, line: int) -> tuple[int, int]:
        tid = names.get(table)
        if tid is None:
            raise AsmError(line, f"unknown table {table}")
        for i, c in enumerate(cols[tid]):
            if c.name == col:
                return tid, i
        raise AsmError(line, f"unknown column {table}.{col}")

    def flush() -> None:
        nonlocal bundle
        if bundle and section is not None:
            image.code.setdefault(section, []).append(tuple(bundle))
        bundle = []

    def finish_tables() -> None:
        if image.tables or not table_meta:
            return
        for tid, (name, key, hidden) in table_meta.items():
            tcols = tuple(cols[tid])
            key_idx = (
                ()
                if key == "-"
                else tuple(next(i for i, c in enumerate(tcols) if c.name == k) for k in key.split(","))
            )
            image.tables.append(TableConfig(tid, name, tcols, key_idx, hidden))

    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].rstrip()
        if not line.strip():
            continue
        parts = line.split()
        head = parts[0]
        if head == ".image":
            kv = _kv(parts[1:])
            image.abi, image.lanes, image.n_regs = int(kv["abi"]), int(kv["lanes"]), int(kv["regs"])
            image.source_hash = bytes.fromhex(kv["hash"])
        elif head == ".source":
            image.sources.append(SourceInfo(line.split(None, 3)[3], parts[2]))
        elif head == ".table":
            tid = int(parts[1])
            table_meta[tid] = (parts[2], _kv(parts[3:])["key"], "hidden" in parts[3:])
            names[parts[2]] = tid
            cols[tid] = []
            current = tid
        elif head == ".col":
            kv = _kv(parts[4:])
            cols[current].append(
                PhysColumn(
                    parts[1],
                    int(kv["logical"]),
                    int(kv["word"]),
                    ColType[parts[2]],
                    parts[3] == "null",
                    int(kv["size"]),
                )
            )
        elif head == ".const":
            image.consts.append(None if parts[2] == "NULL" else int(parts[2]))
        elif head == ".rule":
            kv = _kv(parts[3:])
            src, ln, col = (int(x) for x in kv["at"].split(":"))
            image.rules.append(RuleInfo(int(parts[1]), parts[2], src, ln, col, int(kv["reason"])))
        elif head == ".scan":
            kv = _kv(parts[3:])
            pending_scans.append((int(parts[1]), parts[2], kv["mode"], kv["match"], kv["order"], n))
        elif head == ".section":
            finish_tables()
            flush()
            section = (Event.LOAD, names[parts[2]]) if parts[1] == "LOAD" else (Event[parts[1]], 0)
        else:
            if section is None:
                raise AsmError(n, f"instruction outside a section: {line.strip()}")
            body = line.strip()
            m = re.match(r"(\d+):\s*(.*)", body)
            if m:
                flush()
                body = m.group(2)
            bundle.append(_parse_insn(body, n, col_index, names))
    flush()
    finish_tables()
    for sid, tname, mode, match, order, n in pending_scans:
        tid = names[tname]
        m_idx = () if match == "-" else tuple(col_index(tname, c, n)[1] for c in match.split(","))
        image.scans.append(ScanSpec(sid, tid, ScanMode[mode], m_idx, col_index(tname, order, n)[1]))
    return image


def _parse_insn(body: str, n: int, col_index, names: dict[str, int]) -> Insn:  # type: ignore[no-untyped-def]
    pred = REG_TRUE
    if " if " in body:
        body, p = body.rsplit(" if ", 1)
        pred = _regs(p, n)[0]
    if body.startswith("rule "):
        _, rid, rest = body.split(None, 2)
        return Insn(Op.RULE, srcs=_regs(rest, n), imm=int(rid))
    if body.startswith("write "):
        _, target, rest = body.split(None, 2)
        table, col = target.split(".", 1)
        tid, ci = col_index(table, col, n)
        return Insn(Op.WRITE, srcs=_regs(rest, n), pred=pred, table=tid, imm=ci)
    if body == "nop":
        return Insn(Op.NOP)
    m = re.fullmatch(r"r(\d+) = (\w+)\s*(.*)", body)
    if not m:
        raise AsmError(n, f"cannot read instruction {body!r}")
    dst, mnemonic, rest = int(m.group(1)), m.group(2).upper(), m.group(3)
    try:
        op = Op[mnemonic]
    except KeyError:
        raise AsmError(n, f"unknown opcode {mnemonic.lower()}") from None
    if op in ALU_OPS:
        return Insn(op, dst, _regs(rest, n))
    if op is Op.READ:
        target, reg = rest.split()
        table, col = target.split(".", 1)
        tid, ci = col_index(table, col, n)
        return Insn(op, dst, _regs(reg, n), table=tid, imm=ci)
    km = re.fullmatch(r"(\S+) \[(.*)\]", rest)
    if not km:
        raise AsmError(n, f"cannot read operands {rest!r}")
    target, keys = km.group(1), _regs(km.group(2), n)
    tid = int(target) if op is Op.SCAN else names[target]
    return Insn(op, dst, keys, pred=pred, table=tid)
