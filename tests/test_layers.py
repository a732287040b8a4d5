"""The layers import downwards only: no module imports a layer above its own,
not even inside a function, and two layers never import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import osgp

SRC = Path(osgp.__file__).parent

# bottom to top (see README, Design)
LAYERS = [
    (
        "kernels",
        (
            "osgp",
            "osgp.errors",
            "osgp._backend",
            "osgp.crypto",
            "osgp.codes",
            "osgp._native",
            "osgp._reference",
        ),
    ),
    ("security", ("osgp.security",)),
    ("links", ("osgp.link",)),
    ("data model", ("osgp.tables", "osgp.loadprofile")),
    ("services", ("osgp.services",)),
    ("sessions", ("osgp.session",)),
    ("transports", ("osgp.transport",)),
    (
        "applications",
        (
            "osgp.sim",
            "osgp.concentrator",
            "osgp.batch",
            "osgp.wireshark",
            "osgp.selftest",
            "osgp.demo",
            "osgp.cli",
            "osgp.__main__",
        ),
    ),
]


def layer_of(module: str) -> int:
    best, rank = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    assert rank >= 0, f"{module} belongs to no layer"
    return rank


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    p = SRC.parent.joinpath(*name.split("."))
    return (
        p.with_suffix(".py").exists()
        or (p / "__init__.py").exists()
        or any(p.parent.glob(p.name + ".*.so"))
    )


def imports(path: Path):
    """(imported osgp module, line) for every import statement in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    mod = module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for a in node.names:  # "from osgp import session" imports osgp.session
                sub = f"{target}.{a.name}"
                yield (sub if is_module(sub) else target), node.lineno


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        mod = module_name(path)
        own = layer_of(mod)
        for target, line in imports(path):
            if target.split(".")[0] != "osgp":
                continue
            t = layer_of(target)
            if t > own:
                bad.append(f"{mod}:{line} ({LAYERS[own][0]}) imports {target} ({LAYERS[t][0]})")
    assert not bad, "\n".join(bad)


def test_the_layer_map():
    assert layer_of("osgp.link.optical") < layer_of("osgp.services.codes")
    assert layer_of("osgp._reference.tables") < layer_of("osgp.tables.schema")
    assert layer_of("osgp.session.router") > layer_of("osgp.link.carrier")
    assert layer_of("osgp") == layer_of("osgp.crypto") == 0


def test_only_the_cli_imports_batch_and_batch_leaves_the_concentrator_alone():
    """osgp.batch is an application: nothing imports it but the command line
    (one registration line), and it does not depend on osgp.concentrator."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        mod = module_name(path)
        for target, line in imports(path):
            inside = mod == "osgp.batch" or mod.startswith("osgp.batch.")
            if target.startswith("osgp.batch") and not inside and mod != "osgp.cli":
                bad.append(f"{mod}:{line} imports {target}")
            if inside and target.startswith("osgp.concentrator"):
                bad.append(f"{mod}:{line} imports {target}")
    assert not bad, "\n".join(bad)
