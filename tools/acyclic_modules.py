"""An import-linter contract: no import cycle between modules, anywhere in the given packages.

import-linter's own ``acyclic_siblings`` judges packages as wholes, which is too strict where a
package is both the process on top and the small utilities below (``bot``), and says nothing
about a cycle that crosses packages (``bot.config`` → ``scheduler.settings`` → … →
``bot.config``). This contract looks at single modules and names every cycle it finds.
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output


def strongly_connected(graph: grimp.ImportGraph, modules: set[str]) -> list[list[str]]:
    """Tarjan's algorithm over ``modules``: each group of two or more modules importing one
    another, directly or through the others."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(root: str) -> None:
        # Iterative, so a deep chain cannot hit the recursion limit.
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & modules)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                imported = graph.find_modules_directly_imported_by(child) & modules
                work.append((child, iter(sorted(imported))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(modules):
        if module not in index:
            visit(module)
    return groups


class AcyclicModulesContract(Contract):
    """``type = acyclic_modules``; ``packages``: the top-level packages to check."""

    type_name = "acyclic_modules"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        modules: set[str] = set()
        for package in self.packages:  # type: ignore[attr-defined]
            modules |= {package} | graph.find_descendants(package)
        cycles = []
        for group in strongly_connected(graph, modules):
            first = group[0]
            back = [
                graph.find_shortest_chain(importer=m, imported=first) or ()
                for m in graph.find_modules_that_directly_import(first) & set(group)
            ]
            cycles.append({"modules": group, "chain": [*min(back, key=len), first]})
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error(f"{len(cycle['modules'])} modules import one another:")
            output.print_error("    " + " -> ".join(cycle["chain"]))
            output.new_line()
