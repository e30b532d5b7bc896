"""The official code's training behaviours as settings (docs/deviations.md rows 1, 3 and 4):
`grad_scale` (the grad-cache step's 1/8), `strip_question_mark` (normalize_question) and
`keep: best_val_rank` (the unsupervised average-rank validation that picks the epoch kept)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

import umr.distill
from umr.corpus import Corpus
from umr.distill import (DistillSettings, Distiller, RankValidation, distill, load_examples, split_validation,
                         strip_question_mark)
from umr.encode import DualEncoder
from umr.errors import UMRError
from umr.io import Interrupted
from umr.lineage import DistillSpec
from umr.records import Passage, Question
from conftest import write_fixed_reranked_run
from test_resume import _signal_at_step, assert_same_weights, distill_files  # noqa: F401 (fixture)

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(batch_size=4, passages_per_question=3, epochs=1, learning_rate=1e-3, warmup_steps=1, max_length=64,
             seed=3)
PAPER_TAG = "kd-t0.1_b16_n16_ibn_e10_lr2e-05_w1237_g2_s12345"


# -- the kd- tag --------------------------------------------------------------------------------------
def test_the_defaults_keep_the_tag_and_every_switch_round_trips():
    assert DistillSpec().tag == PAPER_TAG  # paths of runs made before the switches keep their names
    official = DistillSpec(grad_scale=0.125, strip_question_mark=True, keep="best_val_rank", val_questions=1000,
                           val_hard_negatives=30)
    assert official.tag == PAPER_TAG + "_gs0.125_sq_best-v1000-h30"
    assert DistillSpec.parse(official.tag) == official
    negated = DistillSpec(grad_scale=0.5, negate_teacher=True)
    assert negated.tag == PAPER_TAG + "_gs0.5_neg" and DistillSpec.parse(negated.tag) == negated
    with pytest.raises(ValueError, match="keep must be one of final, best_val_rank"):
        DistillSpec(keep="best")


# -- grad_scale -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def training(mini_data, tiny_retriever, tmp_path_factory):
    questions, run = write_fixed_reranked_run(mini_data, tmp_path_factory.mktemp("official"))
    examples = load_examples(questions, [run], top_k=6, n=3)
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        needed = sorted({d for ex in examples for d in ex.passages})
        passages = dict(zip(needed, corpus.get_many(needed)))
    return examples, passages, run


def _distiller(tiny_retriever, training, **settings) -> Distiller:
    examples, passages, _ = training
    torch.manual_seed(0)
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    return Distiller(encoder, examples, passages, DistillSettings(**SMALL | settings), torch.device("cpu"))


def _gradients(distiller: Distiller) -> list[torch.Tensor]:
    for model in (distiller.encoder.query_model, distiller.encoder.passage_model):
        model.eval()  # no dropout: the two runs must see the same forward
    distiller.step_gradients(*next(distiller.batches()))
    return [p.grad.clone() for p in distiller.params if p.grad is not None]


@pytest.mark.parametrize("grad_cache", [False, True])
def test_grad_scale_multiplies_every_gradient(tiny_retriever, training, grad_cache):
    chunks = dict(grad_cache=grad_cache, query_chunk_size=3, passage_chunk_size=5)
    plain = _gradients(_distiller(tiny_retriever, training, **chunks))
    scaled = _gradients(_distiller(tiny_retriever, training, grad_scale=0.125, **chunks))
    assert len(plain) == len(scaled) > 0
    for p, s in zip(plain, scaled):
        torch.testing.assert_close(s, p * 0.125, atol=1e-9, rtol=1e-5)


class _Stop(Exception):
    pass


def _first_update_gradients(tiny_retriever, training, **settings) -> torch.Tensor:
    """The gradients the optimizer receives at the first step (after scaling and clipping), as one vector."""
    distiller = _distiller(tiny_retriever, training, **settings)
    for model in (distiller.encoder.query_model, distiller.encoder.passage_model):
        model.eval()
        model.train = lambda *a: model  # keep dropout off: the runs must see the same forward

    def capture(*args, **kwargs):
        raise _Stop(torch.cat([p.grad.flatten().clone() for p in distiller.params if p.grad is not None]))

    distiller.optimizer.step = capture
    with pytest.raises(_Stop) as stopped:
        distiller.train()
    return stopped.value.args[0]


def test_the_official_scale_clips_the_true_gradient_eight_times_looser(tiny_retriever, training):
    """(scale 1/8, clip c) hands AdamW exactly 1/8 of what (scale 1, clip 8c) hands it, and AdamW is
    invariant to a constant gradient scale (up to its eps): the official `--max_grad_norm 2.0` is a
    clip at 16 on the true gradient. With the same clip and a binding norm, the step differs."""
    true_norm = _first_update_gradients(tiny_retriever, training, max_grad_norm=1e9).norm().item()
    clip = true_norm / 4  # binds for the true gradient, not for an eighth of it
    official = _first_update_gradients(tiny_retriever, training, grad_scale=0.125, max_grad_norm=clip)
    looser = _first_update_gradients(tiny_retriever, training, max_grad_norm=8 * clip)
    ours = _first_update_gradients(tiny_retriever, training, max_grad_norm=clip)
    torch.testing.assert_close(official * 8, looser, atol=1e-9, rtol=1e-5)
    assert official.norm().item() == pytest.approx(true_norm / 8, rel=1e-5)  # not clipped
    assert ours.norm().item() == pytest.approx(clip, rel=1e-5)  # clipped
    assert not torch.allclose(official * 8, ours, rtol=1e-3)


# -- strip_question_mark ----------------------------------------------------------------------------------
def test_only_one_trailing_ascii_question_mark_is_stripped():
    questions = [Question("1", "Who wrote it?", "en"), Question("2", "誰が書いた？", "ja"),
                 Question("3", "من كتبها؟", "ar"), Question("4", "Really??", "en"), Question("5", "No mark", "fi")]
    assert [q.text for q in strip_question_mark(questions)] == [
        "Who wrote it", "誰が書いた？", "من كتبها؟", "Really?", "No mark"]
    assert questions[0].text == "Who wrote it?"  # records are not changed in place


def test_the_question_mark_is_stripped_for_training_only(mini_data, tiny_retriever, training, tmp_path, monkeypatch):
    """Training batches see stripped questions; the questions file (which retrieval and reranking read) keeps them."""
    from umr.records import read_questions

    _, _, run = training
    seen: dict[bool, list[str]] = {}
    real = Distiller.step_gradients

    def spy(self, texts, *args):
        seen.setdefault(self.s.strip_question_mark, []).extend(texts)
        return real(self, texts, *args)

    monkeypatch.setattr(Distiller, "step_gradients", spy)
    for strip in (False, True):
        with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
            distill(str(tiny_retriever), mini_data["xor_retrieve_train"], [run], corpus,
                    DistillSettings(**SMALL, strip_question_mark=strip), 6, tmp_path / f"strip-{strip}")
    written = read_questions(mini_data["xor_retrieve_train"])
    assert any(q.text.endswith("?") for q in written), "the toy's questions end in '?'"
    assert any(t.endswith("?") for t in seen[False])
    assert seen[True] == [t[:-1] if t.endswith("?") else t for t in seen[False]]
    settings = json.loads((tmp_path / "strip-True" / "distill_settings.json").read_text())
    assert settings["strip_question_mark"] is True


# -- keep: best_val_rank ---------------------------------------------------------------------------------
def test_average_rank_by_hand(monkeypatch):
    """Two held-out questions, pool of 2 x (1 + 1) passages; ranks counted by hand from fixed vectors."""
    def ex(qid, pids):
        return umr.distill.TrainingExample(Question(qid, qid, "en"), pids, [0.0] * len(pids))

    passages = {p: Passage(p, p, p) for p in "abcdx"}
    validation = RankValidation([ex("q1", ["a", "b", "x"]), ex("q2", ["c", "d", "x"])], passages, hard_negatives=1)
    assert [p.id for p in validation.pool] == ["a", "b", "c", "d"] and validation.positive == [0, 2]
    vectors = {"q1": [1.0, 0.0], "q2": [0.0, 1.0],
               # q1 scores the pool (a, b, c, d) as (2, 3, 0, 1): its positive a is second -> rank 1
               # q2 scores it as (0, 1, 5, 5): its positive c ties with d -> rank 0 (ties count for it)
               "a": [2.0, 0.0], "b": [3.0, 1.0], "c": [0.0, 5.0], "d": [1.0, 5.0]}

    class Encoder:
        tokenizer = type("T", (), {"pad_token_id": 0})()
        query_model = passage_model = None

        def tokenize_questions(self, texts):
            return list(texts)

        def tokenize_passages(self, pool):
            return [p.id for p in pool]

    import numpy as np

    monkeypatch.setattr(umr.distill, "encode_ids",
                        lambda model, ids, *a, **k: np.array([vectors[i] for i in ids], dtype=np.float32))
    assert validation.average_rank(Encoder(), None) == pytest.approx(0.5)


def test_held_out_questions_are_seeded_and_never_trained_on(training):
    examples, _, _ = training
    train, held = split_validation(examples, 5, seed=3)
    again, held_again = split_validation(examples, 5, seed=3)
    assert [e.question.id for e in held] == [e.question.id for e in held_again] and len(held) == 5
    assert not {e.question.id for e in train} & {e.question.id for e in held}
    assert len(train) + len(held) == len(examples)
    with pytest.raises(UMRError, match="validation.questions 42 leaves no training questions"):
        split_validation(examples, len(examples), seed=3)


BEST = dict(keep="best_val_rank", val_questions=6, val_hard_negatives=2, epochs=3)


def test_the_epoch_with_the_lowest_rank_is_kept_without_reading_an_answer(mini_data, tiny_retriever, training,
                                                                           tmp_path, monkeypatch):
    """Ranks 5, 2, 4 -> epoch 2's weights are saved; an answer-less questions file trains the same."""
    _, _, run = training
    epoch_weights = []
    real = Distiller.validate_epoch

    def scripted(self):
        epoch_weights.append({k: v.clone() for k, v in self.encoder.query_model.state_dict().items()})
        monkeypatch.setattr(RankValidation, "average_rank", lambda *a, **k: [5.0, 2.0, 4.0][len(self.val_ranks)])
        real(self)

    monkeypatch.setattr(Distiller, "validate_epoch", scripted)
    stripped = tmp_path / "train.no-answers.jsonl"
    with open(mini_data["xor_retrieve_train"], encoding="utf-8") as src, open(stripped, "w", encoding="utf-8") as dst:
        for line in src:
            obj = json.loads(line)
            obj.pop("answers")
            dst.write(json.dumps(obj, ensure_ascii=False) + "\n")
    for name, questions in (("with-answers", mini_data["xor_retrieve_train"]), ("no-answers", stripped)):
        with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
            distill(str(tiny_retriever), questions, [run], corpus, DistillSettings(**SMALL | BEST), 6, tmp_path / name)
    saved = DualEncoder.load(str(tmp_path / "with-answers")).query_model.state_dict()
    assert all(torch.equal(saved[k], epoch_weights[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], epoch_weights[2][k]) for k in saved)
    meta = json.loads((tmp_path / "with-answers" / "distill_settings.json").read_text())
    assert meta["kept_epoch"] == 2 and meta["validation_average_rank"] == [5.0, 2.0, 4.0]
    assert_same_weights(tmp_path / "with-answers", tmp_path / "no-answers")


