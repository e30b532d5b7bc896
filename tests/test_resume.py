"""Resumable long stages: a killed or stopped job, rerun, ends exactly where an uninterrupted one does.

- distillation (`python -m umr.distill`, a real subprocess): SIGKILL after a checkpoint exists,
  and SIGTERM (checkpoint, then exit 143); the rerun resumes and its final weights equal an
  uninterrupted run's tensor by tensor;
- corpus encoding and reranking: interrupted after k chunks, the rerun computes only the
  remaining chunks and writes the same output as an uninterrupted run.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import umr.encode
from umr.corpus import Corpus, build_offsets, save_offsets
from umr.distill import CHECKPOINT_FORMAT, Checkpoints, DistillSettings, checkpoint_dir_for, distill
from umr.encode import PASSAGE_DIR, QUERY_DIR, DualEncoder, encode_corpus_shard
from umr.io import Interrupted, parts_path, run_cli
from umr.records import read_questions, read_trec_run, write_trec_run
from umr.rerank import Reranker

REPO = Path(__file__).resolve().parents[1]

# 42 training questions / batch 4 = 10 steps per epoch; 6 epochs = 60 steps (~10 s on one core).
STEPS = 60
SETTINGS = dict(batch_size=4, passages_per_question=3, epochs=6, learning_rate=1e-3, warmup_steps=1, max_length=64,
                seed=3, grad_cache=True, query_chunk_size=3, passage_chunk_size=5)


# -- distillation ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def distill_files(mini_data, tiny_retriever, tmp_path_factory) -> dict[str, Path]:
    """Everything `python -m umr.distill` reads: questions, a reranked run, the corpus and its offsets."""
    d = tmp_path_factory.mktemp("resume-distill")
    corpus = mini_data["corpus_xor_retrieve"]
    ids, offsets = build_offsets(corpus, progress=False)
    save_offsets(d / "offsets.npz", ids, offsets)
    ids = [i.decode("utf-8") for i in ids]
    questions = read_questions(mini_data["xor_retrieve_train"])
    # Scores from a fixed rule, not a model (as in test_distill.py); 6 passages per question.
    run = {q.id: [(ids[(i * 7 + j) % len(ids)], -float(j) / 3) for j in range(6)] for i, q in enumerate(questions)}
    write_trec_run(d / "reranked.trec", run, "rr")
    return {"student": tiny_retriever, "questions": mini_data["xor_retrieve_train"], "reranked": d / "reranked.trec",
            "corpus": corpus, "offsets": d / "offsets.npz"}


def distill_command(files: dict[str, Path], out: Path, checkpoint_every: int) -> list[str]:
    s = SETTINGS
    return [sys.executable, "-m", "umr.distill", "--student", str(files["student"]),
            "--questions", str(files["questions"]), "--reranked", str(files["reranked"]),
            "--corpus", str(files["corpus"]), "--offsets", str(files["offsets"]), "--top-k", "6",
            "--batch-size", str(s["batch_size"]), "--passages-per-question", str(s["passages_per_question"]),
            "--epochs", str(s["epochs"]), "--learning-rate", str(s["learning_rate"]),
            "--warmup-steps", str(s["warmup_steps"]), "--max-length", str(s["max_length"]), "--seed", str(s["seed"]),
            "--grad-cache", "--query-chunk-size", str(s["query_chunk_size"]),
            "--passage-chunk-size", str(s["passage_chunk_size"]), "--checkpoint-every", str(checkpoint_every),
            "--out", str(out)]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}


def run_distill(files, out, checkpoint_every) -> subprocess.CompletedProcess:
    return subprocess.run(distill_command(files, out, checkpoint_every), capture_output=True, text=True, env=_env(),
                          timeout=1800)


def start_and_signal(files, out: Path, checkpoint_every: int, signum: int, log: Path) -> int:
    """Start a distillation, send `signum` as soon as a checkpoint exists, return its exit status."""
    checkpoints = checkpoint_dir_for(out)
    with open(log, "w") as stderr:
        proc = subprocess.Popen(distill_command(files, out, checkpoint_every), stdout=subprocess.DEVNULL,
                                stderr=stderr, env=_env())
        try:
            # Generous: importing torch and transformers alone takes minutes on a loaded machine.
            deadline = time.monotonic() + 1200
            while not list(checkpoints.glob("step-*.pt")):
                assert proc.poll() is None, f"distillation ended before its first checkpoint:\n{log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, "no checkpoint after 1200 s"
                time.sleep(0.01)
            proc.send_signal(signum)
            return proc.wait(timeout=1200)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def checkpoint_steps(out: Path) -> list[int]:
    return [int(p.stem[5:]) for p in Checkpoints(checkpoint_dir_for(out), "").files()]


def assert_same_weights(a: Path, b: Path) -> None:
    """Both encoders of two retriever directories, tensor by tensor, exactly equal."""
    for sub in (QUERY_DIR, PASSAGE_DIR):
        wa, wb = load_file(a / sub / "model.safetensors"), load_file(b / sub / "model.safetensors")
        assert wa.keys() == wb.keys()
        different = [k for k in wa if wa[k].dtype != wb[k].dtype or not torch.equal(wa[k], wb[k])]
        assert not different, f"{sub}: {len(different)} tensors differ, e.g. {different[:3]}"
    assert (a / "distill_settings.json").read_text() == (b / "distill_settings.json").read_text()


def resumed_from(stderr: str) -> int:
    found = re.findall(r"resuming from \S+: step (\d+) of (\d+)", stderr)
    assert found, f"the rerun did not resume:\n{stderr[-3000:]}"
    assert int(found[-1][1]) == STEPS
    return int(found[-1][0])


@pytest.fixture(scope="module")
def uninterrupted(distill_files, tmp_path_factory):
    """The reference: one run from start to end without periodic checkpoints.

    Started in the background (two cores: it runs beside the first interrupted run); a
    test calls the fixture's value to wait for it and get its output directory.
    """
    out = tmp_path_factory.mktemp("reference") / "retriever"
    log = out.with_name("reference.log")
    with open(log, "w") as stderr:
        proc = subprocess.Popen(distill_command(distill_files, out, checkpoint_every=0), stdout=subprocess.DEVNULL,
                                stderr=stderr, env=_env())

    def finished() -> Path:
        assert proc.wait(timeout=1800) == 0, log.read_text()[-3000:]
        assert "resuming" not in log.read_text()
        assert not checkpoint_dir_for(out).exists()
        return out

    yield finished
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_distillation_killed_by_sigkill_resumes_to_the_same_weights(distill_files, uninterrupted, tmp_path):
    out = tmp_path / "retriever"
    status = start_and_signal(distill_files, out, checkpoint_every=7, signum=signal.SIGKILL, log=tmp_path / "kill.log")
    assert status == -signal.SIGKILL
    assert not out.exists(), "a killed run must not leave its output"
    steps = checkpoint_steps(out)
    assert steps and all(s % 7 == 0 and s < STEPS for s in steps) and len(steps) <= Checkpoints.KEEP
    # Debris of a checkpoint write killed half-way is ignored (and cleaned up) by the rerun.
    debris = checkpoint_dir_for(out) / f".step-{steps[-1] + 7:08d}.pt.tmp-999999"
    debris.write_bytes(b"half a checkpoint")

    rerun = run_distill(distill_files, out, checkpoint_every=7)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert resumed_from(rerun.stderr) == steps[-1] > 0
    assert not checkpoint_dir_for(out).exists(), "checkpoints are removed once the retriever is saved"
    assert_same_weights(out, uninterrupted())


def test_distillation_stopped_by_sigterm_checkpoints_exits_non_zero_and_resumes(distill_files, uninterrupted,
                                                                               tmp_path):
    out = tmp_path / "retriever"
    log = tmp_path / "stop.log"
    status = start_and_signal(distill_files, out, checkpoint_every=7, signum=signal.SIGTERM, log=log)
    assert status == 128 + signal.SIGTERM
    assert not out.exists()
    errors = [line for line in log.read_text().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and re.match(rf"error: stopped by SIGTERM at step \d+/{STEPS}; checkpoint \S+ saved",
                                         errors[0]), errors
    stopped_at = int(re.search(r"at step (\d+)/", errors[0]).group(1))
    assert checkpoint_steps(out)[-1] == stopped_at and 0 < stopped_at < STEPS

    rerun = run_distill(distill_files, out, checkpoint_every=7)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert resumed_from(rerun.stderr) == stopped_at
    assert not checkpoint_dir_for(out).exists()
    assert_same_weights(out, uninterrupted())


def _small(seed: int = 3) -> DistillSettings:
    return DistillSettings(**{**SETTINGS, "epochs": 1, "seed": seed})


def _signal_at_step(monkeypatch, signum: int, at_step: int) -> None:
    """Make the trainer receive `signum` while it computes step `at_step` (1-based)."""
    import umr.distill

    real = umr.distill.Distiller.step_gradients

    def step_gradients(self, *args):
        if self.step + 1 == at_step:
            os.kill(os.getpid(), signum)
        return real(self, *args)

    monkeypatch.setattr(umr.distill.Distiller, "step_gradients", step_gradients)


def test_sigusr1_mid_training_checkpoints_and_a_rerun_resumes(distill_files, tmp_path, monkeypatch):
    """SIGUSR1 (SLURM's `--signal=B:USR1`) as SIGTERM: checkpoint after the step, exit 128 + 10, resume."""
    out, checkpoints = tmp_path / "retriever", tmp_path / "checkpoints"
    with Corpus(distill_files["corpus"], distill_files["offsets"]) as corpus:
        args = (str(distill_files["student"]), distill_files["questions"], [distill_files["reranked"]], corpus,
                _small(), 6)
        with monkeypatch.context() as m:
            _signal_at_step(m, signal.SIGUSR1, at_step=4)
            with pytest.raises(Interrupted) as stopped:
                distill(*args, out, checkpoint_every=0, checkpoint_dir=checkpoints)
        assert stopped.value.exit_code == 128 + signal.SIGUSR1
        assert "stopped by SIGUSR1 at step 4/10" in str(stopped.value) and "\n" not in str(stopped.value)
        assert [p.name for p in Checkpoints(checkpoints, "").files()] == ["step-00000004.pt"] and not out.exists()
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL, "the previous handler is back"
        distill(*args, out, checkpoint_every=0, checkpoint_dir=checkpoints)
        distill(*args, tmp_path / "plain")
    assert not checkpoints.exists()
    assert_same_weights(out, tmp_path / "plain")


def test_a_signal_during_the_last_step_just_finishes(distill_files, tmp_path, monkeypatch):
    out, checkpoints = tmp_path / "retriever", tmp_path / "checkpoints"
    _signal_at_step(monkeypatch, signal.SIGTERM, at_step=10)
    with Corpus(distill_files["corpus"], distill_files["offsets"]) as corpus:
        losses = distill(str(distill_files["student"]), distill_files["questions"], [distill_files["reranked"]],
                         corpus, _small(), 6, out, checkpoint_every=0, checkpoint_dir=checkpoints)
    assert len(losses) == 10 and (out / QUERY_DIR).is_dir() and not checkpoints.exists()


def test_checkpoints_of_another_computation_are_discarded(distill_files, tmp_path, caplog, monkeypatch):
    """A checkpoint with another fingerprint (here: another seed) is never resumed from."""
    import umr.distill

    out, checkpoints = tmp_path / "retriever", tmp_path / "checkpoints"
    with Corpus(distill_files["corpus"], distill_files["offsets"]) as corpus:
        args = (str(distill_files["student"]), distill_files["questions"], [distill_files["reranked"]], corpus)
        # A seed-4 run whose checkpoint (step 5) stays behind.
        with monkeypatch.context() as m:
            m.setattr(umr.distill.Checkpoints, "remove", lambda self: None)
            distill(*args, _small(seed=4), 6, tmp_path / "seed4", checkpoint_every=5, checkpoint_dir=checkpoints)
        assert [p.name for p in Checkpoints(checkpoints, "").files()] == ["step-00000005.pt"]
        # The same directory for a seed-3 run: discarded, trained from scratch.
        caplog.set_level("INFO", logger="umr")
        distill(*args, _small(seed=3), 6, out, checkpoint_every=5, checkpoint_dir=checkpoints)
        distill(*args, _small(seed=3), 6, tmp_path / "plain")
    assert "holds checkpoints of a different run" in caplog.text and "resuming" not in caplog.text
    assert not checkpoints.exists()
    assert_same_weights(out, tmp_path / "plain")


def test_a_checkpoint_holds_the_whole_training_state(distill_files, tmp_path, monkeypatch):
    """Model, optimizer, scheduler, RNG states, data order and step, readable with weights_only."""
    import umr.distill

    checkpoints = tmp_path / "checkpoints"
    monkeypatch.setattr(umr.distill.Checkpoints, "remove", lambda self: None)  # keep them for inspection
    with Corpus(distill_files["corpus"], distill_files["offsets"]) as corpus:
        distill(str(distill_files["student"]), distill_files["questions"], [distill_files["reranked"]], corpus,
                _small(), 6, tmp_path / "retriever", checkpoint_every=3, checkpoint_dir=checkpoints)
    saved = Checkpoints(checkpoints, "").files()
    assert [p.name for p in saved] == ["step-00000006.pt", "step-00000009.pt"]  # 3, 6, 9 of 10; newest two kept
    state = torch.load(saved[-1], map_location="cpu", weights_only=True)
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 9 and len(state["losses"]) == 9
    for key in ("query_model", "passage_model", "optimizer", "scheduler", "fingerprint"):
        assert state[key]
    assert state["optimizer"]["state"], "AdamW moments are saved"
    assert state["scheduler"]["last_epoch"] == 9
    assert state["cursor"]["epoch"] == 0 and state["cursor"]["position"] == 9 and len(state["cursor"]["order"]) == 42
    assert set(state["rng"]) == {"data", "python", "torch", "cuda"}


# -- corpus encoding ----------------------------------------------------------------------------
class Interruption(Exception):
    """Stands in for a job killed between two chunks."""


def counting(real, calls: list, fail_after: int | None = None):
    def wrapper(*args, **kwargs):
        if fail_after is not None and len(calls) == fail_after:
            raise Interruption
        calls.append(len(args[1]) if len(args) > 1 else None)
        return real(*args, **kwargs)

    return wrapper


def test_encoding_redoes_only_unfinished_chunks(mini_data, tiny_retriever, tmp_path, monkeypatch):
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    real = umr.encode.encode_ids
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        shard = dict(shard=1, num_shards=2, batch_size=16, chunk_size=20)
        start, stop = umr.encode.shard_rows(len(corpus), 1, 2)
        n_chunks = -(-(stop - start) // 20)
        assert n_chunks >= 4
        reference = tmp_path / "reference.npy"
        encode_corpus_shard(encoder, corpus, out=reference, **shard)

        out = tmp_path / "shard-1-of-2.npy"
        calls: list = []
        monkeypatch.setattr(umr.encode, "encode_ids", counting(real, calls, fail_after=2))
        with pytest.raises(Interruption):
            encode_corpus_shard(encoder, corpus, out=out, **shard)
        assert not out.exists() and len(calls) == 2
        finished = sorted(p.name for p in parts_path(out).iterdir() if p.suffix == ".npy")
        assert len(finished) == 2

        calls.clear()
        monkeypatch.setattr(umr.encode, "encode_ids", counting(real, calls))
        assert encode_corpus_shard(encoder, corpus, out=out, **shard) == (start, stop)
    assert len(calls) == n_chunks - 2, "only the unfinished chunks are encoded again"
    assert sum(calls) == (stop - start) - 2 * 20
    assert not parts_path(out).exists()
    a, b = np.load(out), np.load(reference)
    assert a.dtype == b.dtype and a.shape == b.shape == (stop - start, encoder.passage_model.config.hidden_size)
    assert np.array_equal(a, b)
    assert out.read_bytes() == reference.read_bytes()


def test_encoding_discards_chunks_of_another_computation(mini_data, tiny_retriever, tmp_path, monkeypatch):
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    real = umr.encode.encode_ids
    out = tmp_path / "shard-0-of-1.npy"
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        calls: list = []
        monkeypatch.setattr(umr.encode, "encode_ids", counting(real, calls, fail_after=2))
        with pytest.raises(Interruption):
            encode_corpus_shard(encoder, corpus, 0, 1, out, batch_size=16, chunk_size=40)
        calls.clear()
        monkeypatch.setattr(umr.encode, "encode_ids", counting(real, calls))
        # fp16 output: the float32 chunks must not be reused.
        encode_corpus_shard(encoder, corpus, 0, 1, out, batch_size=16, chunk_size=40, fp16=True)
    assert len(calls) == -(-len(corpus) // 40)
    assert np.load(out).dtype == np.float16


# -- reranking ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rerank_files(mini_data, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("resume-rerank")
    corpus = mini_data["corpus_xor_retrieve"]
    ids, offsets = build_offsets(corpus, progress=False)
    save_offsets(d / "offsets.npz", ids, offsets)
    ids = [i.decode("utf-8") for i in ids]
    questions = [q for q in read_questions(mini_data["xor_retrieve_dev"]) if q.lang == "ja"]
    assert len(questions) >= 4
    run = {q.id: [(ids[(i * 5 + j) % len(ids)], 1.0 - j / 10) for j in range(6)] for i, q in enumerate(questions)}
    write_trec_run(d / "dev.trec", run, "dense")
    return {"questions": mini_data["xor_retrieve_dev"], "run": d / "dev.trec", "corpus": corpus,
            "offsets": d / "offsets.npz", "n_questions": len(questions)}


def rerank_cli(files, model, out: Path) -> int:
    import umr.rerank as rerank

    argv = ["--model", str(model), "--run", str(files["run"]), "--questions", str(files["questions"]), "--lang", "ja",
            "--top-k", "5", "--corpus", str(files["corpus"]), "--offsets", str(files["offsets"]),
            "--part-pairs", "4", "--out", str(out)]
    return run_cli(rerank._parser, rerank._main, argv)


def test_reranking_redoes_only_unfinished_parts(rerank_files, tiny_lm, tmp_path, monkeypatch):
    real = Reranker.score
    reference = tmp_path / "reference" / "ja.chunk-0-of-1.trec"
    assert rerank_cli(rerank_files, tiny_lm, reference) == 0
    # Parts hold whole questions (5 pairs each): part_pairs 4 -> one question per part.
    n_parts = rerank_files["n_questions"]
    assert n_parts >= 3

    out = tmp_path / "run" / "ja.chunk-0-of-1.trec"
    calls: list = []
    monkeypatch.setattr(Reranker, "score", counting(real, calls, fail_after=2))
    with pytest.raises(Interruption):
        rerank_cli(rerank_files, tiny_lm, out)
    assert not out.exists() and len(calls) == 2
    assert len([p for p in parts_path(out).iterdir() if p.suffix == ".tsv"]) == 2

    calls.clear()
    monkeypatch.setattr(Reranker, "score", counting(real, calls))
    assert rerank_cli(rerank_files, tiny_lm, out) == 0
    assert len(calls) == n_parts - 2, "only the unfinished parts are scored again"
    assert sum(calls) == 5 * (rerank_files["n_questions"] - 2)
    assert not parts_path(out).exists()
    assert out.read_bytes() == reference.read_bytes()
    assert len(read_trec_run(out)) == rerank_files["n_questions"]
