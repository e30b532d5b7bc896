"""Mixed precision (umr.precision): the resolver's choices, bf16 encoding close to fp32, training
steps in every precision the CPU runs, the loss scale in checkpoints, and fp32 (the default on a
CPU) bit-identical to the code path before the setting existed."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from conftest import write_fixed_reranked_run
import umr.precision
from umr.corpus import Corpus
from umr.distill import Checkpoints, DistillSettings, Distiller, load_examples
from umr.encode import DualEncoder, encode_corpus_shard, encode_ids, encode_questions, mean_pool, pad_batch
from umr.errors import UMRError
from umr.precision import Precision, cpu_autocast_supports, resolve_precision
from umr.records import read_questions

CPU_FP16 = cpu_autocast_supports(torch.float16)


@pytest.fixture
def fresh_log(monkeypatch):
    """Each test sees the resolver's log lines anew (they are logged once per process)."""
    monkeypatch.setattr(umr.precision, "_LOGGED", set())


@pytest.fixture
def fake_gpu(monkeypatch, fresh_log):
    """A CUDA device of a chosen compute capability, without a GPU (TF32 flags recorded, not set)."""
    tf32 = []
    monkeypatch.setattr(umr.precision, "allow_tf32", lambda: tf32.append(True))

    def with_capability(major: int, minor: int = 0) -> list:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))
        return tf32

    return with_capability


