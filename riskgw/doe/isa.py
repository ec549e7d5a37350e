"""The DOE instruction set: the single source of the encoding.

`hdl/rgw_isa_pkg.sv` and the tables in `docs/isa.md` are generated from this module by
`python -m riskgw.doe.gen` (`make gen`); a test fails when they are stale.

Machine model
-------------
- A register holds a 64-bit signed value and a NULL bit. Registers 0..63 are inputs (the event's
  fields, or a row being loaded), then the constant pool, then temporaries.
- A section is a list of bundles. All instructions of a bundle read the registers and tables as
  they were before the bundle, and their results (registers and table writes) take effect together
  at its end. A bundle has at most `lanes` instructions (from the image header).
- Tables are stored column by column; a *physical column* is one 64-bit word with its own NULL
  bit. An INT or INT8 column is one physical column; CHAR(n) takes ceil(n/8) of them (bytes in
  little-endian order, zero-padded), all with the same NULL bit.
- A row handle is a register whose value is a row address, NULL for "no row".

Instruction word (128 bits, little-endian in the image)::

     127 124 123  112 111 104 103  92 91   80 79   68 67   56 55   44 43   32 31   20 19    8 7    0
    +-------+--------+-------+-------+------+------+------+------+------+------+-------+------+
    |END|rsv|  imm   | table | pred  |  f   |  e   |  d   |  c   |  b   |  a   |  dst  |  op  |
    +-------+--------+-------+-------+------+------+------+------+------+------+-------+------+

`END` marks the last instruction of a bundle. `a`..`f` are source registers (key words for
LOOKUP, ALLOC and SCAN, in key order). `pred` is the predicate of a write: the write happens only
when that register is TRUE. `imm` is a physical column (READ, WRITE), a rule id (RULE) or zero.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ABI_VERSION = 1
MAGIC = b"RGWP"

WORD_W = 64
INSN_W = 128
REG_W = 12  # register index width: up to 4096 registers
TABLE_W = 8
IMM_W = 12
MAX_KEY_WORDS = 6  # sources a..f
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

# Register map
N_INPUT_REGS = 64
REG_CONST_BASE = N_INPUT_REGS
# The constant pool always starts with these three entries.
REG_NULL = REG_CONST_BASE + 0
REG_ZERO = REG_CONST_BASE + 1
REG_TRUE = REG_CONST_BASE + 2  # the value 1: an unconditional predicate or guard


class EventField(enum.IntEnum):
    """Input registers of event sections: the `trade_order` fields, one register per word."""

    ORDER_ID = 0
    ACCOUNT_ID = 1
    TICKET_ID_W0 = 2
    TICKET_ID_W1 = 3
    DIRECTION = 4
    PRICE = 5
    QUANTITY = 6
    EXEC_PRICE = 7
    EXEC_QUANTITY = 8
    TS = 9


# trade_order field name -> first input register, number of words
EVENT_FIELD_REGS: dict[str, tuple[int, int]] = {
    "order_id": (EventField.ORDER_ID, 1),
    "account_id": (EventField.ACCOUNT_ID, 1),
    "ticket_id": (EventField.TICKET_ID_W0, 2),
    "direction": (EventField.DIRECTION, 1),
    "price": (EventField.PRICE, 1),
    "quantity": (EventField.QUANTITY, 1),
    "exec_price": (EventField.EXEC_PRICE, 1),
    "exec_quantity": (EventField.EXEC_QUANTITY, 1),
    "ts": (EventField.TS, 1),
}
N_EVENT_REGS = 10


class Op(enum.IntEnum):
    """Opcodes. The doc line of each is its exact meaning (docs/semantics.md for the SQL view)."""

    NOP = 0x00  # nothing
    MOV = 0x01  # dst = a
    ADD = 0x02  # dst = a + b; NULL on NULL or 64-bit overflow
    SUB = 0x03  # dst = a - b; NULL on NULL or overflow
    MUL = 0x04  # dst = a * b; NULL on NULL or overflow
    DIV = 0x05  # dst = a / b truncated toward zero; NULL on NULL, b == 0, or MIN / -1
    MOD = 0x06  # dst = a - b * (a / b); NULL on NULL or b == 0; 0 when b == -1
    NEG = 0x07  # dst = -a; NULL on NULL or a == MIN
    ABS = 0x08  # dst = |a|; NULL on NULL or a == MIN
    EQ = 0x10  # dst = a == b as 1/0; NULL on NULL
    NE = 0x11  # dst = a != b
    LT = 0x12  # dst = a < b
    LE = 0x13  # dst = a <= b
    GT = 0x14  # dst = a > b
    GE = 0x15  # dst = a >= b
    AND = 0x18  # 0 if either is FALSE, else NULL if either is NULL, else 1
    OR = 0x19  # 1 if either is TRUE, else NULL if either is NULL, else 0
    NOT = 0x1A  # NULL if NULL, 1 if a == 0, else 0
    ISNULL = 0x1B  # 1 if a is NULL else 0 (never NULL)
    NOTNULL = 0x1C  # 0 if a is NULL else 1 (never NULL)
    SEL = 0x1D  # dst = a if c is TRUE else b
    COALESCE = 0x1E  # dst = a if a is not NULL else b
    RANGE32 = 0x1F  # dst = a if a fits 32 bits signed, else NULL
    RULE = 0x20  # failed[imm] = (a is TRUE) and not (b is TRUE); a = guard, b = expression
    LOOKUP = (
        0x30  # dst = handle of the row of `table` whose key equals a..; NULL if none or a key word is NULL
    )
    READ = 0x31  # dst = table.column[imm] at row a; NULL if a is NULL or the cell is NULL
    ALLOC = 0x32  # if pred and the key is new: append a row with key a.., others NULL; dst = it, else NULL
    WRITE = 0x33  # if pred and a is not NULL: table.column[imm] at row a = b
    SCAN = 0x34  # dst = handle of the best row of scan spec `table` among rows whose match columns equal a..


ALU_OPS = frozenset(
    {
        Op.MOV,
        Op.ADD,
        Op.SUB,
        Op.MUL,
        Op.DIV,
        Op.MOD,
        Op.NEG,
        Op.ABS,
        Op.EQ,
        Op.NE,
        Op.LT,
        Op.LE,
        Op.GT,
        Op.GE,
        Op.AND,
        Op.OR,
        Op.NOT,
        Op.ISNULL,
        Op.NOTNULL,
        Op.SEL,
        Op.COALESCE,
        Op.RANGE32,
    }
)
UNARY_OPS = frozenset({Op.MOV, Op.NEG, Op.ABS, Op.NOT, Op.ISNULL, Op.NOTNULL, Op.RANGE32})
TABLE_OPS = frozenset({Op.LOOKUP, Op.READ, Op.ALLOC, Op.WRITE, Op.SCAN})
KEYED_OPS = frozenset({Op.LOOKUP, Op.ALLOC, Op.SCAN})  # key words in a..f
WRITE_OPS = frozenset({Op.ALLOC, Op.WRITE})  # effects on tables, predicated by `pred`


class ScanMode(enum.IntEnum):
    """How SCAN picks the best row. Ties go to the lowest row address (inserted first)."""

    MIN = 0  # least non-NULL order column; rows with NULL are ignored
    MAX = 1  # greatest non-NULL order column
    FIRST_ASC = 2  # ORDER BY o ASC LIMIT 1: a row with NULL o is first
    FIRST_DESC = 3  # ORDER BY o DESC LIMIT 1: rows with NULL o are last


class ColType(enum.IntEnum):
    """Logical type of a physical column (a word)."""

    INT32 = 0
    INT64 = 1
    CHAR = 2  # one 8-byte word of a CHAR(n) value


class SectionKind(enum.IntEnum):
    """Sections of the program image. CODE sections carry an event (or, for LOAD, a table id) in `arg`."""

    STRINGS = 0x01  # NUL-terminated UTF-8 names, referenced by offset
    TABLES = 0x02  # table, column and index configuration
    CONSTS = 0x03  # the constant pool, loaded into registers REG_CONST_BASE..
    RULES = 0x04  # the rule table
    SCANS = 0x05  # scan specs
    SOURCES = 0x06  # source file names and their hashes
    CODE = 0x10  # one section of code


class Event(enum.IntEnum):
    """Code sections. NEW is the check; ACCEPT runs after a NEW that passed; LOAD inserts a data row."""

    NEW = 0
    ACCEPT = 1
    FILL = 2
    REJECT = 3
    CANCEL = 4
    LOAD = 5  # per table: `arg` of the section is the table id; row words in registers 0.. in column order


class RejectReason(enum.IntEnum):
    """Why an order was rejected, as the card reports it (FIX OrdRejReason in brackets)."""

    NONE = 0
    RULE = 1  # one or more risk rules failed (3: order exceeds limit)
    PROTOCOL = 2  # malformed frame (99: other)
    NOT_PERMITTED = 3  # account not allowed on this session (0: broker option)
    KILL_SWITCH = 4  # a kill switch is active (0: broker option)


TABLE_FLAG_HIDDEN = 0x1  # compiler-generated (an incremental aggregate); not loaded nor dumped


# ----------------------------------------------------------------------------- instructions

_FIELDS: tuple[tuple[str, int, int], ...] = (
    # name, low bit, width
    ("op", 0, 8),
    ("dst", 8, REG_W),
    ("a", 20, REG_W),
    ("b", 32, REG_W),
    ("c", 44, REG_W),
    ("d", 56, REG_W),
    ("e", 68, REG_W),
    ("f", 80, REG_W),
    ("pred", 92, REG_W),
    ("table", 104, TABLE_W),
    ("imm", 112, IMM_W),
    ("end", 127, 1),
)
INSN_FIELDS = {name: (lo, width) for name, lo, width in _FIELDS}
SRC_FIELDS = ("a", "b", "c", "d", "e", "f")


@dataclass(frozen=True)
class Insn:
    op: Op
    dst: int = 0
    srcs: tuple[int, ...] = ()  # a..f
    pred: int = REG_TRUE
    table: int = 0
    imm: int = 0
    end: bool = False  # last instruction of its bundle

    def encode(self) -> int:
        if len(self.srcs) > len(SRC_FIELDS):
            raise ValueError(f"{self.op.name}: {len(self.srcs)} sources, at most {len(SRC_FIELDS)}")
        values = {
            "op": int(self.op),
            "dst": self.dst,
            "pred": self.pred,
            "table": self.table,
            "imm": self.imm,
            "end": int(self.end),
        }
        for name, reg in zip(SRC_FIELDS, self.srcs, strict=False):
            values[name] = reg
        word = 0
        for name, value in values.items():
            lo, width = INSN_FIELDS[name]
            if not 0 <= value < (1 << width):
                raise ValueError(f"{self.op.name}: field {name}={value} does not fit {width} bits")
            word |= value << lo
        return word

    @staticmethod
    def decode(word: int, n_srcs: int | None = None) -> Insn:
        def get(name: str) -> int:
            lo, width = INSN_FIELDS[name]
            return (word >> lo) & ((1 << width) - 1)

        op = Op(get("op"))
        if n_srcs is None:
            n_srcs = op_sources(op)
        return Insn(
            op=op,
            dst=get("dst"),
            srcs=tuple(get(n) for n in SRC_FIELDS[:n_srcs]),
            pred=get("pred"),
            table=get("table"),
            imm=get("imm"),
            end=bool(get("end")),
        )


def op_sources(op: Op) -> int:
    """Number of source registers an op reads from a.. (for keyed ops: taken from the table config)."""
    if op in UNARY_OPS or op is Op.READ:
        return 1
    if op is Op.SEL:
        return 3
    if op in (Op.WRITE, Op.RULE) or op in ALU_OPS:
        return 2
    if op is Op.NOP:
        return 0
    return MAX_KEY_WORDS  # keyed: decoded in full; the table says how many are used


def truthy(value: int | None) -> bool:
    return value is not None and value != 0
