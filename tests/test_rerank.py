"""Stage 1 (reranking): batched scores equal a one-pair-at-a-time reference."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from umr.corpus import Corpus
from umr.errors import UMRError
from umr.records import Question, read_questions, write_trec_run
from umr.rerank import TEMPLATES, Reranker, load_cache, rerank_run


@pytest.fixture(scope="module")
def pairs(mini_data):
    questions = read_questions(mini_data["xor_retrieve_dev"])
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = corpus.by_rows(range(12))
    rng = random.Random(0)
    return [(rng.choice(questions), p) for p in passages for _ in range(2)]


def reference_scores(reranker: Reranker, pairs) -> np.ndarray:
    """One pair at a time, unpadded, scored by the model's own loss (mean token NLL)."""
    out = []
    for q, p in pairs:
        enc = reranker.tokenizer(reranker.encoder_text(p, q.lang), return_tensors="pt", truncation=True, max_length=512)
        labels = reranker.tokenizer(reranker.label_text(q), return_tensors="pt", truncation=True, max_length=128).input_ids
        with torch.no_grad():
            loss = reranker.model(**enc, labels=labels).loss.item()
        out.append(-loss if reranker.aggregation == "mean" else -loss * labels.shape[1])
    return np.array(out)


@pytest.mark.parametrize("aggregation", ["mean", "sum"])
def test_batched_scores_equal_one_pair_at_a_time(tiny_lm, pairs, aggregation):
    reranker = Reranker(str(tiny_lm), aggregation=aggregation, batch_tokens=4096)
    batched = reranker.score(pairs, progress=False)
    np.testing.assert_allclose(batched, reference_scores(reranker, pairs), atol=1e-4, rtol=0)


def test_scores_do_not_depend_on_batch_composition_or_order(tiny_lm, pairs):
    reranker = Reranker(str(tiny_lm), batch_tokens=100_000)
    all_at_once = reranker.score(pairs, progress=False)
    shuffled = list(range(len(pairs)))
    random.Random(1).shuffle(shuffled)
    small_batches = Reranker(str(tiny_lm), batch_tokens=300)
    reordered = small_batches.score([pairs[i] for i in shuffled], progress=False)
    np.testing.assert_allclose(reordered, all_at_once[shuffled], atol=1e-4, rtol=0)


def test_official_template_is_the_official_codes_format():
    reranker = Reranker.__new__(Reranker)
    reranker.template = TEMPLATES["official"]
    from umr.records import Passage

    text = reranker.encoder_text(Passage("1", "Title", "Some text"), "ja")
    assert text == "Passage:  Title Some text. Please write a question based on this passage in Japanese."
    assert reranker.label_text(Question("q", "何ですか", "ja")) == "Question: 何ですか"


def test_rerank_run_sorts_by_lm_score_and_reuses_cached_pairs(tiny_lm, mini_data, tmp_path):
    questions = read_questions(mini_data["xor_retrieve_dev"])[:2]
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        ids = [p.id for p in corpus.by_rows(range(6))]
        run = {q.id: [(d, 0.0) for d in ids] for q in questions}
        reranker = Reranker(str(tiny_lm))
        reranked = rerank_run(reranker, questions, run, corpus, top_k=4)
        for ranked in reranked.values():
            assert len(ranked) == 4 and {d for d, _ in ranked} == set(ids[:4])
            assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
        write_trec_run(tmp_path / "cache.trec", reranked, "rr")
        cache = load_cache([tmp_path / "cache.trec"])
        # A cached score is used as is: poison one and it must come back unchanged.
        key = next(iter(cache))
        cache[key] = 123.0
        again = rerank_run(reranker, questions, run, corpus, top_k=4, cache=cache)
        assert dict(again[key[0]])[key[1]] == 123.0
        others = {(q, d): s for q, r in again.items() for d, s in r if (q, d) != key}
        assert others == pytest.approx({(q, d): s for q, r in reranked.items() for d, s in r if (q, d) != key}, abs=1e-6)


def test_non_finite_scores_fail_loudly(tiny_lm, pairs, monkeypatch):
    reranker = Reranker(str(tiny_lm))
    monkeypatch.setattr(reranker, "score_batch", lambda s, l: np.full(len(s), np.nan))
    with pytest.raises(UMRError, match="non-finite"):
        reranker.score(pairs[:3], progress=False)


def test_missing_model_directory_is_a_one_line_error(tmp_path):
    with pytest.raises(UMRError, match="reranker directory not found"):
        Reranker(str(tmp_path / "nope"))


