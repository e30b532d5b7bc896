"""Shared fixtures: a miniature toy benchmark and tiny models built in seconds."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
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


def write_fixed_reranked_run(mini_data, directory: Path):
    """A reranked training run over the mini benchmark whose scores come from a fixed rule, not a
    model (6 passages per question, best first): returns (questions, run file)."""
    from umr.corpus import Corpus
    from umr.records import read_questions, write_trec_run

    questions = read_questions(mini_data["xor_retrieve_train"])
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        ids = [p.id for p in corpus.by_rows(range(len(corpus)))]
    run = {q.id: [(ids[(i * 7 + j) % len(ids)], -float(j) / 3) for j in range(6)] for i, q in enumerate(questions)}
    path = Path(directory) / "reranked.trec"
    write_trec_run(path, run, "rr")
    return questions, path


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
           "--configfile", str(configfile), "--quiet", "rules", "--cores", str(cores), *args]  # targets after a 1-value option
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def mini_run(tmp_path_factory) -> Path:
    """One finished run of tests/configs/mini.yaml (the whole DAG at miniature size, both targets:
    `all` and `ablations`): its workdir."""
    workdir = tmp_path_factory.mktemp("mini-run")
    done = run_workflow(workdir, REPO / "tests" / "configs" / "mini.yaml", "all", "ablations")
    assert done.returncode == 0, done.stderr[-4000:]
    return workdir


# -- a real single-node SLURM cluster (tests/slurm/cluster.sh) ---------------------------------
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"


def _can_manage_cluster() -> str | None:
    """Return why the cluster cannot be started here, or None if it can."""
    if not sys.platform.startswith("linux"):
        return "the test cluster needs Linux"
    if os.geteuid() != 0:
        if shutil.which("sudo") is None:
            return "needs root or passwordless sudo"
        if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
            return "needs root or passwordless sudo"
    if shutil.which("slurmctld", path=os.environ.get("PATH", "") + ":/usr/sbin") is None \
            and shutil.which("apt-get") is None:
        return "SLURM is not installed and apt-get is not available to install it"
    return None


def _cluster(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args],
        capture_output=True, text=True, timeout=timeout,
    )


@dataclass
class SlurmCluster:
    """The running test cluster: the environment its clients need."""

    env: dict[str, str]
    started_here: bool

    def logs(self) -> str:
        return _cluster("logs", timeout=30).stderr


@contextlib.contextmanager
def _session_lock(timeout: float = 3600):
    """Serialise pytest sessions that use the cluster (one machine, one cluster):
    otherwise one session's teardown would stop the cluster under another."""
    state_dir = os.environ.get("UMR_SLURM_DIR", "/tmp/umr-slurm")
    with open(f"{state_dir}.pytest.lock", "a") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another pytest session held {fh.name} for {timeout} s")
                time.sleep(2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = _can_manage_cluster()
    if reason:
        pytest.skip(reason)
    with _session_lock():
        yield from _cluster_session()


def _cluster_session():
    already = _cluster("status", timeout=60).returncode == 0
    if not already:
        t = time.monotonic()
        proc = _cluster("start")
        if proc.returncode != 0:
            pytest.fail(
                f"cluster.sh start failed (exit {proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}",
                pytrace=False,
            )
        print(f"SLURM test cluster started in {time.monotonic() - t:.1f} s")
    env_line = _cluster("env", timeout=30).stdout.strip()
    m = re.fullmatch(r"export SLURM_CONF=(\S+)", env_line)
    assert m, f"unexpected `cluster.sh env` output: {env_line!r}"
    env = dict(os.environ, SLURM_CONF=m.group(1))
    # never let a surrounding SLURM job or sbatch defaults leak into the runs
    for key in list(env):
        if key.startswith(("SLURM_JOB", "SBATCH_", "SRUN_")):
            del env[key]
    try:
        yield SlurmCluster(env=env, started_here=not already)
    finally:
        if not already:
            proc = _cluster("stop", timeout=120)
            assert proc.returncode == 0, (
                f"cluster.sh stop failed (exit {proc.returncode}):\n{proc.stderr}"
            )