def test_best_val_rank_resumes_with_its_best_epoch(distill_files, tmp_path, monkeypatch):
    """Stopped in epoch 3 after validations of epochs 1-2: the resumed run keeps what an uninterrupted one keeps."""
    out, checkpoints = tmp_path / "retriever", tmp_path / "checkpoints"
    settings = DistillSettings(**SMALL | BEST)
    with Corpus(distill_files["corpus"], distill_files["offsets"]) as corpus:
        args = (str(distill_files["student"]), distill_files["questions"], [distill_files["reranked"]], corpus,
                settings, 6)
        with monkeypatch.context() as m:
            _signal_at_step(m, signal.SIGTERM, at_step=20)  # 36 training questions / 4 = 9 steps per epoch
            with pytest.raises(Interrupted):
                distill(*args, out, checkpoint_every=0, checkpoint_dir=checkpoints)
        state = torch.load(next(checkpoints.glob("step-*.pt")), weights_only=True)
        assert len(state["validation"]["ranks"]) == 2 and state["validation"]["best"]["epoch"] in (1, 2)
        distill(*args, out, checkpoint_every=0, checkpoint_dir=checkpoints)
        distill(*args, tmp_path / "plain")
    assert_same_weights(out, tmp_path / "plain")


# -- the paper's rows by default, the extras behind one switch each -----------------------------------------
def _paper(**overrides) -> dict:
    from umr.config import load_config

    return load_config(REPO / "config.paper.yaml", overrides)


