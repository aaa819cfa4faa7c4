"""The built distribution: one top-level import name, plmon, with every module and data file of the folders."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("monitor", "checks", "alerts")


def test_wheel_holds_only_plmon_and_every_module_of_the_folders(tmp_path: Path) -> None:
    """A wheel built from the repository has plmon/ as its only package and every file of monitor/, checks/, alerts/."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("plmon-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"plmon"}
    wanted = {f"plmon/{p.relative_to(ROOT).as_posix()}" for folder in FOLDERS for p in (ROOT / folder).rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".json", ".j2", ".typed")}
    assert wanted - set(names) == set()
