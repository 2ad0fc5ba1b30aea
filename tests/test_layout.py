"""The project's structure, read from its source: no import cycles, the library never imports the
app, Streamlit or the measuring tools, and nothing imports the command line."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cl", "ui", "benchmarks", "pages", "scripts")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _project_files() -> dict[str, Path]:
    files = {"app": ROOT / "app.py"}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            if "tests" not in path.relative_to(ROOT).parts:
                files[_module_name(path)] = path
    return files


def import_graph() -> dict[str, set[str]]:
    """Every import of every project module, at any depth (function-level imports included),
    resolved to the project module it names."""
    files = _project_files()
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from pkg import sub` imports the submodule when there is one
                candidates = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            else:
                continue
            for c in candidates:
                while c and c not in files:  # `import cl.data.x` -> the deepest project module
                    c = c.rpartition(".")[0]
                if c and c != name:
                    targets.add(c)
        graph[name] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in colour:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_function_level_and_relative_imports():
    graph = import_graph()
    assert "cl.checkpoints" in graph["cl.cli"]  # imported inside functions, relatively
    assert "cl" in graph["cl.__main__"] or "cl.cli" in graph["cl.__main__"]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_library_imports_neither_the_app_nor_the_tools_nor_streamlit():
    for path in (ROOT / "cl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for n in names:
                top = n.split(".")[0]
                assert top not in ("streamlit", "ui", "pages", "benchmarks", "scripts", "app", "playwright"), \
                    f"{path.relative_to(ROOT)} imports {n}"
        text = path.read_text()
        assert "streamlit run" not in text and "chromium" not in text.lower(), \
            f"{path.relative_to(ROOT)} starts the app or a browser"


def test_nothing_imports_the_command_line():
    importers = sorted(m for m, targets in import_graph().items() if "cl.cli" in targets and m != "cl.__main__")
    assert importers == []


def test_public_api_names_resolve_and_import_cl_stays_light():
    import subprocess
    import sys

    code = ("import sys, cl; assert 'torch' not in sys.modules, 'import cl pulled in torch'; "
            "missing = [n for n in cl.__all__ if getattr(cl, n, None) is None]; "
            "assert not missing, missing; "
            "from cl.losses import SupConLoss; assert cl.SupConLoss is SupConLoss; print(len(cl.__all__))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 30
