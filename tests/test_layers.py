"""The library never imports the command line or its presets: data and code move one way (compressors ->
components -> codecs -> container -> API / CLI), and users who never touch the LeNet / Fashion-MNIST
presets must not need them. Checked on the source (every import statement, also inside functions)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "nncodec"



def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Absolute names of every module `path` imports (relative imports resolved against its package)."""
    package = path.relative_to(root).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            module = ".".join((*base, *(node.module.split(".") if node.module else ())))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_imported_modules_sees_every_form_of_import(tmp_path):
    src = tmp_path / "nncodec" / "compress" / "x.py"
    src.parent.mkdir(parents=True)
    src.write_text("import nncodec_cli\nfrom .. import api\nfrom ..mdl.idx import parse_idx\n"
                   "def f():\n    from nncodec_cli.presets import lenet\n")
    assert imported_modules(src, tmp_path) == {"nncodec_cli", "nncodec", "nncodec.api", "nncodec.mdl.idx",
                                               "nncodec.mdl.idx.parse_idx", "nncodec_cli.presets",
                                               "nncodec_cli.presets.lenet"}


@pytest.mark.parametrize("path", sorted(LIBRARY.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_does_not_import_the_cli(path):
    upward = sorted(m for m in imported_modules(path) if m == "nncodec_cli" or m.startswith("nncodec_cli."))
    assert not upward, f"{path.relative_to(ROOT)} imports {upward}: the library must not depend on the CLI or its presets"
