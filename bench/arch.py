"""The shape of the code, measured: import circles, arrows pointing up, modules outside
carepath/pathways/ that import a shipped pathway, modules outside db/ that build SQL, and product
functions over 60 lines.

    .venv/bin/python bench/arch.py [ROOT]      # ROOT: a checkout (default: this one)

Every ``import`` counts, also those inside functions (a lazy import hides a circle, it does not
remove it). Layers, lowest first; an import from a lower layer into a higher one points up:

    0 engine    carepath.errors, carepath.engine
    1 pathways  carepath.pathways
    2 store     db, and the shared infrastructure (settings, codec, temporal, messages, observability)
    3 activity  activities
    4 workflow  workflows
    5 service   the rest of carepath (service, check-ins, import, reconcile, FHIR, simulate ...)
    6 edge      carepath.api, carepath.web (an edge importing the other edge counts as pointing up:
                composing both is the root's job)
    7 root      carepath.app, carepath.cli, carepath.dev, worker, and carepath.simulate.runner (it
                composes a worker of its own for the stories)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("carepath", "activities", "workflows", "db")
INFRASTRUCTURE = ("settings", "codec", "temporal", "messages", "observability")
ROOTS = ("carepath.app", "carepath.cli", "carepath.dev", "worker", "carepath.simulate.runner")
MAX_LINES = 60
# What builds or runs a query: a module importing one of these from sqlalchemy holds SQL (a type
# such as Engine, Connection or an exception does not).
QUERY_CONSTRUCTS = {"select", "insert", "update", "delete", "text", "func", "Session", "sessionmaker", "and_", "or_"}


def modules(root: Path) -> dict[str, Path]:
    found = {"worker": root / "worker.py"} if (root / "worker.py").exists() else {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The known modules ``name`` imports (``from x import y`` counts y when y is a module)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def layer(name: str) -> int:
    if name.startswith(("carepath.errors", "carepath.engine")):
        return 0
    if name.startswith("carepath.pathways"):
        return 1
    if name.startswith("db") or name in {f"carepath.{m}" for m in INFRASTRUCTURE}:
        return 2
    if name.startswith("activities"):
        return 3
    if name.startswith("workflows"):
        return 4
    if name in ROOTS or name.startswith("carepath.app"):
        return 7
    if name.startswith(("carepath.api", "carepath.web")):
        return 6
    return 5


def edge(name: str) -> str:
    return "api" if name.startswith("carepath.api") else "web" if name.startswith("carepath.web") else ""


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            part = []
            while True:
                top = stack.pop()
                on.discard(top)
                part.append(top)
                if top == node:
                    break
            if len(part) > 1:
                found.append(sorted(part))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    arrows = []
    for source, targets in sorted(graph.items()):
        for target in sorted(targets):
            pathway_boot = source == "carepath.pathways" and target.startswith("carepath.pathways.")
            inside = source.startswith("carepath.pathways.") and target.startswith("carepath.pathways")
            if pathway_boot or inside:
                continue
            crossing = edge(source) and edge(target) and edge(source) != edge(target)
            if layer(target) > layer(source) or crossing:
                arrows.append((source, target))
    return arrows


def long_functions(files: dict[str, Path]) -> list[tuple[str, str, int]]:
    found = []
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_LINES:
                    found.append((name, node.name, length))
    return sorted(found, key=lambda f: -f[2])


def typing_only(tree: ast.AST) -> set[ast.AST]:
    """The imports under ``if TYPE_CHECKING:``: names used as types only."""
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test).endswith("TYPE_CHECKING")]
    return {node for block in guarded for stmt in block.body for node in ast.walk(stmt)}


def sql_outside_db(files: dict[str, Path]) -> list[tuple[str, list[str]]]:
    """Modules outside db/ importing sqlalchemy's query constructs, with the names they import."""
    found = []
    for name, path in files.items():
        if name == "db" or name.startswith("db."):
            continue
        names: set[str] = set()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        types_only = typing_only(tree)
        for node in ast.walk(tree):
            if node in types_only:
                continue
            if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlalchemy" for a in node.names):
                names.add("sqlalchemy")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
                names |= {a.name for a in node.names if a.name in QUERY_CONSTRUCTS}
        if names:
            found.append((name, sorted(names)))
    return sorted(found)


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    files = modules(root)
    graph = {name: imports(path, name, set(files)) for name, path in files.items()}
    shipped = sorted(
        name
        for name, targets in graph.items()
        if not name.startswith("carepath.pathways") and any(t.startswith("carepath.pathways.") for t in targets)
    )
    loops = circles(graph)
    arrows = upward(graph)
    print(f"{len(files)} modules under {root}")
    print(f"import circles: {len(loops)}")
    for loop in loops:
        print("  " + " <-> ".join(loop))
    print(f"arrows pointing up: {len(arrows)}")
    for source, target in arrows:
        print(f"  {source} -> {target}  (layer {layer(source)} -> {layer(target)})")
    print(f"modules outside carepath/pathways/ importing a shipped pathway: {len(shipped)}")
    for name in shipped:
        print(f"  {name}")
    sql = sql_outside_db(files)
    print(f"modules outside db/ building SQL: {len(sql)}")
    for name, names in sql:
        print(f"  {name} ({', '.join(names)})")
    longest = long_functions(files)
    print(f"product functions over {MAX_LINES} lines: {len(longest)}")
    for name, function, length in longest:
        print(f"  {length:4d} {name}.{function}")


if __name__ == "__main__":
    main()