# -- the resolver -------------------------------------------------------------------------------
@pytest.mark.parametrize("requested, capability, fp16_safe, expected", [
    # auto: fp32 on CPU, bf16 from Ampere on, fp16 below it, unless the model overflows in fp16
    ("auto", None, True, "fp32"),
    ("auto", None, False, "fp32"),
    ("auto", (7, 0), True, "fp16"),   # V100, training and encoding
    ("auto", (7, 5), True, "fp16"),   # T4
    ("auto", (7, 0), False, "fp32"),  # V100, reranker and question generator (mT5/mT0)
    ("auto", (8, 0), True, "bf16"),   # A100
    ("auto", (8, 0), False, "bf16"),
    ("auto", (9, 0), True, "bf16"),   # H100
    # explicit settings are taken as they are
    ("fp32", (8, 0), True, "fp32"),
    ("fp16", (8, 0), True, "fp16"),
    ("bf16", None, True, "bf16"),     # CPU autocast runs bf16 (the CPU rehearsal)
    ("bf16", None, False, "bf16"),
    ("fp32", None, True, "fp32"),
])
def test_resolver_table(fake_gpu, requested, capability, fp16_safe, expected):
    if capability is None:
        device = torch.device("cpu")
    else:
        fake_gpu(*capability)
        device = torch.device("cuda")
    got = resolve_precision(requested, device, fp16_safe=fp16_safe)
    assert got == Precision(expected, requested, device.type)
    assert got.dtype == {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[expected]


def test_the_choice_is_logged_once_with_its_reason(fake_gpu, caplog):
    caplog.set_level(logging.INFO, logger="umr")
    tf32 = fake_gpu(8, 0)
    for _ in range(3):
        resolve_precision("auto", torch.device("cuda"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("precision:")]
    assert lines == ["precision: bf16 autocast (requested auto; cuda device capability 8.0)"]
    assert tf32, "TF32 allowed for the fp32 matmuls on CUDA"
    resolve_precision("auto", torch.device("cpu"))
    assert "precision: fp32 (requested auto; cpu)" in caplog.text
    fake_gpu(7, 0)
    resolve_precision("auto", torch.device("cuda"), fp16_safe=False, what="reranker dtype", how="weights")
    assert "reranker dtype: fp32 (requested auto; cuda device capability 7.0)" in caplog.text


def test_bf16_on_a_gpu_without_native_bf16_is_allowed_with_a_warning(fake_gpu, caplog):
    fake_gpu(7, 0)
    assert resolve_precision("bf16", torch.device("cuda")).name == "bf16"
    assert any(r.levelno == logging.WARNING and "emulated" in r.getMessage() for r in caplog.records)


def test_settings_that_cannot_run_are_one_line_errors(fresh_log, monkeypatch):
    with pytest.raises(UMRError, match="unknown precision 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(UMRError, match="reranker dtype fp16: .*overflows"):
        resolve_precision("fp16", torch.device("cpu"), fp16_safe=False, what="reranker dtype", how="weights")
    # A torch whose CPU autocast lacks fp16 (before 2.4) silently disables autocast: refused instead.
    monkeypatch.setattr(umr.precision, "cpu_autocast_supports", lambda dtype: False)
    with pytest.raises(UMRError, match="precision fp16: this torch's CPU autocast does not support fp16"):
        resolve_precision("fp16", torch.device("cpu"))


def test_only_fp16_gets_a_real_loss_scale(fresh_log):
    cpu = torch.device("cpu")
    for name in ("fp32", "bf16"):
        scaler = resolve_precision(name, cpu).grad_scaler()
        assert not scaler.is_enabled() and scaler.state_dict() == {}
        loss = torch.tensor(2.0)
        assert scaler.scale(loss) is loss
    if CPU_FP16:
        assert resolve_precision("fp16", cpu).grad_scaler().is_enabled()


def test_a_resolved_precision_passes_through(fresh_log):
    resolved = resolve_precision("bf16", torch.device("cpu"))
    assert resolve_precision(resolved, torch.device("cpu")) is resolved


# -- encoding -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def passages_and_questions(mini_data):
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = corpus.by_rows(range(len(corpus)))
    questions = [q.text for split in ("xor_retrieve_train", "xor_retrieve_dev", "xor_full_dev")
                 for q in read_questions(mini_data[split])]
    return passages, questions


def _old_encode_ids(model, ids, pad_id, batch_size):
    """`encode_ids` as it was before mixed precision: no autocast, pooling in the states' own type."""
    model.eval()
    order = np.argsort([len(x) for x in ids], kind="stable")
    out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            input_ids, mask = pad_batch([ids[r] for r in rows], pad_id)
            hidden = model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            out[rows] = mean_pool(hidden, mask).float().cpu().numpy()
    return out


def test_default_on_cpu_is_bit_identical_to_the_code_before(tiny_retriever, passages_and_questions, fresh_log):
    passages, questions = passages_and_questions
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    ids = encoder.tokenize_passages(passages)
    before = _old_encode_ids(encoder.passage_model, ids, encoder.tokenizer.pad_token_id, 16)
    for precision in ("auto", "fp32"):
        now = encode_ids(encoder.passage_model, ids, encoder.tokenizer.pad_token_id, 16, progress=False,
                         precision=precision)
        assert now.dtype == np.float32 and np.array_equal(now, before)
    q_before = _old_encode_ids(encoder.query_model, encoder.tokenize_questions(questions),
                               encoder.tokenizer.pad_token_id, 128)
    assert np.array_equal(encode_questions(encoder, questions), q_before)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_bf16_embeddings_are_close_to_fp32_and_retrieve_the_same_passages(tiny_retriever, passages_and_questions,
                                                                          fresh_log):
    passages, questions = passages_and_questions
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    ids = encoder.tokenize_passages(passages)
    pad = encoder.tokenizer.pad_token_id
    p32 = encode_ids(encoder.passage_model, ids, pad, 16, progress=False, precision="fp32")
    p16 = encode_ids(encoder.passage_model, ids, pad, 16, progress=False, precision="bf16")
    q32 = encode_questions(encoder, questions, precision="fp32")
    q16 = encode_questions(encoder, questions, precision="bf16")
    assert p16.dtype == q16.dtype == np.float32, "fp32 embeddings whatever the compute precision"
    assert not np.array_equal(p16, p32), "bf16 autocast really ran"
    assert _cosines(p16, p32).min() >= 0.999 and _cosines(q16, q32).min() >= 0.999
    top32 = np.argsort(-(q32 @ p32.T), axis=1, kind="stable")[:, :10]
    top16 = np.argsort(-(q16 @ p16.T), axis=1, kind="stable")[:, :10]
    assert len(questions) >= 10 and len(passages) >= 50
    for row32, row16 in zip(top32, top16):
        assert set(row32) == set(row16)


def test_corpus_shard_in_bf16_is_stored_in_the_requested_type(tiny_retriever, mini_data, tmp_path, fresh_log, caplog):
    caplog.set_level(logging.INFO, logger="umr")
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        encode_corpus_shard(encoder, corpus, 0, 2, tmp_path / "a.npy", batch_size=8, precision="bf16")
        encode_corpus_shard(encoder, corpus, 0, 2, tmp_path / "b.npy", batch_size=8, fp16=True, precision="bf16")
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.dtype == np.float32 and b.dtype == np.float16
    np.testing.assert_array_equal(a.astype(np.float16), b)
    assert "precision: bf16 autocast (requested bf16; cpu)" in caplog.text


def test_command_lines_take_a_precision():
    from umr.baselines import mgenq
    from umr import distill, encode, retrieve

    common = ["--corpus", "c", "--offsets", "o", "--out", "x"]
    assert encode._parser().parse_args(["--retriever", "r", *common]).precision == "auto"
    assert encode._parser().parse_args(["--retriever", "r", *common, "--precision", "bf16"]).precision == "bf16"
    args = retrieve._parser().parse_args(["--retriever", "r", "--questions", "q", "--languages", "ja", "--index", "i",
                                          "--offsets", "o", "--out", "x", "--precision", "fp16"])
    assert args.precision == "fp16"
    args = distill._parser().parse_args(["--student", "s", "--questions", "q", "--reranked", "r", "--top-k", "3",
                                         *common, "--precision", "fp32"])
    assert args.precision == "fp32"
    args = mgenq._parser().parse_args(["train", "--student", "s", "--pairs", "p", *common, "--precision", "bf16"])
    assert args.precision == "bf16"
    with pytest.raises(SystemExit):
        encode._parser().parse_args(["--retriever", "r", *common, "--precision", "fp8"])


# -- training -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def training_data(mini_data, tmp_path_factory):
    questions, path = write_fixed_reranked_run(mini_data, tmp_path_factory.mktemp("precision"))
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        examples = load_examples(questions, [path], top_k=6, n=3)
        needed = sorted({d for ex in examples for d in ex.passages})
        passages = dict(zip(needed, corpus.get_many(needed)))
    return examples, passages


SMALL = dict(batch_size=4, passages_per_question=3, epochs=1, learning_rate=1e-3, warmup_steps=1, max_length=64, seed=3)
CPU_PRECISIONS = ["fp32", "bf16", pytest.param("fp16", marks=pytest.mark.skipif(
    not CPU_FP16, reason="this torch's CPU autocast has no fp16"))]


def _distiller(tiny_retriever, training_data, precision, **settings):
    examples, passages = training_data
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    # One batch of questions: one step per epoch; no warmup, whose first step has learning rate 0.
    return Distiller(encoder, examples[: SMALL["batch_size"]], passages,
                     DistillSettings(**SMALL | {"warmup_steps": 0} | settings), torch.device("cpu"), precision)


@pytest.mark.parametrize("grad_cache", [False, True])
@pytest.mark.parametrize("precision", CPU_PRECISIONS)
def test_a_training_step_in_each_cpu_precision_updates_fp32_weights(tiny_retriever, training_data, precision,
                                                                    grad_cache, fresh_log):
    distiller = _distiller(tiny_retriever, training_data, precision, grad_cache=grad_cache, query_chunk_size=3,
                           passage_chunk_size=5)
    assert distiller.total_steps == 1
    before = [p.detach().clone() for p in distiller.params]
    losses = distiller.train()
    assert len(losses) == 1 and np.isfinite(losses[0]) and losses[0] > 0
    assert all(p.dtype == torch.float32 for p in distiller.params), "master weights stay fp32"
    changed = sum(not torch.equal(a, p.detach()) for a, p in zip(before, distiller.params))
    assert changed > len(before) // 2, "the optimizer stepped (fp16: the first scale did not overflow)"


def test_gradient_cache_matches_the_full_batch_under_bf16(tiny_retriever, training_data, fresh_log):
    """Both forwards of a chunk run under the same autocast: the cache gives the full batch's gradients."""
    grads = []
    for grad_cache in (False, True):
        distiller = _distiller(tiny_retriever, training_data, "bf16", grad_cache=grad_cache, query_chunk_size=3,
                               passage_chunk_size=5)
        for model in (distiller.encoder.query_model, distiller.encoder.passage_model):
            model.eval()  # no dropout: the two paths see the same network
        texts, batch_passages, teacher = next(distiller.batches())
        loss = distiller.step_gradients(texts, batch_passages, teacher)
        grads.append((loss, [p.grad.clone() for p in distiller.params if p.grad is not None]))
    (full_loss, full), (cached_loss, cached) = grads
    assert cached_loss == pytest.approx(full_loss, rel=1e-3)
    assert len(full) == len(cached) > 0
    for f, c in zip(full, cached):
        torch.testing.assert_close(c, f, atol=1e-3, rtol=5e-2)


@pytest.mark.skipif(not CPU_FP16, reason="this torch's CPU autocast has no fp16 (the loss scale needs it)")
def test_the_loss_scale_is_checkpointed_and_restored(tiny_retriever, training_data, tmp_path, fresh_log):
    distiller = _distiller(tiny_retriever, training_data, "fp16")
    distiller.train()
    distiller.scaler.update(1024.0)  # a scale other than the initial 65536, as after overflows
    distiller.scaler._growth_tracker.fill_(7)
    saved_scaler = distiller.scaler.state_dict()
    assert saved_scaler["scale"] == 1024.0 and saved_scaler["_growth_tracker"] == 7
    checkpoints = Checkpoints(tmp_path / "checkpoints", "key")
    path = checkpoints.save(distiller)
    state = checkpoints.load(path)  # weights_only: the scaler's state is plain numbers
    assert state["scaler"] == saved_scaler
    fresh = _distiller(tiny_retriever, training_data, "fp16")
    assert fresh.scaler.get_scale() == 65536.0
    fresh.load_state(state)
    assert fresh.scaler.state_dict() == saved_scaler
    assert fresh.step == distiller.step


def test_checkpoints_from_before_mixed_precision_still_load(tiny_retriever, training_data, tmp_path, fresh_log):
    distiller = _distiller(tiny_retriever, training_data, "auto")
    distiller.train()
    state = distiller.state()
    assert state["scaler"] == {}  # fp32: nothing to scale
    del state["scaler"]  # what a checkpoint written before this setting holds
    fresh = _distiller(tiny_retriever, training_data, "auto")
    fresh.load_state(state)
    assert fresh.step == 1 and fresh.scaler.state_dict() == {}


@pytest.mark.parametrize("grad_cache", [False, True])
def test_mgenq_contrastive_training_runs_under_bf16_autocast(tiny_retriever, training_data, grad_cache, fresh_log):
    from umr.baselines.mgenq import ContrastiveSettings, ContrastiveTrainer, GeneratedQuestion

    examples, passages = training_data
    pairs = [GeneratedQuestion(f"genq-{i}", ex.question.text, ex.question.lang, ex.passages[0])
             for i, ex in enumerate(examples[:4])]
    settings = ContrastiveSettings(batch_size=4, epochs=1, learning_rate=1e-3, warmup_steps=0, max_length=64,
                                   grad_cache=grad_cache, query_chunk_size=3, passage_chunk_size=3)
    trainer = ContrastiveTrainer(DualEncoder.load(str(tiny_retriever), 64), pairs, passages, settings,
                                 torch.device("cpu"), "bf16")
    assert trainer.precision.name == "bf16" and not trainer.scaler.is_enabled()
    before = [p.detach().clone() for p in trainer.params]
    losses = trainer.train()
    assert len(losses) == 1 and np.isfinite(losses[0])
    assert all(p.dtype == torch.float32 for p in trainer.params)
    assert sum(not torch.equal(a, p.detach()) for a, p in zip(before, trainer.params)) > len(before) // 2
