"""The hub checkpoints' real formats, end to end: a hub-layout cache -> fetch_model -> the pipeline's loaders.

The toy models of the other tests are `save_pretrained` directories (tokenizer.json,
safetensors). mContriever, mT5-XL-LM-adapt and mT0-XL ship older formats: BERT's
`vocab.txt`, a sentencepiece `spiece.model`, pickled `pytorch_model.bin` weights, a BERT
without pooler weights. `umr.rehearsal.hub` writes tiny random models in exactly those
formats into a Hugging Face cache; here they are fetched with `--hub-cache` and loaded by
`DualEncoder.load`, `Reranker` (bf16 and fp32) and mGenQ's `QuestionGenerator`.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from umr import download
from umr.baselines.mgenq import QuestionGenerator, SamplingSettings
from umr.encode import DualEncoder, encode_ids, load_pretrained
from umr.errors import UMRError
from umr.records import Passage, Question, read_questions
from umr.rehearsal.hub import STAND_INS, build_hub_cache
from umr.rerank import Reranker

RETRIEVER, RERANKER, GENERATOR = "facebook/mcontriever", "chaoweihuang/mt5-xl-lm-adapt", "bigscience/mt0-xl"
LOADED = re.compile(r"loaded (?P<what>[\w ]+) (?P<path>\S+): tokenizer (?P<tokenizer>\w+) from (?P<files>[^;]+); "
                    r"model (?P<model>\w+) (?P<dtype>\w+) from (?P<weights>\S+)$")


@pytest.fixture(scope="module")
def hub_cache(mini_texts, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    cache = tmp_path_factory.mktemp("hf") / "hub"
    return cache, build_hub_cache(mini_texts, cache, seed=3)


@pytest.fixture(scope="module")
def fetched(hub_cache, tmp_path_factory) -> dict[str, Path]:
    cache, _ = hub_cache
    root = tmp_path_factory.mktemp("fetched")
    return {repo: download.fetch_model(repo, root / repo.split("/")[1], "main", hub_cache=cache) for repo in STAND_INS}


@pytest.fixture(scope="module")
def questions(mini_data) -> list[Question]:
    return read_questions(mini_data["xor_retrieve_train"]) + read_questions(mini_data["xor_full_train"])


def loaded_lines(caplog) -> list[dict[str, str]]:
    return [m.groupdict() for r in caplog.records if r.name == "umr" and (m := LOADED.match(r.getMessage()))]


# -- the stand-ins and the cache ---------------------------------------------------------------
def test_cache_is_in_hub_layout_deterministic_and_in_the_old_formats(hub_cache, mini_texts, tmp_path):
    from huggingface_hub import snapshot_download

    cache, commits = hub_cache
    assert set(commits) == set(STAND_INS) and all(re.fullmatch(r"[0-9a-f]{40}", c) for c in commits.values())
    for repo, commit in commits.items():
        folder = cache / f"models--{repo.replace('/', '--')}"
        assert (folder / "refs" / "main").read_text() == commit
        files = {p.name: p for p in (folder / "snapshots" / commit).iterdir()}
        assert all(p.is_symlink() and p.resolve().parent == (folder / "blobs").resolve() for p in files.values())
        assert "pytorch_model.bin" in files and "tokenizer.json" not in files
        assert not any(name.endswith(".safetensors") for name in files)
        assert ("vocab.txt" if repo == RETRIEVER else "spiece.model") in files
        # huggingface_hub itself reads the cache offline, as an offline cluster's would be read
        assert Path(snapshot_download(repo, cache_dir=cache, local_files_only=True)) == folder / "snapshots" / commit
    bert = torch.load(cache / f"models--facebook--mcontriever/snapshots/{commits[RETRIEVER]}/pytorch_model.bin",
                      weights_only=True)
    assert not any(k.startswith("pooler.") for k in bert), "mContriever's checkpoint has no pooler weights"
    # the same texts and seed give the same bytes
    again = build_hub_cache(mini_texts, tmp_path / "again", seed=3)
    assert again == commits
    for repo, commit in commits.items():
        for blob in (cache / f"models--{repo.replace('/', '--')}" / "blobs").iterdir():
            assert (tmp_path / "again" / blob.relative_to(cache)).read_bytes() == blob.read_bytes()


def test_fetched_from_the_hub_cache_without_tokenizer_json(fetched, hub_cache):
    import json

    _, commits = hub_cache
    for repo, out in fetched.items():
        assert not list(out.rglob("tokenizer.json")) and not list(out.rglob("*.safetensors"))
        source = json.loads((out / "UMR_SOURCE.json").read_text())
        assert source["commit"] == commits[repo] and source["source"].startswith("hub-cache:")


# -- the pipeline's loaders ----------------------------------------------------------------------
def test_retriever_from_vocab_txt_and_pooler_less_bin(fetched, questions, mini_texts, caplog):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    path = fetched[RETRIEVER]
    with caplog.at_level(logging.INFO, logger="umr"):
        encoder = DualEncoder.load(str(path))
    lines = loaded_lines(caplog)
    assert lines and lines[0] == {"what": "model", "path": str(path), "tokenizer": "BertTokenizer",
                                  "files": "vocab.txt (no tokenizer.json)", "model": "BertModel", "dtype": "float32",
                                  "weights": "pytorch_model.bin"}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "no pooler (or other) weight complaint"
    assert encoder.query_model.pooler is None and encoder.query_model is not encoder.passage_model
    # the fast tokenizer converted from vocab.txt tokenizes as BERT's own WordPiece (cased, as mBERT)
    reference = BertTokenizerLegacy(str(path / "vocab.txt"), do_lower_case=False)
    texts = [q.text for q in questions[::3]] + [f"{title} {text}" for title, text in mini_texts[::40]]
    assert [encoder.tokenizer(t)["input_ids"] for t in texts] == [reference(t)["input_ids"] for t in texts]
    title, text = mini_texts[0]
    assert encoder.tokenizer(title, text)["input_ids"] == reference(title, text)["input_ids"]
    vectors = encode_ids(encoder.query_model, encoder.tokenize_questions(texts[:8]), encoder.tokenizer.pad_token_id,
                         progress=False)
    assert vectors.shape == (8, 64) and np.isfinite(vectors).all() and np.abs(vectors).sum() > 0


def test_retriever_saved_by_distillation_reloads_alike(fetched, questions, tmp_path):
    """Iteration 2 starts from what iteration 1 saved: the converted tokenizer stays cased, the weights equal."""
    first = DualEncoder.load(str(fetched[RETRIEVER]))
    first.save(tmp_path / "student")
    again = DualEncoder.load(str(tmp_path / "student"))
    texts = [q.text for q in questions[::5]] + ["HELLO Hello hello", "Ünïcödé café"]
    assert [again.tokenizer(t)["input_ids"] for t in texts] == [first.tokenizer(t)["input_ids"] for t in texts]
    before, after = first.passage_model.state_dict(), again.passage_model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_spiece_tokenizer_matches_sentencepiece(fetched, questions, mini_texts):
    import sentencepiece as spm

    for repo in (RERANKER, GENERATOR):
        _, tokenizer = load_pretrained(str(fetched[repo]), "reranker", dtype=torch.float32)
        assert type(tokenizer).__name__ == "T5Tokenizer"
        sp = spm.SentencePieceProcessor(model_file=str(fetched[repo] / "spiece.model"))
        texts = [q.text for q in questions[::3]] + [f"{title} {text}" for title, text in mini_texts[::40]]
        assert len({q.lang for q in questions[::3]}) == 7
        for text in texts:
            assert tokenizer(text)["input_ids"] == sp.encode(text) + [sp.eos_id()], text
        # mT5's sentinels are the last pieces of spiece.model, <extra_id_0> last
        assert tokenizer.convert_tokens_to_ids("<extra_id_0>") == sp.get_piece_size() - 1 == len(tokenizer) - 1
        assert tokenizer.pad_token_id == 0 and tokenizer.eos_token_id == 1 and tokenizer.unk_token_id == 2


@pytest.fixture(scope="module")
def pairs(questions, mini_data) -> list[tuple[Question, Passage]]:
    from umr.records import iter_dpr_tsv

    passages = list(iter_dpr_tsv(mini_data["corpus_xor_retrieve"]))[:3]
    return [(q, p) for q in questions[:2] for p in passages]


def test_reranker_bf16_on_cpu_agrees_with_fp32(fetched, pairs, caplog):
    path = fetched[RERANKER]
    with caplog.at_level(logging.INFO, logger="umr"):
        bf16 = Reranker(str(path), dtype="bf16")
        fp32 = Reranker(str(path), dtype="fp32")
    lines = loaded_lines(caplog)
    assert [(x["what"], x["tokenizer"], x["files"], x["model"], x["dtype"], x["weights"]) for x in lines] == [
        ("reranker", "T5Tokenizer", "spiece.model (no tokenizer.json)", "MT5ForConditionalGeneration", dtype,
         "pytorch_model.bin") for dtype in ("bfloat16", "float32")]
    assert "reranker computes in bfloat16 on cpu" in caplog.text
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    low, high = bf16.score(pairs, progress=False), fp32.score(pairs, progress=False)
    assert np.isfinite(low).all() and np.isfinite(high).all()
    # bf16 keeps 8 significant bits (unit roundoff 2^-8 = 0.4%); a score is a mean of fp32 log-softmaxes
    # over bf16 logits, so its relative error is a few roundoffs at most (~0.05% measured): 2% is ~5 roundoffs.
    np.testing.assert_allclose(low, high, rtol=0.02)
    # An easy case: the pairs whose fp32 scores lie more than 0.05 apart (>> the bf16 error), ranked alike by bf16.
    order = np.argsort(-high)
    easy = order[np.r_[True, -np.diff(high[order]) > 0.05]]
    assert len(easy) >= 3, (high, low)
    assert list(np.argsort(-low[easy])) == list(range(len(easy)))


def test_question_generator_bf16_on_cpu(fetched, caplog):
    with caplog.at_level(logging.INFO, logger="umr"):
        generator = QuestionGenerator(str(fetched[GENERATOR]), dtype="bf16")
    line = loaded_lines(caplog)[0]
    assert (line["what"], line["tokenizer"], line["dtype"], line["weights"]) == (
        "question generator", "T5Tokenizer", "bfloat16", "pytorch_model.bin")
    assert "question generator computes in bfloat16 on cpu" in caplog.text
    out = generator.generate(["Passage: Marie Curie was born in Warsaw. Write a question in Finnish.", "Passage: x"],
                             [1, 2], SamplingSettings(max_new_tokens=4, batch_size=2), progress=False)
    assert len(out) == 2 and all(isinstance(q, str) for q in out)


# -- bad checkpoints: one line naming the model and what is wrong ------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_model_without_any_tokenizer_file_is_named(fetched, tmp_path):
    model = _copy(fetched[RETRIEVER], tmp_path / "retriever")
    (model / "vocab.txt").unlink()
    with pytest.raises(UMRError, match=rf"^{re.escape(str(model))}: cannot load model: no tokenizer file "
                                       r"\(none of tokenizer.json, spiece.model, sentencepiece.bpe.model, vocab.txt"):
        DualEncoder.load(str(model))


def test_an_unreadable_spiece_model_is_named(fetched, tmp_path):
    model = _copy(fetched[RERANKER], tmp_path / "reranker")
    (model / "spiece.model").write_bytes((model / "spiece.model").read_bytes()[:1000])
    with pytest.raises(UMRError, match=rf"^{re.escape(str(model))}: cannot load reranker: spiece.model is not a valid "
                                       "sentencepiece model"):
        Reranker(str(model))


def test_spiece_without_protobuf_is_named(fetched, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "google.protobuf", None)  # as if not installed
    with pytest.raises(UMRError, match="cannot load question generator: its tokenizer is a sentencepiece spiece.model "
                                       r"\(no tokenizer.json\), and converting it .* needs the protobuf package"):
        QuestionGenerator(str(fetched[GENERATOR]))


def test_truncated_bin_weights_are_named(fetched, tmp_path):
    model = _copy(fetched[RETRIEVER], tmp_path / "retriever")
    weights = model / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UMRError, match=rf"^{re.escape(str(model))}: cannot load model \("):
        DualEncoder.load(str(model))


def test_missing_weights_other_than_the_pooler_are_reported(fetched, tmp_path, caplog):
    model = _copy(fetched[RETRIEVER], tmp_path / "retriever")
    state = torch.load(model / "pytorch_model.bin", weights_only=True)
    del state["encoder.layer.1.output.dense.weight"]
    torch.save(state, model / "pytorch_model.bin")
    with caplog.at_level(logging.INFO, logger="umr"):
        load_pretrained(str(model))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "umr"]
    assert len(warnings) == 1 and "encoder.layer.1.output.dense.weight" in warnings[0], warnings
    assert "missing from the checkpoint" in warnings[0] and "pooler" not in warnings[0]


def test_a_hub_cache_without_the_snapshot_leaves_nothing(hub_cache, tmp_path):
    cache, _ = hub_cache
    out = tmp_path / "mcontriever"
    with pytest.raises(UMRError, match=f"facebook/mcontriever@{'a' * 40} in hub cache {re.escape(str(cache))}: "
                                       "no snapshot"):
        download.fetch_model(RETRIEVER, out, "a" * 40, hub_cache=cache)
    assert not out.exists() and not out.with_name("mcontriever.part").exists()


def test_vocab_txt_has_one_line_per_embedding_row(fetched):
    """A vocab.txt piece holding a newline once made the tokenizer 2 tokens longer than the model."""
    import json

    path = fetched[RETRIEVER]
    lines = (path / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == json.loads((path / "config.json").read_text())["vocab_size"]


def test_a_tokenizer_larger_than_the_embeddings_is_named(fetched, tmp_path):
    model = _copy(fetched[RETRIEVER], tmp_path / "retriever")
    with open(model / "vocab.txt", "a", encoding="utf-8") as handle:
        handle.write("zzextra1\nzzextra2\n")
    with pytest.raises(UMRError, match=r"tokenizer has \d+ tokens but the model's embedding matrix only \d+ rows"):
        DualEncoder.load(str(model))
