"""The layer rule of docs/architecture.md, kept by a test: a module imports only from its own
layer or from layers below it; two layers of the same rank do not import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import digitlab

PACKAGE = Path(digitlab.__file__).parent

# layer: (rank, its modules and packages). Lower ranks are imported by higher ones, never
# the other way round; layers of the same rank do not import each other.
LAYERS = {
    "foundations": (0, ["digitlab._version", "digitlab.errors", "digitlab.fileio", "digitlab.config"]),
    "imaging": (1, ["digitlab.imaging"]),
    "data": (2, ["digitlab.data"]),
    "models": (3, ["digitlab.models"]),
    "engine": (4, ["digitlab.engine"]),
    "analysis": (5, ["digitlab.analysis"]),
    "inference": (5, ["digitlab.inference"]),
    "serve": (6, ["digitlab.serve"]),
    "cli": (7, ["digitlab.cli"]),
    "public API": (8, ["digitlab", "digitlab.__main__"]),  # the package __init__ gathers every layer
}
OWNER = {module: layer for layer, (_, modules) in LAYERS.items() for module in modules}


def layer_of(module: str) -> str:
    """The layer of the longest listed module or package that `module` is or is inside of."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in OWNER:
            return OWNER[candidate]
    raise AssertionError(f"{module}: in no layer of LAYERS; add it there and to docs/architecture.md")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) of every digitlab import in a file, at the top or inside a function."""
    package = (
        module_name(path, root) if path.name == "__init__.py" else module_name(path, root).rpartition(".")[0]
    )
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((node.lineno, base))
    return [(line, name) for line, name in found if name == root.name or name.startswith(root.name + ".")]


def upward_imports(root: Path) -> list[str]:
    """Every import in the package `root` that breaks the layer rule, as 'file:line: a -> b'."""
    broken = []
    for path in sorted(root.rglob("*.py")):
        importer = layer_of(module_name(path, root))
        for line, imported in imported_modules(path, root):
            target = layer_of(imported)
            if target != importer and LAYERS[target][0] >= LAYERS[importer][0]:
                broken.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {target}")
    return broken


def test_no_module_imports_an_upper_or_sibling_layer():
    assert upward_imports(PACKAGE) == []


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path, PACKAGE))


def test_the_rule_catches_upward_and_sibling_imports(tmp_path):
    root = tmp_path / "digitlab"
    files = {
        "__init__.py": "",
        "engine/__init__.py": "",
        "engine/sweep.py": "from digitlab.analysis import figures\n",  # upward
        "analysis/__init__.py": "",
        "analysis/figures.py": "import digitlab.inference.predictor\n",  # sibling
        "inference/__init__.py": "",
        "inference/predictor.py": "from ..engine import sweep\nfrom . import x\n",  # fine: down, same
        "data/__init__.py": "",
        "data/folder.py": "def read():\n    from digitlab.imaging import to_mnist\n",  # fine: down
        "errors.py": "",
        # the first import is fine (same layer), the second upward though inside a function
        "config.py": "from digitlab.errors import E\n"
        "def check():\n    from digitlab.models import list_models\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert upward_imports(root) == [
        "digitlab/analysis/figures.py:1: analysis imports inference",
        "digitlab/config.py:3: foundations imports models",
        "digitlab/engine/sweep.py:1: engine imports analysis",
    ]


def test_the_architecture_document_names_every_layer():
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    for module in OWNER:
        if module != "digitlab":
            assert f"`{module.removeprefix('digitlab.')}`" in text, f"docs/architecture.md: {module} missing"
