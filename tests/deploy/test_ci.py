"""The pipeline steps in deploy/ci/ (issue 17): what they run is the what-if plmon reads and a plmon command line the
CLI accepts, the SARIF is uploaded even when the gate fails, and the YAML lints clean."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from yamllint import linter
from yamllint.config import YamlLintConfig

from plmon.monitor.cli import cli

CI = Path(__file__).resolve().parents[2] / "deploy" / "ci"
GITHUB = CI / "github-actions-what-if.yml"
DEVOPS = CI / "azure-pipelines-what-if.yml"


def _scripts(doc: Any) -> str:
    steps = doc["jobs"]["what-if"]["steps"] if "jobs" in doc else doc["steps"]
    return "\n".join(str(s.get("run") or s.get("bash") or s.get("inputs", {}).get("inlineScript") or "")
                     for s in steps)


def _plmon_lines(script: str) -> list[list[str]]:
    joined = script.replace("\\\n", " ")
    return [shlex.split(line.strip().split(">")[0].split("||")[0]) for line in joined.splitlines()
            if line.strip().startswith("plmon what-if")]


@pytest.mark.parametrize("path", [GITHUB, DEVOPS], ids=["github", "devops"])
def test_pipeline_runs_the_what_if_plmon_reads_then_a_valid_plmon_command(path: Path) -> None:
    """az deployment group what-if with FullResourcePayloads and --no-pretty-print, then plmon what-if --format sarif
    with --fail-on, each plmon line parsing with the real CLI; the YAML lints clean."""
    conf = YamlLintConfig("{extends: default, rules: {line-length: {max: 120}, document-start: disable, "
                          "comments: {min-spaces-from-content: 1}}}")
    assert list(linter.run(path.read_text(), conf, str(path))) == []
    script = _scripts(yaml.safe_load(path.read_text()))
    what_if = re.search(r"az deployment group what-if(.*?)> what-if\.json", script.replace("\\\n", " "), re.S)
    assert what_if and "--result-format FullResourcePayloads" in what_if.group(1)
    assert "--no-pretty-print" in what_if.group(1)
    lines = _plmon_lines(script)
    assert any("--fail-on" in words and "sarif" in words for words in lines), lines
    for words in lines:
        args = [w if not w.startswith("${{") else "high" for w in words[2:]]
        command = cli.get_command(click.Context(cli), "what-if")
        assert command is not None
        command.make_context("what-if", args)   # raises on an unknown flag or a bad value


def test_sarif_is_uploaded_even_when_the_gate_fails() -> None:
    """The SARIF upload and publish steps run always(); the gate fails the job afterwards."""
    gh = yaml.safe_load(GITHUB.read_text())["jobs"]["what-if"]["steps"]
    upload = next(s for s in gh if "upload-sarif" in str(s.get("uses")))
    assert upload["if"] == "always()" and gh.index(upload) < len(gh) - 1
    assert yaml.safe_load(GITHUB.read_text())["permissions"]["security-events"] == "write"
    ado = yaml.safe_load(DEVOPS.read_text())["steps"]
    publish = next(s for s in ado if s.get("task") == "PublishBuildArtifacts@1")
    assert publish["condition"] == "always()" and publish["inputs"]["ArtifactName"] == "CodeAnalysisLogs"
