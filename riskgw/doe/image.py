"""The program image: the binary contract that every executor runs.

Layout (all integers little-endian)::

    offset  size  field
    0       4     magic "RGWP"
    4       2     ABI version
    6       2     flags (0)
    8       4     total length in bytes
    12      2     number of sections
    14      2     lanes: the most instructions in one bundle
    16      2     registers used (inputs, constants and temporaries)
    18      2     number of rules
    20      12    reserved (0)
    32      32    SHA-256 of the sources (their hashes in order, see SOURCES)
    64      12*n  section directory: kind u16, arg u16, offset u32, length u32
    ...           sections, each 8-byte aligned

Sections:

- STRINGS: NUL-terminated UTF-8 strings; other sections refer to them by byte offset.
- TABLES: u16 count, then per table: u16 id, u16 flags, u32 name, u16 physical columns,
  u16 key words, then per physical column (16 bytes): u32 name, u16 logical column, u8 word,
  u8 type (ColType), u8 nullable, u8 char size, u16 reserved, u32 reserved; then u16 physical
  column per key word (padded to 4 bytes).
- CONSTS: u32 count, then per constant (16 bytes): i64 value, u8 is-NULL, 7 bytes reserved.
- RULES: u16 count, u16 reserved, then per rule (16 bytes): u16 id, u16 reason, u32 name,
  u16 source index, u16 column, u32 line.
- SCANS: u16 count, u16 reserved, then per spec (20 bytes): u16 id, u16 table, u8 mode, u8 match
  words, u16 order column, u16 match columns[6].
- SOURCES: u16 count, u16 reserved, then per source (36 bytes): u32 path, 32-byte SHA-256.
- CODE (arg = Event, or Event.LOAD | table id << 8): 16-byte instruction words.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

from riskgw.doe.isa import (
    ABI_VERSION,
    KEYED_OPS,
    MAGIC,
    REG_CONST_BASE,
    TABLE_FLAG_HIDDEN,
    ColType,
    Event,
    Insn,
    Op,
    ScanMode,
    SectionKind,
)

HEADER = struct.Struct("<4sHHIHHHH12s32s")
DIRENT = struct.Struct("<HHII")


class ImageError(ValueError):
    """A program image that cannot be read: wrong magic, ABI, truncated or inconsistent."""


@dataclass(frozen=True)
class PhysColumn:
    name: str  # "col" or "col.w1" for the second word of a CHAR
    logical: int  # index of the logical column in the table
    word: int  # word within the logical column
    type: ColType
    nullable: bool
    char_size: int = 0  # CHAR(n): n, on every word of the column


@dataclass(frozen=True)
class TableConfig:
    id: int
    name: str
    columns: tuple[PhysColumn, ...]
    key: tuple[int, ...]  # physical columns of the unique key, in key order; () for none
    hidden: bool = False

    def logical_names(self) -> list[str]:
        names: list[str] = []
        for c in self.columns:
            if c.word == 0:
                names.append(c.name)
        return names


@dataclass(frozen=True)
class RuleInfo:
    id: int
    name: str
    source: int  # index into Image.sources
    line: int
    col: int
    reason: int = 1


@dataclass(frozen=True)
class ScanSpec:
    id: int
    table: int
    mode: ScanMode
    match: tuple[int, ...]  # physical columns compared with the SCAN's key words
    order: int  # physical column that orders (and for MIN/MAX, is) the result


@dataclass(frozen=True)
class SourceInfo:
    path: str
    sha256: str


Bundle = tuple[Insn, ...]


@dataclass
class Image:
    tables: list[TableConfig]
    consts: list[int | None]  # the constant pool; entry i is register REG_CONST_BASE + i
    rules: list[RuleInfo]
    scans: list[ScanSpec]
    sources: list[SourceInfo]
    code: dict[tuple[Event, int], list[Bundle]]  # (event, table id for LOAD else 0) -> bundles
    lanes: int
    n_regs: int
    abi: int = ABI_VERSION
    source_hash: bytes = field(default=b"\0" * 32)

    def section(self, event: Event, table: int = 0) -> list[Bundle]:
        return self.code.get((event, table), [])

    def table(self, name: str) -> TableConfig:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(name)

    # ------------------------------------------------------------------ encoding

    def encode(self) -> bytes:
        strings = _StringTable()
        sections: list[tuple[SectionKind, int, bytes]] = []

        out = bytearray(struct.pack("<H", len(self.tables)))
        for t in self.tables:
            out += struct.pack(
                "<HHIHH",
                t.id,
                TABLE_FLAG_HIDDEN if t.hidden else 0,
                strings.add(t.name),
                len(t.columns),
                len(t.key),
            )
            for c in t.columns:
                out += struct.pack(
                    "<IHBBBBHI",
                    strings.add(c.name),
                    c.logical,
                    c.word,
                    int(c.type),
                    int(c.nullable),
                    c.char_size,
                    0,
                    0,
                )
            out += struct.pack(f"<{len(t.key)}H", *t.key)
            out += b"\0" * (-len(out) % 4)
        sections.append((SectionKind.TABLES, 0, bytes(out)))

        out = bytearray(struct.pack("<I", len(self.consts)))
        for v in self.consts:
            out += struct.pack("<qB7x", 0 if v is None else v, int(v is None))
        sections.append((SectionKind.CONSTS, 0, bytes(out)))

        out = bytearray(struct.pack("<HH", len(self.rules), 0))
        for r in self.rules:
            out += struct.pack("<HHIHHI", r.id, r.reason, strings.add(r.name), r.source, r.col, r.line)
        sections.append((SectionKind.RULES, 0, bytes(out)))

        out = bytearray(struct.pack("<HH", len(self.scans), 0))
        for s in self.scans:
            match = list(s.match) + [0] * (6 - len(s.match))
            out += struct.pack("<HHBBH6H", s.id, s.table, int(s.mode), len(s.match), s.order, *match)
        sections.append((SectionKind.SCANS, 0, bytes(out)))

        out = bytearray(struct.pack("<HH", len(self.sources), 0))
        for src in self.sources:
            out += struct.pack("<I32s", strings.add(src.path), bytes.fromhex(src.sha256))
        sections.append((SectionKind.SOURCES, 0, bytes(out)))

        for (event, table), bundles in sorted(self.code.items()):
            words = bytearray()
            for bundle in bundles:
                for i, insn in enumerate(bundle):
                    end = i == len(bundle) - 1
                    w = Insn(insn.op, insn.dst, insn.srcs, insn.pred, insn.table, insn.imm, end).encode()
                    words += w.to_bytes(16, "little")
            sections.append((SectionKind.CODE, int(event) | (table << 8), bytes(words)))

        sections.insert(0, (SectionKind.STRINGS, 0, strings.blob()))

        offset = HEADER.size + DIRENT.size * len(sections)
        offset += -offset % 8
        directory = bytearray()
        body = bytearray()
        for kind, arg, data in sections:
            directory += DIRENT.pack(int(kind), arg, offset + len(body), len(data))
            body += data + b"\0" * (-len(data) % 8)
        pad = b"\0" * (-(HEADER.size + len(directory)) % 8)
        total = HEADER.size + len(directory) + len(pad) + len(body)
        header = HEADER.pack(
            MAGIC,
            self.abi,
            0,
            total,
            len(sections),
            self.lanes,
            self.n_regs,
            len(self.rules),
            b"\0" * 12,
            self.source_hash,
        )
        return header + bytes(directory) + pad + bytes(body)

    @staticmethod
    def decode(blob: bytes) -> Image:
        if len(blob) < HEADER.size:
            raise ImageError("not a riskgw program image: too short")
        magic, abi, _flags, total, n_sections, lanes, n_regs, _n_rules, _rsv, src_hash = HEADER.unpack_from(
            blob
        )
        if magic != MAGIC:
            raise ImageError("not a riskgw program image: bad magic")
        if abi != ABI_VERSION:
            raise ImageError(
                f"program image ABI {abi}, this build runs ABI {ABI_VERSION}: recompile the rules"
            )
        if total != len(blob):
            raise ImageError(f"program image truncated: header says {total} bytes, got {len(blob)}")
        try:
            return _decode_sections(blob, n_sections, lanes, n_regs, abi, src_hash)
        except (struct.error, IndexError, ValueError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError(f"corrupt program image: {exc}") from exc

    def digest(self) -> str:
        return hashlib.sha256(self.encode()).hexdigest()


def _decode_sections(
    blob: bytes, n_sections: int, lanes: int, n_regs: int, abi: int, src_hash: bytes
) -> Image:
    raw: dict[tuple[SectionKind, int], bytes] = {}
    for i in range(n_sections):
        kind, arg, off, length = DIRENT.unpack_from(blob, HEADER.size + i * DIRENT.size)
        if off + length > len(blob):
            raise ImageError(f"section {i} runs past the end of the image")
        raw[(SectionKind(kind), arg)] = blob[off : off + length]

    strings = raw.get((SectionKind.STRINGS, 0), b"")

    def string(off: int) -> str:
        end = strings.index(b"\0", off)
        return strings[off:end].decode("utf-8")

    tables: list[TableConfig] = []
    data = raw[(SectionKind.TABLES, 0)]
    (count,) = struct.unpack_from("<H", data)
    pos = 2
    for _ in range(count):
        tid, flags, name, n_cols, n_key = struct.unpack_from("<HHIHH", data, pos)
        pos += 12
        cols = []
        for _ in range(n_cols):
            cname, logical, word, ctype, nullable, char_size, _r1, _r2 = struct.unpack_from(
                "<IHBBBBHI", data, pos
            )
            pos += 16
            cols.append(PhysColumn(string(cname), logical, word, ColType(ctype), bool(nullable), char_size))
        key = struct.unpack_from(f"<{n_key}H", data, pos)
        pos += 2 * n_key
        pos += -pos % 4
        tables.append(
            TableConfig(tid, string(name), tuple(cols), tuple(key), bool(flags & TABLE_FLAG_HIDDEN))
        )

    data = raw[(SectionKind.CONSTS, 0)]
    (count,) = struct.unpack_from("<I", data)
    consts: list[int | None] = []
    for i in range(count):
        value, is_null = struct.unpack_from("<qB7x", data, 4 + 16 * i)
        consts.append(None if is_null else value)

    data = raw[(SectionKind.RULES, 0)]
    (count, _) = struct.unpack_from("<HH", data)
    rules = []
    for i in range(count):
        rid, reason, name, source, col, line = struct.unpack_from("<HHIHHI", data, 4 + 16 * i)
        rules.append(RuleInfo(rid, string(name), source, line, col, reason))

    data = raw[(SectionKind.SCANS, 0)]
    (count, _) = struct.unpack_from("<HH", data)
    scans = []
    for i in range(count):
        sid, table, mode, n_match, order, *match = struct.unpack_from("<HHBBH6H", data, 4 + 20 * i)
        scans.append(ScanSpec(sid, table, ScanMode(mode), tuple(match[:n_match]), order))

    data = raw[(SectionKind.SOURCES, 0)]
    (count, _) = struct.unpack_from("<HH", data)
    sources = []
    for i in range(count):
        path, digest = struct.unpack_from("<I32s", data, 4 + 36 * i)
        sources.append(SourceInfo(string(path), digest.hex()))

    key_words = {t.id: len(t.key) for t in tables}
    scan_words = {s.id: len(s.match) for s in scans}
    code: dict[tuple[Event, int], list[Bundle]] = {}
    for (kind, arg), data in raw.items():
        if kind is not SectionKind.CODE:
            continue
        bundles: list[Bundle] = []
        current: list[Insn] = []
        for off in range(0, len(data), 16):
            insn = Insn.decode(int.from_bytes(data[off : off + 16], "little"))
            if insn.op in KEYED_OPS:
                n = scan_words[insn.table] if insn.op is Op.SCAN else key_words[insn.table]
                insn = Insn(insn.op, insn.dst, insn.srcs[:n], insn.pred, insn.table, insn.imm, insn.end)
            current.append(insn)
            if insn.end:
                bundles.append(tuple(current))
                current = []
        if current:
            raise ImageError(f"code section {arg:#x} ends inside a bundle")
        code[(Event(arg & 0xFF), arg >> 8)] = bundles

    return Image(tables, consts, rules, scans, sources, code, lanes, n_regs, abi, src_hash)


class _StringTable:
    def __init__(self) -> None:
        self._blob = bytearray()
        self._index: dict[str, int] = {}

    def add(self, s: str) -> int:
        if s not in self._index:
            self._index[s] = len(self._blob)
            self._blob += s.encode("utf-8") + b"\0"
        return self._index[s]

    def blob(self) -> bytes:
        return bytes(self._blob)


def const_reg(index: int) -> int:
    return REG_CONST_BASE + index
