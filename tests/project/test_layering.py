"""Layers only point down: every module of the jaxviz package, read with `ast` (nothing is
imported), may import only its own layer or those below it, and the layers that compute or
draw never write files.

    core, io  <  compute (attribution, propagation, occlusion, maximize, arch, filters, models,
                 data, train, sharding, registry, evaluate, cluttered, user_data)  <  plot  <  report  <  cli

A new top-level module or package must be given a layer in LAYERS.
"""
import ast
from pathlib import Path

import pytest

import jaxviz

PACKAGE = Path(jaxviz.__file__).parent
COMPUTE = ("attribution", "propagation", "occlusion", "maximize", "arch", "filters", "models",
           "data", "train", "sharding", "registry", "evaluate", "cluttered", "user_data",
           "concepts")
LAYERS = {"": 0, "core": 0, "io": 0, **{name: 1 for name in COMPUTE}, "plot": 2, "report": 3,
          "cli": 4}
# Only these write files, always through jaxviz.io: downloads, checkpoints, figures and pages.
# user_data only reads, but PIL's reader is spelled Image.open (read mode).
WRITERS = {"io", "data", "train", "report", "cli", "user_data"}
WRITE_CALLS = {"open", "savefig", "save_figure", "save_npz", "save", "savez", "savez_compressed",
               "dump", "mkdir", "touch", "imsave", "write", "writelines"}
def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _layer_of(module: str) -> str:
    """The top-level part of jaxviz a dotted module name belongs to ("" for jaxviz itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(line, imported jaxviz module) for every import anywhere in the file."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "jaxviz")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".") if is_package else module.split(".")[:-1]
                pkg = pkg[:len(pkg) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "jaxviz":
                continue
            yield node.lineno, base
            if base == "jaxviz":  # `from jaxviz import io, plot`: each name may be a module
                yield from ((node.lineno, f"jaxviz.{a.name}") for a in node.names)


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in WRITE_CALLS or name.startswith("write_"):
                yield node.lineno, name


def _problems():
    upward, writes = [], []
    for path in _modules():
        module, rel = _name(path), str(path.relative_to(PACKAGE))
        layer = _layer_of(module)
        if layer not in LAYERS:
            upward.append(f"{rel}: jaxviz.{layer} has no layer; add it to LAYERS in this test")
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, target in _imports(tree, module, path.name == "__init__.py"):
            other = _layer_of(target)
            if LAYERS.get(other, 0) > LAYERS[layer]:
                upward.append(f"{rel}:{line} imports {target} (layer {other!r} is above "
                              f"{layer or 'jaxviz'!r})")
            if other == "io" and layer not in WRITERS:
                writes.append(f"{rel}:{line} imports jaxviz.io")
        if layer not in WRITERS:
            writes += [f"{rel}:{line} calls {name}()" for line, name in _calls(tree)]
    return upward, writes


def test_no_upward_imports():
    upward, _ = _problems()
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_compute_and_plot_modules_write_no_files():
    _, writes = _problems()
    assert not writes, "files written outside jaxviz.io's callers:\n" + "\n".join(writes)


@pytest.mark.parametrize("source, module, expected", [
    ("from jaxviz.plot import core", "jaxviz.arch", ["jaxviz.plot"]),
    ("from jaxviz import io, data", "jaxviz.arch", ["jaxviz", "jaxviz.io", "jaxviz.data"]),
    ("def f():\n    import jaxviz.report.base", "jaxviz.core.probe", ["jaxviz.report.base"]),
    ("from ..plot import core", "jaxviz.occlusion.exact", ["jaxviz.plot"]),
    ("from . import exact", "jaxviz.occlusion", ["jaxviz.occlusion"]),
    ("import numpy, os.path", "jaxviz.arch", []),
])
def test_the_import_reader_sees_every_form(source, module, expected):
    is_package = module == "jaxviz.occlusion"
    assert [m for _, m in _imports(ast.parse(source), module, is_package)] == expected


TESTS = Path(__file__).resolve().parents[1]


def _test_module_imports(tree: ast.AST, test_names: set) -> list:
    """(line, name) of every import of a test module (`test_*`, bare or `tests.x.test_*`)."""
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [(node.lineno, n) for n in names if n.split(".")[-1] in test_names]
    return found


def test_no_test_imports_another_test_module():
    """Shared checks and models live in tests/helpers/: a test module imported by another
    runs its module-level code twice and ties the two files' schedules together."""
    files = sorted(TESTS.rglob("test_*.py"))
    stems = {p.stem for p in files}
    bad = [f"{p.relative_to(TESTS)}:{line} imports {name}" for p in files
           for line, name in _test_module_imports(ast.parse(p.read_text()), stems)]
    assert not bad, "\n".join(bad)
    # the reader sees both forms
    tree = ast.parse("import test_a\nfrom tests.x.test_b import f\nimport tests.helpers.y")
    assert [n for _, n in _test_module_imports(tree, {"test_a", "test_b"})] == \
        ["test_a", "tests.x.test_b"]
