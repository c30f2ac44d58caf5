"""The package's boundaries hold: no import circle (a lazy import inside a function counts),
no module takes another package's ``_private`` names, and the readable reference imports
nothing but the backend. Read from the source with ``ast``; a planted circle is caught."""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "minifcn"


def _modules(root=ROOT):
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _package(module, modules):
    return module if modules[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def _imports(module, modules, source=None):
    """(module imported, name taken) pairs of every import in the module, at any depth."""
    path = modules[module]
    tree = ast.parse(source if source is not None else path.read_text())
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("minifcn"):
                    yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = here[:len(here) - node.level + 1] if node.level else []
            target = ".".join(base + (node.module.split(".") if node.module else []))
            if not target.startswith("minifcn"):
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield (full, None) if full in modules else (target, alias.name)


def _graph(modules, sources=None):
    sources = sources or {}
    return {m: {t for t, _ in _imports(m, modules, sources.get(m)) if t in modules and t != m}
            for m in modules}


def _cycle(graph):
    """One import circle as a list of modules, or None (depth-first search)."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_no_import_circles():
    assert _cycle(_graph(_modules())) is None


def test_a_planted_circle_is_caught():
    modules = _modules()
    planted = modules["minifcn.memory"].read_text() + "\n\ndef f():\n    from .ops import conv\n"
    circle = _cycle(_graph(modules, {"minifcn.memory": planted}))
    assert circle is not None and "minifcn.memory" in circle


def test_no_private_names_across_packages():
    modules = _modules()
    taken = [(m, target, name) for m in modules for target, name in _imports(m, modules)
             if name and name.startswith("_") and name != "__version__" and target in modules
             and _package(target, modules) != _package(m, modules)]
    assert not taken, taken


@pytest.mark.parametrize("module", sorted(m for m in _modules() if ".ops.reference" in m))
def test_the_reference_imports_only_the_backend_and_itself(module):
    modules = _modules()
    for target, _ in _imports(module, modules):
        assert target.startswith(("minifcn.ops.reference", "minifcn.backend")), \
            f"{module} imports {target}: the reference is plain NumPy/CuPy"
