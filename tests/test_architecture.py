"""The layer map holds and docs/architecture.md names every module that exists.

A wrong-way import (a task importing a pipeline, config importing the runtime) fails here, so it
fails CI, not only `make lint`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" in out.stdout and " 0 broken" in out.stdout


def _modules() -> list[str]:
    found = []
    for path in sorted((ROOT / "posttrain").rglob("*.py")):
        rel = path.relative_to(ROOT / "posttrain")
        if rel.name == "__init__.py":
            rel = rel.parent
            if rel == Path("."):
                continue
            found.append(f"{rel.as_posix()}/")
        else:
            found.append(rel.as_posix())
    return found


def test_architecture_doc_names_every_module():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    missing = [m for m in _modules() if f"`{m}`" not in doc]
    assert not missing, f"docs/architecture.md lacks: {', '.join(missing)}"


def test_architecture_doc_names_no_module_that_is_gone():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    section = doc.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^- `([^`]+)`", section, flags=re.M))
    gone = sorted(named - set(_modules()))
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"
