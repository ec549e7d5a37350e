"""Common sub-expression elimination across rules, triggers and statements.

The IR is hash-consed, so equal nodes are shared as they are built. This pass rebuilds every
section into a fresh graph: nodes that became equal after folding merge, and nodes no section
needs any more are dropped. The same lookup in 128 rules is one node, so one LOOKUP.
"""

from __future__ import annotations

from riskgw.ir.nodes import Graph, IRProgram, copy_node, rebuild, remap_section


def eliminate_common(prog: IRProgram) -> IRProgram:
    graph = Graph()
    mapping = rebuild(graph, prog.roots(), copy_node)
    prog.sections = {k: remap_section(s, mapping) for k, s in prog.sections.items()}
    prog.graph = graph
    return prog
