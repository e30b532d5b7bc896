"""Shared fixtures: a miniature toy benchmark and tiny models built in seconds."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from umr import models, toy
from umr.toy import ToySizes

# A benchmark small enough to build models on in a few seconds; same generator as the real toy.
MINI_SIZES = ToySizes(
    seed=7, persons=40, first_names=20, surnames=25, places=20, orgs=15, filler_articles=10, passage_words=40,
    local_persons_per_language=4, questions={"xor_retrieve": {"train": 6, "dev": 4}, "xor_full": {"train": 4, "dev": 4}},
)


@pytest.fixture(scope="session")
def mini_data(tmp_path_factory) -> dict[str, Path]:
    """The toy generator at miniature size: real formats, real loaders."""
    return toy.generate(MINI_SIZES, tmp_path_factory.mktemp("mini") / "data")


@pytest.fixture(scope="session")
def mini_texts(mini_data) -> list[str]:
    return models.collection_texts([mini_data["corpus_xor_retrieve"], mini_data["corpus_xor_full"]])


@pytest.fixture(scope="session")
def tiny_retriever(mini_texts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "retriever"
    models.pretrain_retriever(mini_texts, out, vocab_size=1200, hidden=32, layers=1, heads=2, intermediate=64,
                              steps=3, batch_size=8, lr=1e-3, temperature=1.0, seed=1)  # τ 1: no score scaling folded in
    return out


@pytest.fixture(scope="session")
def tiny_lm(mini_texts, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "lm"
    models.pretrain_lm(mini_texts, out, vocab_size=1200, d_model=32, layers=1, heads=2, d_ff=64, steps=4,
                       batch_size=8, lr=1e-3, seed=1)
    return out


@pytest.fixture(autouse=True)
def restore_logging():
    """`run_cli` points the root logger at the current stderr; undo it after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# -- the real workflow -------------------------------------------------------------------------
REPO = Path(__file__).resolve().parents[1]


def run_workflow(workdir: Path, configfile: Path, *args: str, cores: int = 2, timeout: int = 3600):
    """`snakemake` on this repository's Snakefile in `workdir` (results land in workdir/results)."""
    import subprocess
    import sys

    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", str(cores), "--quiet", "rules", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """One finished run of tests/configs/mini.yaml (the whole DAG at miniature size): its workdir."""
    workdir = tmp_path_factory.mktemp("mini-run")
    done = run_workflow(workdir, REPO / "tests" / "configs" / "mini.yaml")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir
