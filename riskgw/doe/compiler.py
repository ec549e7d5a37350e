"""The compiler driver: rule files -> checked AST -> IR -> passes -> program image."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from riskgw.doe.codegen import generate
from riskgw.doe.image import Image
from riskgw.ir.lower import lower
from riskgw.ir.nodes import IRProgram
from riskgw.ir.passes.cse import eliminate_common
from riskgw.ir.passes.fold import fold_constants
from riskgw.ir.passes.incremental import incremental_aggregates
from riskgw.lang import ast
from riskgw.lang.frontend import deep_recursion, parse_files

# The passes, in order; each is a pure IRProgram -> IRProgram function in its own module.
PASSES: tuple[Callable[[IRProgram], IRProgram], ...] = (
    incremental_aggregates,
    fold_constants,
    eliminate_common,
)


@dataclass
class CompileResult:
    program: ast.Program
    ir: IRProgram
    image: Image
    warnings: list[ast.Diagnostic]


def compile_program(program: ast.Program, lanes: int = 8) -> CompileResult:
    try:
        with deep_recursion():
            ir = lower(program)
            for p in PASSES:
                ir = p(ir)
    except RecursionError:
        raise ast.CompileError(
            ast.Diagnostic(
                ast.Severity.ERROR,
                "the rules are too deeply nested to compile; split long expressions into several rules",
                None,
            )
        ) from None
    digest = hashlib.sha256()
    for src in program.sources:
        digest.update(bytes.fromhex(src.sha256))
    image = generate(ir, lanes, digest.digest())
    return CompileResult(program, ir, image, list(ir.warnings))


def compile_files(paths: Sequence[Path], lanes: int = 8) -> CompileResult:
    return compile_program(parse_files(paths), lanes)
