"""pyproject.toml's dependency floors against what the code uses.

Each entry: a package, the first release with an API the code calls, and a
pattern that finds that call in agent/ or controller/.  A floor below a used
API's release (or a used API missing from the table's sources) fails.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
# package -> [(first release with the API, regex over the sources, what)]
NEEDS = {
    "transformers": [
        ("4.57", r"layer\.is_initialized", "DynamicCache layers' is_initialized (controller/batch.py)"),
        ("4.56", r"from_pretrained\([^)]*\bdtype=", "from_pretrained's dtype= keyword (torch_dtype before)"),
    ],
    "torch": [("2.6", r"^", "transformers 5 requires torch >= 2.6")],
}


def floors(requirements: list[str]) -> dict[str, Version]:
    out = {}
    for line in requirements:
        req = Requirement(line)
        lows = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
        if lows:
            out[req.name] = max(lows)
    return out


def sources() -> str:
    return "\n".join(p.read_text() for d in ("agent", "controller") for p in sorted((ROOT / d).glob("*.py")))


def test_floors_cover_the_apis_the_code_calls():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = floors(project["dependencies"])
    code = sources()
    for package, needs in NEEDS.items():
        for first, pattern, what in needs:
            if re.search(pattern, code, re.MULTILINE):
                assert core[package] >= Version(first), f"{package} floor {core[package]} < {first}: {what}"
    # the installed versions (what the tests run on) meet the floors
    for package, floor in core.items():
        assert Version(version(package)) >= floor, package


def test_the_server_extra_reads_nvml_and_the_agent_extra_stays_bare():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "nvidia-ml-py" in {Requirement(r).name for r in extras["controller"]}
    assert extras["agent"] == []  # a board keeps its own torch and jetson-stats (playbooks/roles/agent)
