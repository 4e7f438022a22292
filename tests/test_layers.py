"""The layering of design.md, checked on the source: imports only point left, protocol is stdlib only."""

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "amigo_lab"

# What each part may import from the lab. The lowest layer first; upper layers may import anything.
ALLOWED = {
    "errors": set(),
    "protocol": {"errors", "protocol"},
    "audio": {"errors", "protocol", "audio"},
    "speech": {"errors", "protocol", "audio", "speech"},
    "_loop": {"errors"},
    "framelog": {"errors", "protocol", "audio"},
    "session": {"errors", "protocol", "audio", "framelog", "_loop", "session"},
    "emulator": {"errors", "protocol", "audio", "speech", "emulator"},
}


def _lab_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "amigo_lab" and len(parts) > 1:
                found.add(parts[1])
    return found


def _part(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_left(path):
    part = _part(path)
    if part not in ALLOWED:
        return  # upper layer: analysis, widgets, magics, cli, connect, demo
    wrong = _lab_imports(path) - ALLOWED[part] - {part}
    assert not wrong, f"{path.relative_to(PACKAGE)} ({part}) imports {sorted(wrong)}, against design.md's layers"


def test_protocol_uses_the_standard_library_only():
    for path in (PACKAGE / "protocol").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root in ("amigo_lab", "__future__"), (
                    f"{path.name} imports {root}; protocol must stay standard-library only")
