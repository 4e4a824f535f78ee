"""The package's folders are layers, and imports only go down.

Every module is parsed, not imported, so the lazy imports inside functions count as much as
those at the top, and so does ``importlib.import_module("confroute. ...")`` with a literal name.
A registry that imports its plugins by a computed name (``routers.base`` loading the built-in
routers, ``eval.benchmarks`` loading the code benchmarks) is not read.
"""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "python" / "confroute"

# Low to high. A module may import its own layer and those below it; within a layer, no cycle.
# runtime and models import nothing of ours but the C core; routers feed decision's adapter
# for trained routers (decision.names); the package's top (confroute/__init__.py) is the API.
LAYERS = [
    {"_core"},
    {"runtime"},
    {"models"},
    {"confidence"},
    {"labels"},
    {"routers"},
    {"decision"},
    {"controller", "server"},
    {"eval"},
    {"cli", "integrations", ""},
]


def module_files(root: pathlib.Path):
    """Module name -> file of the package at ``root``; a stub without source (the C
    extension's ``.pyi``) names its module too."""
    out = {}
    for p in sorted(root.rglob("*.py*")):
        if p.suffix not in (".py", ".pyi") or "__pycache__" in p.parts:
            continue
        parts = [root.name, *p.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out.setdefault(".".join(parts), p)
    return out


def _imported_names(tree: ast.AST, package: str):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            for a in node.names:
                yield base, a.name
        elif isinstance(node, ast.Call) and node.args \
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module" \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            yield node.args[0].value, None


def import_graph(root: pathlib.Path):
    """Module -> the modules of the same package it imports (anywhere in its source)."""
    files = module_files(root)

    def resolve(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name

    graph = {}
    for mod, path in files.items():
        if path.suffix == ".pyi":
            graph[mod] = set()
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        edges = set()
        for base, name in _imported_names(ast.parse(path.read_text(), str(path)), package):
            if base != root.name and not base.startswith(root.name + "."):
                continue
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name` pkg
            target = f"{base}.{name}" if name and f"{base}.{name}" in files else base
            target = resolve(target)
            if target and target != mod:
                edges.add(target)
        graph[mod] = edges
    return graph


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def layer_of(module: str, layers=LAYERS):
    """The rank of a module's layer: its first name below the package's."""
    top = module.split(".")[1] if "." in module else ""
    for rank, names in enumerate(layers):
        if top in names:
            return rank
    return None


def upward(graph, layers=LAYERS):
    """(importer, imported) where the imported module sits in a higher layer."""
    return sorted((a, b) for a, bs in graph.items() for b in bs
                  if layer_of(b, layers) > layer_of(a, layers))


def test_every_module_has_a_layer():
    missing = [m for m in import_graph(ROOT) if layer_of(m) is None]
    assert not missing, f"place these in LAYERS: {missing}"


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_imports_only_go_down():
    assert upward(import_graph(ROOT)) == []


def test_the_check_sees_a_planted_cycle_and_an_upward_import(tmp_path):
    pkg = tmp_path / "confroute"
    for folder in ("low", "high"):
        (pkg / folder).mkdir(parents=True)
        (pkg / folder / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "_core.pyi").write_text("def f() -> int: ...\n")
    (pkg / "low" / "a.py").write_text(
        "from confroute import _core\n"
        "def late():\n    from confroute.high import b  # lazy, still an import\n")
    (pkg / "low" / "c.py").write_text("from . import a\n")
    (pkg / "high" / "b.py").write_text(
        "import importlib\nfrom confroute.low.c import a\n"
        "def plugin():\n    return importlib.import_module('confroute.high.d')\n")
    (pkg / "high" / "d.py").write_text("")
    graph = import_graph(pkg)
    assert graph["confroute.low.a"] == {"confroute._core", "confroute.high.b"}
    assert graph["confroute.high.b"] == {"confroute.low.c", "confroute.high.d"}
    assert cycles(graph) == [["confroute.high.b", "confroute.low.a", "confroute.low.c"]]
    layers = [{"_core"}, {"low"}, {"high"}, {""}]
    assert upward(graph, layers) == [("confroute.low.a", "confroute.high.b")]
    # the real graph with one planted edge fails both checks
    real = import_graph(ROOT)
    real["confroute.confidence.core"].add("confroute.decision.path")
    real["confroute.decision.path"].add("confroute.confidence.core")
    assert ["confroute.confidence.core", "confroute.decision.path"] in cycles(real)
    assert ("confroute.confidence.core", "confroute.decision.path") in upward(real)
