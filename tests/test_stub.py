"""The _core.pyi stub names exactly what the compiled module defines, with the same arguments."""
import ast
import inspect
import pathlib

from confroute import _core

STUB = pathlib.Path(__file__).resolve().parents[1] / "python" / "confroute" / "_core.pyi"


def stub_functions():
    tree = ast.parse(STUB.read_text())
    return {f.name: [a.arg for a in f.args.args] for f in tree.body if isinstance(f, ast.FunctionDef)}


def test_stub_matches_module():
    compiled = {n for n, v in vars(_core).items() if callable(v) and not n.startswith("_")}
    stub = stub_functions()
    assert set(stub) == compiled
    for name, args in stub.items():
        # pybind11 writes the signature as the docstring's first line: name(arg: type, ...)
        first = getattr(_core, name).__doc__.splitlines()[0]
        for a in args:
            assert f"{a}:" in first, (name, a, first)
