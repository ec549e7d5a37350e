"""The card's host interface: AXI-Lite register blocks and the TOE streams of `hdl/rgw_card.sv`.

This module is the single source of the register map. The SystemVerilog package
(`hdl/rgw_card_pkg.sv`) and the register tables of `docs/card.md` are generated from it, and the
register-level driver (riskgw/card/regs.py) reads addresses only from here, so the simulated card
and a U200 are driven by the same code over different buses.

Registers are 32 bits at byte addresses. The space is a chain of self-describing blocks: every
block starts with

    +0x00  TYPE_VERSION   type[31:16] (BlockType), version[15:0]
    +0x04  NEXT           byte address of the next block, 0 after the last

and the chain starts at address 0 with the ID block, so a driver finds every block by walking it
and refuses a card whose blocks or versions it does not know. 64-bit values are two registers,
low word first; reading the low word latches the high word, so a pair read low-then-high is
consistent.

TOE streams (AXI4-Stream, DATA_W bits, little-endian bytes, tkeep contiguous from bit 0):

- rx (host -> card): tuser = session id (16 bits), constant within a packet. A packet (up to
  tlast) holds whole wire-protocol frames of one session (riskgw/gateway/protocol.py); bytes that
  cannot start a frame are skipped as `FrameReader` does, and a frame cut short by tlast is
  truncated. NEW_ORDER runs a NEW event; FILL, EXCH_REJECT and CANCELLED run FILL, REJECT and
  CANCEL with the frame's order fields, exec_price and exec_quantity.
- tx (card -> host): one frame per packet, tuser = the session it goes to, seq = the seq of the
  rx frame that caused it (the host numbers frames per TCP connection itself). For a NEW that
  passes: ACCEPTED on the rx session, then NEW_ORDER with the same fields on the session in
  EXCH_SESSION. For a NEW that fails: REJECTED (reason RULE, n_failed, failed_mask, ts = the rx
  cycle stamp) on the rx session. For FILL / EXCH_REJECT / CANCELLED: the same frame back on the
  rx session once the event is applied. For a skipped run of garbage, a truncated frame or a
  frame of a type the card does not run: REJECTED with reason PROTOCOL, order_id and account_id 0
  (order_id and account_id of the frame when its type is known and it is whole), seq 0 for
  garbage. Frames leave in the order their events entered.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

CARD_MAGIC = 0x52475743  # "RGWC"
SESSION_W = 16  # tuser width of both TOE streams
TS_RING = 256  # records in the timestamp ring
HEARTBEAT_SHIFT = 10  # HEARTBEAT counts once every 2**HEARTBEAT_SHIFT cycles


class BlockType(enum.IntEnum):
    ID = 0x0001
    CONTROL = 0x0002
    COUNTERS = 0x0003
    DOE = 0x0004
    TIMESTAMPS = 0x0005


@dataclass(frozen=True)
class Reg:
    name: str
    offset: int  # byte offset in its block
    access: str  # "r", "w", "rw", "w1c"
    doc: str
    count: int = 1  # consecutive 32-bit registers (an array, or a 64-bit pair when 2)


@dataclass(frozen=True)
class Block:
    type: BlockType
    version: int
    base: int
    regs: tuple[Reg, ...]
    doc: str

    def reg(self, name: str) -> Reg:
        for r in self.regs:
            if r.name == name:
                return r
        raise KeyError(f"block {self.type.name} has no register {name}")

    def addr(self, name: str, index: int = 0) -> int:
        r = self.reg(name)
        if not 0 <= index < r.count:
            raise IndexError(f"{self.type.name}.{name}[{index}]: it has {r.count} words")
        return self.base + r.offset + 4 * index


_HEAD = (
    Reg("TYPE_VERSION", 0x00, "r", "type[31:16], version[15:0]"),
    Reg("NEXT", 0x04, "r", "byte address of the next block, 0 after the last"),
)


class Status(enum.IntFlag):
    DOE_BUSY = 1 << 0  # the DOE is clearing its tables after a reset
    INDEX_FULL = 1 << 1  # sticky: a hash bucket was full on an insert (the row is lost: a card fault)
    TABLE_FULL = 1 << 2  # sticky: a table had no free row on an insert (a card fault)
    PROTOCOL_ERROR = 1 << 3  # sticky: a malformed frame was rejected since the last clear
    RX_ENABLED = 1 << 4  # CONTROL.ENABLE is set and the DOE is ready


class Control(enum.IntFlag):
    ENABLE = 1 << 0  # take rx frames (frames wait, back-pressured, while clear)
    RESET = 1 << 1  # self-clearing: reset the DOE (clears tables, program, constants) and counters
    CLEAR_COUNTERS = 1 << 2  # self-clearing


class Counter(enum.IntEnum):
    """Per-flow counters, 64 bits each, in COUNTERS.FLOW; per-rule failure counts follow in RULE."""

    RX_FRAMES = 0
    NEW = 1
    FILL = 2
    REJECT = 3
    CANCEL = 4
    ACCEPTED = 5
    REJECTED = 6
    PROTOCOL_ERRORS = 7
    TX_FRAMES = 8


class DoeCmd(enum.IntEnum):
    WRITE = 1  # write DATA to the DOE load port at ADDR
    READ = 2  # read the DOE load port at ADDR into RDATA
    LOAD_ROW = 3  # insert ROW_WORDS / ROW_NULLS as a row of table ROW_TABLE (a LOAD event)


MAX_RULES = 256  # rule counters the map reserves (RULES <= this)
ROW_WORDS = 16  # words of a LOAD_ROW (the DOE's IN_WORDS)

ID_BLOCK = Block(
    BlockType.ID,
    1,
    0x0000,
    (
        *_HEAD,
        Reg("MAGIC", 0x08, "r", "0x52475743 (RGWC)"),
        Reg("ABI_VERSION", 0x0C, "r", "program image ABI the DOE runs (riskgw/doe/isa.py ABI_VERSION)"),
        Reg("GIT_HASH", 0x10, "r", "the build's git commit, 160 bits, word 0 = most significant", 5),
        Reg("DATA_W", 0x24, "r", "TOE stream width in bits"),
        Reg("LANES", 0x28, "r", "ALU lanes"),
        Reg("TABLES", 0x2C, "r", "tables"),
        Reg("COLS", 0x30, "r", "columns per table"),
        Reg("ROWS_LOG2", 0x34, "r", "log2 of rows per table"),
        Reg("RULES", 0x38, "r", "rules (failed-mask width)"),
        Reg("REGS", 0x3C, "r", "registers"),
        Reg("PROG_ROWS", 0x40, "r", "program memory bundles"),
        Reg("CLOCK_MHZ", 0x44, "r", "the clock the build is timed for"),
        Reg("KEY_WORDS", 0x48, "r", "key words of LOOKUP / ALLOC / SCAN"),
        Reg("WAYS", 0x4C, "r", "slots per hash bucket"),
        Reg("SCANS", 0x50, "r", "scan specs"),
        Reg("IN_WORDS", 0x54, "r", "input words of an event (a LOAD row has at most this many)"),
    ),
    "Who the card is: compared with the program image and the manifest before anything is loaded.",
)

CONTROL_BLOCK = Block(
    BlockType.CONTROL,
    1,
    0x0100,
    (
        *_HEAD,
        Reg("CONTROL", 0x08, "rw", "Control bits"),
        Reg("STATUS", 0x0C, "w1c", "Status bits; write 1 to clear a sticky bit"),
        Reg("EXCH_SESSION", 0x10, "rw", "session id of the exchange connection (accepted orders go there)"),
        Reg("HEARTBEAT", 0x14, "r", "counts once every 2**HEARTBEAT_SHIFT cycles: the fabric is alive"),
        Reg("CYCLES", 0x18, "r", "free-running cycle counter (64 bits)", 2),
    ),
    "Enable, reset, status and liveness.",
)

COUNTERS_BLOCK = Block(
    BlockType.COUNTERS,
    1,
    0x0200,
    (
        *_HEAD,
        Reg("N_FLOW", 0x08, "r", "number of per-flow counters"),
        Reg("N_RULE", 0x0C, "r", "number of per-rule counters (RULES)"),
        Reg("FLOW", 0x10, "r", "per-flow counters, 64 bits each, in Counter order", 2 * len(Counter)),
        Reg("RULE", 0x100, "r", "failures per rule id, 64 bits each", 2 * MAX_RULES),
    ),
    "Counters since the last reset or CLEAR_COUNTERS.",
)

DOE_BLOCK = Block(
    BlockType.DOE,
    1,
    0x1000,
    (
        *_HEAD,
        Reg("ADDR", 0x08, "rw", "DOE load-port address (hdl/rgw_doe.sv: region[31:28], index[27:0])"),
        Reg("DATA", 0x0C, "rw", "64-bit value a WRITE writes", 2),
        Reg("CMD", 0x14, "w", "DoeCmd: starts the command; CMD_DONE counts it when it completes"),
        Reg("CMD_DONE", 0x18, "r", "commands completed since reset"),
        Reg("RDATA", 0x1C, "r", "64-bit value the last READ returned", 2),
        Reg("ROW_TABLE", 0x24, "rw", "table id of a LOAD_ROW"),
        Reg("ROW_NULLS", 0x28, "rw", "bit i: row word i is NULL"),
        Reg("ROW_WORDS", 0x40, "rw", "the row's words, 64 bits each", 2 * ROW_WORDS),
    ),
    "The DOE's load port: program, constants, table configuration, row loads and cell read-back."
    " Commands run only between events; a command waits for the event in flight.",
)

TS_BLOCK = Block(
    BlockType.TIMESTAMPS,
    1,
    0x2000,
    (
        *_HEAD,
        Reg("WRITTEN", 0x08, "r", "records written since reset (the ring holds the last TS_RING)"),
        Reg("SIZE", 0x0C, "r", "TS_RING"),
        Reg(
            "RING",
            0x100,
            "r",
            "record i at RING + 16*(i mod TS_RING): rx seq, session, rx cycle[31:0], tx cycle[31:0]",
            4 * TS_RING,
        ),
    ),
    "Cycle stamps taken in the fabric for every order: first rx beat of its frame and first tx beat"
    " of its decision frame, so latency is measured in hardware.",
)

BLOCKS: tuple[Block, ...] = (ID_BLOCK, CONTROL_BLOCK, COUNTERS_BLOCK, DOE_BLOCK, TS_BLOCK)
ADDR_W = 16  # AXI-Lite address bits
