"""C source for the native executor: each section of a program image as a straight-line function.

The generated C mirrors `interp` bundle by bundle: a register is a `V` (an int64 value and a NULL
flag), every ALU opcode is a small inline function written against riskgw/engine/alu.py (overflow
by `__builtin_*_overflow`), and a bundle's results are computed into temporaries and bound to their
registers only at its end, with its table writes after that (isa.py's bundle rule). The C compiler
folds constants and drops dead NULL tests, so the generator stays simple.

Tables are `Tab` records (see riskgw/engine/native.py): columns of words and NULL bytes, and a key
index of open addressing over row numbers. C never allocates memory: an entry point first checks
that every table it may append to has room for the ALLOCs of its sections (straight-line code runs
each at most once) and returns FULL, having changed nothing, when one has not.
"""

from __future__ import annotations

from collections.abc import Sequence

from riskgw.doe.image import Bundle, Image
from riskgw.doe.isa import INT64_MIN, REG_CONST_BASE, Event, Op
from riskgw.engine.table import EngineError, Value

# Status codes of the C entry points (keep in step with _PRELUDE).
OK, FULL, DUP, BAD_ROW, BAD_EVENT, PY_ERROR = 0, 1, 2, 3, 4, 5

_PRELUDE = r"""
#include <stdint.h>
#include <string.h>

enum { OK = 0, FULL = 1, DUP = 2, BAD_ROW = 3, BAD_EVENT = 4, PY_ERROR = 5 };

/* One table: rows, capacity, the key index (row + 1 per slot, 0 empty) and the columns. */
typedef struct {
    int64_t n_rows, cap, imask;
    int64_t *slots;
    int64_t **w;
    uint8_t **z;
} Tab;

/* A register: its value and NULL flag (the value means nothing when n is set). */
typedef struct { int64_t v; int64_t n; } V;

static const V NUL = {0, 1};
static inline V val(int64_t v) { V r = {v, 0}; return r; }
static inline V boolean(int c) { V r = {c ? 1 : 0, 0}; return r; }
static inline int truthy(V a) { return !a.n && a.v != 0; }
static inline int falsy(V a) { return !a.n && a.v == 0; }

static inline V op_mov(V a) { return a; }
static inline V op_add(V a, V b) {
    V r = NUL;
    if (!a.n && !b.n && !__builtin_add_overflow(a.v, b.v, &r.v)) r.n = 0;
    return r;
}
static inline V op_sub(V a, V b) {
    V r = NUL;
    if (!a.n && !b.n && !__builtin_sub_overflow(a.v, b.v, &r.v)) r.n = 0;
    return r;
}
static inline V op_mul(V a, V b) {
    V r = NUL;
    if (!a.n && !b.n && !__builtin_mul_overflow(a.v, b.v, &r.v)) r.n = 0;
    return r;
}
static inline V op_div(V a, V b) {
    if (a.n || b.n || b.v == 0 || (a.v == INT64_MIN && b.v == -1)) return NUL;
    return val(a.v / b.v); /* C division truncates toward zero */
}
static inline V op_mod(V a, V b) {
    if (a.n || b.n || b.v == 0) return NUL;
    if (b.v == -1) return val(0);
    return val(a.v % b.v); /* a - b * (a / b): the sign of a */
}
static inline V op_neg(V a) { return (a.n || a.v == INT64_MIN) ? NUL : val(-a.v); }
static inline V op_abs(V a) { return (a.n || a.v == INT64_MIN) ? NUL : val(a.v < 0 ? -a.v : a.v); }
static inline V op_eq(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v == b.v); }
static inline V op_ne(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v != b.v); }
static inline V op_lt(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v < b.v); }
static inline V op_le(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v <= b.v); }
static inline V op_gt(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v > b.v); }
static inline V op_ge(V a, V b) { return (a.n || b.n) ? NUL : boolean(a.v >= b.v); }
static inline V op_and(V a, V b) {
    if (falsy(a) || falsy(b)) return val(0);
    return (a.n || b.n) ? NUL : val(1);
}
static inline V op_or(V a, V b) {
    if (truthy(a) || truthy(b)) return val(1);
    return (a.n || b.n) ? NUL : val(0);
}
static inline V op_not(V a) { return a.n ? NUL : boolean(a.v == 0); }
static inline V op_isnull(V a) { return boolean(a.n != 0); }
static inline V op_notnull(V a) { return boolean(a.n == 0); }
static inline V op_sel(V a, V b, V c) { return truthy(c) ? a : b; }
static inline V op_coalesce(V a, V b) { return a.n ? b : a; }
static inline V op_range32(V a) {
    return (!a.n && a.v >= INT32_MIN && a.v <= INT32_MAX) ? a : NUL;
}

static inline uint64_t mix(uint64_t h, int64_t w) {
    h = (h ^ (uint64_t)w) * 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 29);
}
static inline uint64_t finish(uint64_t h) {
    h ^= h >> 32;
    h *= 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 32);
}
#define SEED 0x243F6A8885A308D3ULL

/* The row whose key words equal k[0..nk), or -1. Key words are never NULL here. */
static inline int64_t find(const Tab *t, int nk, const int *kc, const int64_t *k) {
    uint64_t h = SEED;
    for (int i = 0; i < nk; i++) h = mix(h, k[i]);
    for (uint64_t s = finish(h) & (uint64_t)t->imask;; s = (s + 1) & (uint64_t)t->imask) {
        int64_t e = t->slots[s];
        if (e == 0) return -1;
        int same = 1;
        for (int i = 0; i < nk; i++) same &= t->w[kc[i]][e - 1] == k[i];
        if (same) return e - 1;
    }
}

static inline void index_row(Tab *t, int nk, const int *kc, int64_t row) {
    uint64_t h = SEED;
    for (int i = 0; i < nk; i++) h = mix(h, t->w[kc[i]][row]);
    uint64_t s = finish(h) & (uint64_t)t->imask;
    while (t->slots[s] != 0) s = (s + 1) & (uint64_t)t->imask;
    t->slots[s] = row + 1;
}

/* Append a row with every cell NULL; the caller has checked the capacity. */
static inline int64_t append(Tab *t, int n_cols) {
    int64_t row = t->n_rows++;
    for (int c = 0; c < n_cols; c++) { t->w[c][row] = 0; t->z[c][row] = 1; }
    return row;
}

/* ALLOC: a new row with key k (NULL words stay NULL, and such a row is never indexed). */
static inline V alloc_row(Tab *t, int n_cols, int nk, const int *kc, const V *k) {
    int64_t kw[8];
    int has_null = 0;
    for (int i = 0; i < nk; i++) { kw[i] = k[i].v; has_null |= (int)k[i].n; }
    if (nk && !has_null && find(t, nk, kc, kw) >= 0) return NUL;
    int64_t row = append(t, n_cols);
    for (int i = 0; i < nk; i++)
        if (!k[i].n) { t->w[kc[i]][row] = k[i].v; t->z[kc[i]][row] = 0; }
    if (nk && !has_null) index_row(t, nk, kc, row);
    return val(row);
}

static inline V lookup(const Tab *t, int nk, const int *kc, const V *k) {
    int64_t kw[8];
    for (int i = 0; i < nk; i++) { if (k[i].n) return NUL; kw[i] = k[i].v; }
    int64_t row = find(t, nk, kc, kw);
    return row < 0 ? NUL : val(row);
}

static inline V read_cell(const Tab *t, int col, V h, int *st) {
    if (h.n) return NUL;
    if (h.v < 0 || h.v >= t->n_rows) { *st = BAD_ROW; return NUL; }
    return t->z[col][h.v] ? NUL : val(t->w[col][h.v]);
}

static inline void write_cell(Tab *t, int col, V h, V x, int *st) {
    if (h.v < 0 || h.v >= t->n_rows) { *st = BAD_ROW; return; }
    t->w[col][h.v] = x.n ? 0 : x.v;
    t->z[col][h.v] = x.n ? 1 : 0;
}

/* SCAN: the best row among those whose match columns equal k; ties to the lowest address.
   mode: 0 MIN, 1 MAX, 2 FIRST_ASC (a NULL order value first), 3 FIRST_DESC (NULLs last). */
static V scan(const Tab *t, int nm, const int *mc, const V *k, int oc, int mode) {
    for (int i = 0; i < nm; i++) if (k[i].n) return NUL;
    int64_t best = -1, first = -1, best_v = 0;
    for (int64_t r = 0; r < t->n_rows; r++) {
        int hit = 1;
        for (int i = 0; i < nm && hit; i++) hit = !t->z[mc[i]][r] && t->w[mc[i]][r] == k[i].v;
        if (!hit) continue;
        if (t->z[oc][r]) {
            if (mode == 2) return val(r);
            if (first < 0) first = r;
            continue;
        }
        if (first < 0) first = r;
        int64_t v = t->w[oc][r];
        int better = best < 0 || ((mode == 0 || mode == 2) ? v < best_v : v > best_v);
        if (better) { best = r; best_v = v; }
    }
    if (best >= 0) return val(best);
    return (mode == 3 && first >= 0) ? val(first) : NUL;
}

/* Rebuild a table's key index from its rows (after Python grew or replaced the arrays). */
void rgw_reindex(Tab *t, int nk, const int *kc) {
    memset(t->slots, 0, (size_t)(t->imask + 1) * sizeof(int64_t));
    for (int64_t r = 0; r < t->n_rows; r++) {
        int has_null = 0;
        for (int i = 0; i < nk; i++) has_null |= t->z[kc[i]][r];
        if (!has_null) index_row(t, nk, kc, r);
    }
}

static inline V in_reg(const int64_t *iv, const uint8_t *in, int r) {
    V x = {iv[r], in[r]};
    return x;
}

/* The CPython functions the entry points use to read events: stable-ABI functions, declared here
   so that building needs no Python headers. The library is loaded with ctypes.PyDLL: the GIL is
   held and a Python error set here is raised when the call returns. */
typedef struct _object PyObject;
extern PyObject _Py_NoneStruct;
extern PyObject *PyExc_ValueError;
extern PyObject *PySequence_GetItem(PyObject *, intptr_t);
extern intptr_t PySequence_Size(PyObject *);
extern long long PyLong_AsLongLong(PyObject *);
extern PyObject *PyErr_Occurred(void);
extern void PyErr_SetString(PyObject *, const char *);
extern void Py_DecRef(PyObject *);

/* n words (int or None) of a Python sequence into values and NULL flags; -1 with an error set. */
static int py_words(PyObject *seq, int n, int64_t *iv, uint8_t *in) {
    intptr_t size = PySequence_Size(seq);
    if (size != n) {
        if (size >= 0) PyErr_SetString(PyExc_ValueError, "wrong number of input words");
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *o = PySequence_GetItem(seq, i);
        if (!o) return -1;
        if (o == &_Py_NoneStruct) {
            iv[i] = 0;
            in[i] = 1;
        } else {
            long long v = PyLong_AsLongLong(o);
            if (v == -1 && PyErr_Occurred()) { Py_DecRef(o); return -1; }
            iv[i] = v;
            in[i] = 0;
        }
        Py_DecRef(o);
    }
    return 0;
}

/* An (event, inputs) pair (a new reference, released here); -1 with an error set. */
static int py_event(PyObject *pair, int *ev, int n, int64_t *iv, uint8_t *in) {
    if (!pair) return -1;
    PyObject *e = PySequence_GetItem(pair, 0);
    PyObject *inputs = e ? PySequence_GetItem(pair, 1) : 0;
    Py_DecRef(pair);
    if (!inputs) { if (e) Py_DecRef(e); return -1; }
    long long code = PyLong_AsLongLong(e);
    Py_DecRef(e);
    int bad = (code == -1 && PyErr_Occurred()) || py_words(inputs, n, iv, in);
    Py_DecRef(inputs);
    *ev = (int)code;
    return bad ? -1 : 0;
}
"""