def stock_scores(model_dir, reranker: Reranker, pairs) -> np.ndarray:
    """`reference_scores` with the unmodified Hugging Face model (no `optimise_for_inference`)."""
    from transformers import AutoModelForSeq2SeqLM

    stock = Reranker.__new__(Reranker)
    stock.__dict__.update(reranker.__dict__)
    stock.model = AutoModelForSeq2SeqLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    return reference_scores(stock, pairs)


@pytest.mark.parametrize("batch_tokens", [300, 100_000])
def test_optimised_model_scores_equal_the_stock_model(tiny_lm, pairs, batch_tokens):
    reranker = Reranker(str(tiny_lm), batch_tokens=batch_tokens)
    np.testing.assert_allclose(reranker.score(pairs, progress=False), stock_scores(tiny_lm, reranker, pairs),
                               atol=1e-5, rtol=0)


def test_packed_cross_attention_equals_one_encoder_state_per_row(tiny_lm):
    """SharedSources: distinct inputs of several lengths, each read by 1-3 rows, as the stock decoder sees them."""
    from transformers import AutoModelForSeq2SeqLM

    from umr.fastlm import SharedSources

    stock = AutoModelForSeq2SeqLM.from_pretrained(str(tiny_lm), dtype=torch.float32).eval()
    fast = Reranker(str(tiny_lm)).model
    gen = torch.Generator().manual_seed(0)
    lengths, counts = [5, 5, 5, 9, 9, 14], [1, 1, 3, 2, 2, 1]
    states = [torch.randn(n, stock.config.d_model, generator=gen) for n in lengths]
    labels = torch.randint(0, stock.config.vocab_size, (sum(counts), 7), generator=gen)
    with torch.inference_mode():
        got = fast.get_decoder()(input_ids=labels, encoder_hidden_states=torch.cat(states)[None], use_cache=False,
                                 shared_sources=SharedSources(lengths, counts)).last_hidden_state
        row = 0
        for state, n in zip(states, counts):
            want = stock.get_decoder()(input_ids=labels[row : row + n], encoder_hidden_states=state.expand(n, -1, -1),
                                       use_cache=False).last_hidden_state
            torch.testing.assert_close(got[row : row + n], want, atol=1e-5, rtol=0)
            row += n


@pytest.mark.parametrize("rows", [1, 63, 64, 1000, 1025, 2500])
def test_onednn_linear_equals_linear(rows):
    from umr.fastlm import OneDNNLinear, _onednn_linear_available

    if not _onednn_linear_available():
        pytest.skip("no oneDNN in this torch build")
    linear = torch.nn.Linear(48, 40, bias=False)
    x = torch.randn(rows, 3, 48)
    with torch.inference_mode():
        torch.testing.assert_close(OneDNNLinear(linear)(x), linear(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(OneDNNLinear(linear, "gelu_tanh")(x),
                                   torch.nn.functional.gelu(linear(x), approximate="tanh"), atol=1e-5, rtol=0)


def test_one_job_for_several_languages_writes_what_one_job_each_would(tiny_lm, mini_data, tmp_path):
    """umr.rerank.group_languages: `--lang ja ru --out a b` equals two single-language jobs, byte for byte."""
    from umr.corpus import build_offsets, save_offsets
    from umr.io import run_cli
    import umr.rerank as rerank

    questions = read_questions(mini_data["xor_retrieve_dev"])
    assert {"ja", "ru"} <= {q.lang for q in questions}
    ids, offsets = build_offsets(mini_data["corpus_xor_retrieve"], progress=False)
    save_offsets(tmp_path / "offsets.npz", ids, offsets)
    ids = [i.decode("utf-8") for i in ids]
    run = {q.id: [(ids[(i * 3 + j) % len(ids)], 1.0 - j / 10) for j in range(5)] for i, q in enumerate(questions)}
    write_trec_run(tmp_path / "dev.trec", run, "dense")

    def cli(langs, outs):
        return run_cli(rerank._parser, rerank._main,
                       ["--model", str(tiny_lm), "--run", str(tmp_path / "dev.trec"), "--questions",
                        str(mini_data["xor_retrieve_dev"]), "--top-k", "4", "--corpus",
                        str(mini_data["corpus_xor_retrieve"]), "--offsets", str(tmp_path / "offsets.npz"),
                        "--lang", *langs, "--out", *map(str, outs)])

    together = [tmp_path / "together" / f"{lang}.trec" for lang in ("ja", "ru")]
    assert cli(["ja", "ru"], together) == 0
    for lang, grouped in zip(("ja", "ru"), together):
        alone = tmp_path / "alone" / f"{lang}.trec"
        assert cli([lang], [alone]) == 0
        assert grouped.read_bytes() == alone.read_bytes()
        assert {q.id for q in questions if q.lang == lang} == set(rerank.read_trec_run(grouped))
    assert cli(["ja", "ru"], together[:1]) == 1  # one --out per --lang
