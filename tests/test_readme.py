"""The README's check catalogue is the registry's, so the documentation cannot drift from the code.

Regenerate with: .venv/bin/python tests/test_readme.py
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- checks:start -->\n)(.*?)(<!-- checks:end -->)", re.DOTALL)


def catalogue() -> str:
    out = subprocess.run([sys.executable, "-m", "plmon.monitor", "checks", "--format", "md"],
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_readme_catalogue_matches_registry() -> None:
    """The table between the checks markers is exactly `plmon checks --format md`."""
    m = BLOCK.search(README.read_text())
    assert m, "README.md lost its <!-- checks:start/end --> markers"
    assert m.group(2) == catalogue(), "README catalogue is stale: run .venv/bin/python tests/test_readme.py"


if __name__ == "__main__":
    README.write_text(BLOCK.sub(lambda m: m.group(1) + catalogue() + m.group(3), README.read_text()))
    print("README.md catalogue regenerated")
