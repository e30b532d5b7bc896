"""Atomic outputs (issue 7): a step writes to a hidden temporary sibling and renames it when
complete, so a crash or a kill never leaves anything Snakemake would take as a finished output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from umr.io import atomic_dir, atomic_file


def test_atomic_file_appears_only_when_complete(tmp_path):
    out = tmp_path / "run.trec"
    with atomic_file(out) as tmp:
        tmp.write_text("q1 Q0 p1 1 1.0 x\n")
        assert not out.exists(), "visible before the block ended"
    assert out.read_text() == "q1 Q0 p1 1 1.0 x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.trec"]


def test_atomic_file_leaves_nothing_when_the_step_fails(tmp_path):
    out = tmp_path / "run.trec"
    with pytest.raises(RuntimeError):
        with atomic_file(out) as tmp:
            tmp.write_text("half a run")
            raise RuntimeError("the stage failed")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_old_output_and_nothing_else(tmp_path):
    out = tmp_path / "retriever"
    with atomic_dir(out) as tmp:
        (tmp / "config.json").write_text("{}")
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "config.json").write_text('{"half": ')
            raise RuntimeError("the stage failed")
    assert (out / "config.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["retriever"]


def test_debris_of_a_killed_process_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "shard-0-of-1.npy"
    debris = tmp_path / f".{out.name}.tmp-999999"  # a pid that wrote and was killed
    debris.write_bytes(b"partial")
    with atomic_file(out) as tmp:
        tmp.write_bytes(b"complete")
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def _pretrain_command(corpus: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "umr.models", "retriever", "--corpus", str(corpus), "--out", str(out),
            "--vocab-size", "1200", "--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64",
            "--steps", "20", "--batch-size", "8"]


def test_a_stage_killed_at_any_moment_leaves_no_incomplete_output(mini_data, tmp_path):
    """SIGKILL a real stage (a tiny model's pre-training, ending in save_pretrained) at moments spread
    over its whole run, the save included: its output either does not exist or is complete."""
    from transformers import AutoModel, AutoTokenizer

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    corpus = mini_data["corpus_xor_retrieve"]
    start = time.monotonic()
    subprocess.run(_pretrain_command(corpus, tmp_path / "timing" / "retriever"), env=env, check=True,
                   capture_output=True)
    duration = time.monotonic() - start
    outcomes = []
    for i, fraction in enumerate((0.3, 0.6, 0.8, 0.9, 0.95, 1.0, 1.05)):
        out = tmp_path / f"kill-{i}" / "retriever"
        proc = subprocess.Popen(_pretrain_command(corpus, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # finished before the kill: it must be a complete, loadable model
            AutoModel.from_pretrained(out)
            AutoTokenizer.from_pretrained(out)
            outcomes.append("complete")
        else:
            leftovers = list(out.parent.iterdir()) if out.parent.exists() else []
            assert all(p.name.startswith(".retriever.tmp-") for p in leftovers), leftovers
            outcomes.append("absent")
    assert "absent" in outcomes, outcomes  # at least one kill landed mid-run