_BINARY = {
    Op.ADD: "op_add",
    Op.SUB: "op_sub",
    Op.MUL: "op_mul",
    Op.DIV: "op_div",
    Op.MOD: "op_mod",
    Op.EQ: "op_eq",
    Op.NE: "op_ne",
    Op.LT: "op_lt",
    Op.LE: "op_le",
    Op.GT: "op_gt",
    Op.GE: "op_ge",
    Op.AND: "op_and",
    Op.OR: "op_or",
    Op.COALESCE: "op_coalesce",
}
_UNARY = {
    Op.MOV: "op_mov",
    Op.NEG: "op_neg",
    Op.ABS: "op_abs",
    Op.NOT: "op_not",
    Op.ISNULL: "op_isnull",
    Op.NOTNULL: "op_notnull",
    Op.RANGE32: "op_range32",
}
# Event codes the C entry point takes (its `switch`).
_EVENT_SECTIONS = (Event.FILL, Event.REJECT, Event.CANCEL)


def _c_int(value: int) -> str:
    # INT64_MIN has no literal in C: its magnitude overflows int64 before the minus applies.
    return "INT64_MIN" if value == INT64_MIN else f"INT64_C({value})"


def _c_value(value: Value) -> str:
    return "NUL" if value is None else f"val({_c_int(value)})"