def _rows(config: dict) -> dict[str, set[str]]:
    from umr.metrics import describe
    from umr.plan import main_evaluations

    display = {name: m.get("display", name) for name, m in config["models"].items()}
    rows: dict[str, set[str]] = {}
    for e in main_evaluations(config):
        d = describe(e.node, display, None, None)
        rows.setdefault(e.task, set()).add(f"{d['system']} {d['iteration']}")
    return rows


def test_the_paper_configuration_plans_exactly_the_papers_rows():
    rows = _rows(_paper())
    # Table 3 (+ BM25, a CPU reference row) and Table 7
    assert rows["xor_retrieve"] == {"mGenQ 0", "BM25 0", "mContriever 0", "mContriever + rerank 0", "UMR 1",
                                    "UMR 2", "UMR + rerank 2"}
    assert rows["xor_full"] == {"mContriever 0", "mContriever + rerank 0", "UMR 1", "UMR 2"}


@pytest.mark.parametrize("overrides, added", [
    ({"umr": {"rerank": {"last_iteration_tasks": None}}}, "UMR + rerank 2"),
    ({"baselines": {"bm25": {"tasks": None}}}, "BM25 0"),
    ({"baselines": {"mgenq": {"tasks": ["xor_retrieve", "xor_full"]}}}, "mGenQ 0"),
])
def test_each_extra_row_is_one_switch(overrides, added):
    before, after = _rows(_paper()), _rows(_paper(**overrides))
    assert after["xor_retrieve"] == before["xor_retrieve"]
    assert after["xor_full"] == before["xor_full"] | {added}


def test_mgenq_on_xor_full_generates_as_many_questions_as_xor_retrieve_train_has():
    from umr.cost import CostModel

    both = {"baselines": {"mgenq": {"tasks": None}}}
    paper = CostModel(_paper(**both))
    own = CostModel(_paper(baselines={"mgenq": {"tasks": None, "count_from": "task"}}))
    assert paper._genq_count("xor_full") == paper._genq_count("xor_retrieve") == 15250
    assert own._genq_count("xor_full") == 61360


def test_a_switch_naming_a_task_that_is_not_run_is_a_config_error():
    from umr.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config key 'baselines.bm25.tasks': xor_full not in umr.tasks"):
        _paper(umr={"tasks": ["xor_retrieve"]}, baselines={"bm25": {"tasks": ["xor_full"]}})
