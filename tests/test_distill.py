"""Stage 2 (distillation): the loss on hand-computed examples, the gradient cache, and
that training never reads answers."""

from __future__ import annotations

import json
import math

import pytest
import torch

from umr.corpus import Corpus
from umr.distill import (IN_BATCH_LOG_PROB, DistillSettings, Distiller, distill, distillation_loss,
                         load_examples, teacher_log_probs)
from umr.encode import DualEncoder
from umr.errors import UMRError
from conftest import write_fixed_reranked_run


def test_kl_matches_a_hand_computed_example():
    # Two questions, two passages each; passage rows 0,1 belong to q0 and 2,3 to q1.
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # tau = 1: probs (3/4, 1/4) and (1/2, 1/2)
    e = math.e
    # With in-batch negatives each student row is softmax([1,0,0,0]) (q1's 1 sits at column 2).
    s_hit, s_other = math.log(e / (e + 3)), math.log(1 / (e + 3))
    kl_q0 = 0.75 * (math.log(0.75) - s_hit) + 0.25 * (math.log(0.25) - s_other)
    kl_q1 = 0.5 * (math.log(0.5) - s_hit) + 0.5 * (math.log(0.5) - s_other)
    expected = (kl_q0 + kl_q1) / 2
    got = distillation_loss(q, p, teacher, temperature=1.0, in_batch_negatives=True)
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # Without in-batch negatives the student softmax runs over the own two passages: softmax([1, 0]).
    o_hit, o_other = math.log(e / (e + 1)), math.log(1 / (e + 1))
    kl_q0 = 0.75 * (math.log(0.75) - o_hit) + 0.25 * (math.log(0.25) - o_other)
    kl_q1 = 0.5 * (math.log(0.5) - o_hit) + 0.5 * (math.log(0.5) - o_other)
    got = distillation_loss(q, p, teacher, temperature=1.0, in_batch_negatives=False)
    assert got.item() == pytest.approx((kl_q0 + kl_q1) / 2, abs=1e-6)


def test_in_batch_negatives_get_zero_teacher_mass():
    scores = torch.randn(3, 4)
    probs = teacher_log_probs(scores, temperature=0.1, in_batch_negatives=True).exp()
    assert probs.shape == (3, 12)
    for i in range(3):
        own = probs[i, i * 4 : (i + 1) * 4]
        assert own.sum().item() == pytest.approx(1.0, abs=1e-6)
        assert probs[i].sum().item() == pytest.approx(1.0, abs=1e-6)
        others = torch.cat([probs[i, : i * 4], probs[i, (i + 1) * 4 :]])
        assert torch.all(others == 0)
    assert IN_BATCH_LOG_PROB <= -1000


def test_lower_temperature_sharpens_the_teacher_towards_the_highest_score():
    scores = torch.tensor([[-2.0, -2.5, -3.0, -4.0]])  # mean log-likelihoods: higher is better
    def top_prob_and_entropy(tau):
        logp = teacher_log_probs(scores, tau, in_batch_negatives=False)
        return logp.exp()[0, 0].item(), -(logp.exp() * logp).sum().item()
    p1, h1 = top_prob_and_entropy(1.0)
    p01, h01 = top_prob_and_entropy(0.1)
    p002, h002 = top_prob_and_entropy(0.02)
    assert p1 < p01 < p002 and h1 > h01 > h002
    assert teacher_log_probs(scores, 0.1, False).argmax().item() == 0  # favours high likelihood


@pytest.fixture(scope="module")
def training_setup(mini_data, tiny_retriever, tmp_path_factory):
    """A reranked training run over the mini benchmark (scores from a fixed rule, not a model)."""
    return write_fixed_reranked_run(mini_data, tmp_path_factory.mktemp("distill"))


SMALL = dict(batch_size=4, passages_per_question=3, epochs=1, learning_rate=1e-3, warmup_steps=1, max_length=64, seed=3)


def _first_step_gradients(mini_data, tiny_retriever, training_setup, grad_cache: bool, dropout: bool):
    questions, run = training_setup
    settings = DistillSettings(**SMALL, grad_cache=grad_cache, query_chunk_size=3, passage_chunk_size=5)
    encoder = DualEncoder.load(str(tiny_retriever), 64)
    examples = load_examples(questions, [run], top_k=6, n=3)
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        needed = sorted({d for ex in examples for d in ex.passages})
        passages = dict(zip(needed, corpus.get_many(needed)))
    distiller = Distiller(encoder, examples, passages, settings, torch.device("cpu"))
    for model in (encoder.query_model, encoder.passage_model):
        model.train(dropout)
    texts, batch_passages, teacher = next(distiller.batches())
    torch.manual_seed(42)
    loss = distiller.step_gradients(texts, batch_passages, teacher)
    return loss, [p.grad.clone() for p in distiller.params if p.grad is not None]


def test_gradient_cache_gives_the_full_batch_gradients(mini_data, tiny_retriever, training_setup):
    full_loss, full = _first_step_gradients(mini_data, tiny_retriever, training_setup, grad_cache=False, dropout=False)
    cached_loss, cached = _first_step_gradients(mini_data, tiny_retriever, training_setup, grad_cache=True, dropout=False)
    assert cached_loss == pytest.approx(full_loss, abs=1e-6)
    assert len(full) == len(cached) > 0
    for f, c in zip(full, cached):
        torch.testing.assert_close(c, f, atol=1e-5, rtol=1e-4)


def test_gradient_cache_replays_dropout_in_the_re_forward(tiny_retriever):
    """With dropout on, each chunk's second forward must draw the masks of its first."""
    from umr.distill import _rng_replay
    from umr.encode import embed, pad_batch

    encoder = DualEncoder.load(str(tiny_retriever), 64)
    encoder.passage_model.train()
    ids, mask = pad_batch(encoder.tokenize_questions(["a b c d", "e f g"]), encoder.tokenizer.pad_token_id)
    with _rng_replay(None) as state, torch.no_grad():
        first = embed(encoder.passage_model, ids, mask)
    embed(encoder.passage_model, ids, mask)  # consumes RNG, as other chunks would
    with _rng_replay(state):
        again = embed(encoder.passage_model, ids, mask)
    torch.testing.assert_close(again.detach(), first, atol=0, rtol=0)
    assert not torch.equal(embed(encoder.passage_model, ids, mask).detach(), first)  # dropout is really on


def test_answers_never_reach_training(mini_data, tiny_retriever, training_setup, tmp_path):
    questions, run = training_setup
    with_answers = mini_data["xor_retrieve_train"]
    stripped = tmp_path / "train.no-answers.jsonl"
    with open(with_answers, encoding="utf-8") as src, open(stripped, "w", encoding="utf-8") as dst:
        for line in src:
            obj = json.loads(line)
            obj.pop("answers")
            dst.write(json.dumps(obj, ensure_ascii=False) + "\n")
    states = []
    for name, path in (("a", with_answers), ("b", stripped)):
        with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
            distill(str(tiny_retriever), path, [run], corpus, DistillSettings(**SMALL), 6, tmp_path / name)
        states.append(DualEncoder.load(str(tmp_path / name)))
    for model in ("query_model", "passage_model"):
        a, b = getattr(states[0], model).state_dict(), getattr(states[1], model).state_dict()
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_too_few_reranked_passages_is_an_error(training_setup):
    questions, run = training_setup
    with pytest.raises(UMRError, match="fewer than passages_per_question"):
        load_examples(questions, [run], top_k=6, n=7)