class _Source:
    """Builds the C source of an image: one function per section, then the entry points."""

    def __init__(self, image: Image) -> None:
        self.image = image
        self.pos = {t.id: i for i, t in enumerate(image.tables)}
        self.tables = {t.id: t for t in image.tables}
        self.scans = {s.id: s for s in image.scans}
        self.rule_bit = {r.id: i for i, r in enumerate(image.rules)}
        self.mask_words = max(1, (len(image.rules) + 63) // 64)
        self.lines: list[str] = [_PRELUDE]
        # rows each entry point may append per table: the ALLOCs of its sections (straight-line code)
        self.reserve: dict[int, int] = {t.id: 0 for t in image.tables}

    def emit(self, text: str = "", depth: int = 0) -> None:
        self.lines.append("    " * depth + text)

    def key_cols(self, name: str, cols: Sequence[int]) -> str:
        """A static array of column numbers (a key or scan's match columns); returns its name."""
        self.emit(f"static const int {name}[] = {{{', '.join(str(c) for c in cols) or '0'}}};")
        return name

    def allocs(self, sections: Sequence[tuple[Event, int]]) -> dict[int, int]:
        counts: dict[int, int] = {}
        for event, arg in sections:
            for bundle in self.image.section(event, arg):
                for insn in bundle:
                    if insn.op is Op.ALLOC:
                        counts[insn.table] = counts.get(insn.table, 0) + 1
        for table, n in counts.items():
            self.reserve[table] = max(self.reserve[table], n)
        return counts

    def capacity_check(self, counts: dict[int, int], depth: int) -> None:
        for table, n in sorted(counts.items()):
            p = self.pos[table]
            self.emit(f"if (T[{p}].n_rows + {n} > T[{p}].cap) return FULL;", depth)

    # ------------------------------------------------------------------ sections

    def section(self, name: str, event: Event, arg: int, n_inputs: int) -> None:
        """`static int name(Tab *T, iv, in, mask)`: runs one section; returns a status."""
        bundles = self.image.section(event, arg)
        used = sorted({r for b in bundles for i in b for r in (*i.srcs, i.pred, i.dst)})
        self.emit(f"static int {name}(Tab *T, const int64_t *iv, const uint8_t *in, uint64_t *mask) {{")
        self.emit("(void)T; (void)iv; (void)in; (void)mask;", 1)
        self.emit("int st = OK;", 1)
        consts = self.image.consts
        for r in used:
            if r < n_inputs:
                init = f"in_reg(iv, in, {r})"
            elif REG_CONST_BASE <= r < REG_CONST_BASE + len(consts):
                init = _c_value(consts[r - REG_CONST_BASE])
            else:
                init = "NUL"
            self.emit(f"V r{r} = {init};", 1)
        for b, bundle in enumerate(bundles):
            self.emit(f"{{ /* bundle {b} */", 1)
            self.bundle(bundle)
            self.emit("}", 1)
        self.emit("return st;", 1)
        self.emit("}")
        self.emit()

    def bundle(self, bundle: Bundle) -> None:
        # Everything reads the registers and tables as they were; results bind at the end.
        d = 2
        binds: list[str] = []
        effects: list[str] = []
        for k, insn in enumerate(bundle):
            op = insn.op
            t = f"t{k}"
            r = [f"r{s}" for s in insn.srcs]
            if op is Op.NOP:
                continue
            if op in _UNARY:
                self.emit(f"V {t} = {_UNARY[op]}({r[0]});", d)
            elif op in _BINARY:
                self.emit(f"V {t} = {_BINARY[op]}({r[0]}, {r[1]});", d)
            elif op is Op.SEL:
                self.emit(f"V {t} = op_sel({r[0]}, {r[1]}, {r[2]});", d)
            elif op is Op.RULE:
                bit = self.rule_bit[insn.imm]
                self.emit(
                    f"if (truthy({r[0]}) && !truthy({r[1]})) mask[{bit // 64}] |= UINT64_C(1) << {bit % 64};",
                    d,
                )
                continue
            elif op is Op.LOOKUP:
                kc = self.tables[insn.table].key
                self.emit(f"const V k{k}[] = {{{', '.join(r)}}};", d)
                self.emit(f"static const int c{k}[] = {{{', '.join(map(str, kc))}}};", d)
                self.emit(f"V {t} = lookup(&T[{self.pos[insn.table]}], {len(kc)}, c{k}, k{k});", d)
            elif op is Op.READ:
                self.emit(f"V {t} = read_cell(&T[{self.pos[insn.table]}], {insn.imm}, {r[0]}, &st);", d)
            elif op is Op.SCAN:
                spec = self.scans[insn.table]
                self.emit(f"const V k{k}[] = {{{', '.join(r)}}};", d)
                self.emit(f"static const int c{k}[] = {{{', '.join(map(str, spec.match))}}};", d)
                self.emit(
                    f"V {t} = scan(&T[{self.pos[spec.table]}], {len(spec.match)}, c{k}, k{k}, "
                    f"{spec.order}, {int(spec.mode)});",
                    d,
                )
            elif op is Op.ALLOC:
                # Operands as they were before the bundle; the row is appended after its results bind.
                cfg = self.tables[insn.table]
                self.emit(f"const int p{k} = truthy(r{insn.pred});", d)
                self.emit(f"const V k{k}[] = {{{', '.join(r) or 'NUL'}}};", d)
                self.emit(f"static const int c{k}[] = {{{', '.join(map(str, cfg.key)) or '0'}}};", d)
                effects.append(
                    f"r{insn.dst} = p{k} ? alloc_row(&T[{self.pos[insn.table]}], {len(cfg.columns)}, "
                    f"{len(cfg.key)}, c{k}, k{k}) : NUL;"
                )
                continue
            elif op is Op.WRITE:
                self.emit(f"const int p{k} = truthy(r{insn.pred}) && !{r[0]}.n;", d)
                self.emit(f"const V h{k} = {r[0]}, x{k} = {r[1]};", d)
                effects.append(
                    f"if (p{k}) write_cell(&T[{self.pos[insn.table]}], {insn.imm}, h{k}, x{k}, &st);"
                )
                continue
            else:
                raise EngineError(f"the native backend cannot run {op.name}")
            binds.append(f"r{insn.dst} = {t};")
        for line in binds + effects:
            self.emit(line, d)
        if any(i.op in (Op.READ, Op.WRITE) for i in bundle):
            self.emit("if (st) return st;", d)

    # ------------------------------------------------------------------ entry points

    def build(self, n_event_inputs: int) -> str:
        self.section("sec_new", Event.NEW, 0, n_event_inputs)
        self.section("sec_accept", Event.ACCEPT, 0, n_event_inputs)
        for e in _EVENT_SECTIONS:
            self.section(f"sec_{e.name.lower()}", e, 0, n_event_inputs)
        for t in self.image.tables:
            self.section(f"sec_load_{t.id}", Event.LOAD, t.id, len(t.columns))

        w = self.mask_words
        self.emit("/* One event: mask gets the failed rules' bits (NEW only); returns a status. */")
        self.emit("int rgw_event(Tab *T, int ev, const int64_t *iv, const uint8_t *in, uint64_t *mask) {")
        self.emit(f"memset(mask, 0, {w} * sizeof(uint64_t));", 1)
        self.emit("switch (ev) {", 1)
        self.emit(f"case {int(Event.NEW)}: {{", 1)
        self.capacity_check(self.allocs([(Event.ACCEPT, 0)]), 2)
        self.emit("int st = sec_new(T, iv, in, mask);", 2)
        self.emit("if (st) return st;", 2)
        any_failed = " | ".join(f"mask[{i}]" for i in range(w))
        self.emit(f"if ({any_failed}) return OK;", 2)
        self.emit("return sec_accept(T, iv, in, mask);", 2)
        self.emit("}", 1)
        for e in _EVENT_SECTIONS:
            self.emit(f"case {int(e)}: {{", 1)
            self.capacity_check(self.allocs([(e, 0)]), 2)
            self.emit(f"return sec_{e.name.lower()}(T, iv, in, mask);", 2)
            self.emit("}", 1)
        self.emit("default: return BAD_EVENT;", 1)
        self.emit("}", 1)
        self.emit("}")
        self.emit()

        self.emit("/* Many events: stops at the first that does not return OK; returns how many did. */")
        self.emit(
            "int64_t rgw_py_batch(Tab *T, PyObject *events, int64_t start, int64_t n, "
            "uint64_t *masks, int *status) {"
        )
        self.emit(f"int64_t iv[{n_event_inputs}]; uint8_t in[{n_event_inputs}];", 1)
        self.emit("for (int64_t i = start; i < n; i++) {", 1)
        self.emit("int ev;", 2)
        self.emit(f"if (py_event(PySequence_GetItem(events, i), &ev, {n_event_inputs}, iv, in)) {{", 2)
        self.emit("*status = PY_ERROR; return i;", 3)
        self.emit("}", 2)
        self.emit(f"int st = rgw_event(T, ev, iv, in, masks + i * {w});", 2)
        self.emit("if (st) { *status = st; return i; }", 2)
        self.emit("}", 1)
        self.emit("*status = OK;", 1)
        self.emit("return n;", 1)
        self.emit("}")
        self.emit()
        self.emit("/* One event from Python: (event, inputs). */")
        self.emit("int rgw_py_event(Tab *T, int ev, PyObject *inputs, uint64_t *mask) {")
        self.emit(f"int64_t iv[{n_event_inputs}]; uint8_t in[{n_event_inputs}];", 1)
        self.emit(f"if (py_words(inputs, {n_event_inputs}, iv, in)) return PY_ERROR;", 1)
        self.emit("return rgw_event(T, ev, iv, in, mask);", 1)
        self.emit("}")
        self.emit()

        self.emit("/* One data row: DUP (nothing done) when its key is already there. */")
        self.emit("int rgw_py_load(Tab *T, int table, PyObject *words, int n) {")
        self.emit("uint64_t mask[1];", 1)
        self.emit("int64_t iv[n > 0 ? n : 1]; uint8_t in[n > 0 ? n : 1];", 1)
        self.emit("if (py_words(words, n, iv, in)) return PY_ERROR;", 1)
        self.emit("switch (table) {", 1)
        for t in self.image.tables:
            p = self.pos[t.id]
            self.emit(f"case {t.id}: {{", 1)
            if t.key:
                words = ", ".join(f"in_reg(iv, in, {c})" for c in t.key)
                self.emit(f"const V k[] = {{{words}}};", 2)
                self.emit(f"static const int c[] = {{{', '.join(map(str, t.key))}}};", 2)
                self.emit(f"if (!lookup(&T[{p}], {len(t.key)}, c, k).n) return DUP;", 2)
            self.capacity_check(self.allocs([(Event.LOAD, t.id)]), 2)
            self.emit(f"return sec_load_{t.id}(T, iv, in, mask);", 2)
            self.emit("}", 1)
        self.emit("default: return BAD_EVENT;", 1)
        self.emit("}", 1)
        self.emit("}")
        return "\n".join(self.lines) + "\n"


def generate(image: Image, n_event_inputs: int) -> tuple[str, dict[int, int], int]:
    """The C source of an image, the rows each table must have free before a call, and mask words."""
    src = _Source(image)
    text = src.build(n_event_inputs)
    return text, dict(src.reserve), src.mask_words
