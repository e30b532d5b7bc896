"""mGenQ baseline: the contrastive loss on a hand-computed example, seeded generation,
script matching per language, and a short training run that writes a loadable retriever."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch

from umr.baselines import mgenq
from umr.baselines.mgenq import (ContrastiveSettings, ContrastiveTrainer, QuestionGenerator, SamplingSettings,
                                 SeededSampler, contrastive_loss, generate_for_language, generate_questions,
                                 matches_script, read_pairs, sample_rows, script_share)
from umr.baselines.prompts import TEMPLATES, resolve_template, template_for_key, template_key
from umr.config import validate_config
from umr.corpus import Corpus, build_offsets, save_offsets
from umr.distill import distillation_loss
from umr.encode import DualEncoder
from umr.errors import ConfigError, UMRError
from umr.io import run_cli
from umr.lineage import RETRIEVER_NODE, ContrastiveSpec, GenQSpec, Node
from umr.metrics import describe
from umr.plan import evaluations, mgenq_node, planned_reranks


def cli(argv):
    return run_cli(mgenq._parser, mgenq._main, [str(a) for a in argv])


# -- loss ----------------------------------------------------------------------------------------


def test_contrastive_loss_matches_a_hand_computed_example():
    # S = Q·Pᵀ = [[1, 1], [0, 2]]; question i's positive is passage i (the diagonal).
    q = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    # row 0: -log(e^1 / (e^1 + e^1)) = log 2;  row 1: -log(e^2 / (e^0 + e^2)) = log(1 + e^-2)
    expected = (math.log(2.0) + math.log(1.0 + math.exp(-2.0))) / 2
    assert contrastive_loss(q, p).item() == pytest.approx(expected, abs=1e-6)
    # temperature 0.5 doubles the scores: [[2, 2], [0, 4]]
    expected_half = (math.log(2.0) + math.log(1.0 + math.exp(-4.0))) / 2
    assert contrastive_loss(q, p, temperature=0.5).item() == pytest.approx(expected_half, abs=1e-6)
    # the positive is the diagonal: swapping the passages changes the loss
    # row 0: -log(e^1/(e^1+e^1)) = log 2; row 1: -log(e^0/(e^0+e^2)) = log(1 + e^2)
    swapped = (math.log(2.0) + math.log(1.0 + math.exp(2.0))) / 2
    assert contrastive_loss(q, p.flip(0)).item() == pytest.approx(swapped, abs=1e-6)


def test_contrastive_loss_is_the_distillation_loss_with_one_passage_per_question():
    """Why the gradient cache of umr.distill can be reused as is (temperature 1)."""
    torch.manual_seed(0)
    q, p = torch.randn(5, 8), torch.randn(5, 8)
    kl = distillation_loss(q, p, torch.zeros(5, 1), temperature=1.0, in_batch_negatives=True)
    assert kl.item() == pytest.approx(contrastive_loss(q, p).item(), abs=1e-5)


# -- script matching -----------------------------------------------------------------------------

IN_SCRIPT = {
    "ar": "ما هي عاصمة مصر؟",
    "bn": "বাংলাদেশের রাজধানী কোথায়?",
    "fi": "Milloin Helsingin yliopisto perustettiin?",
    "ja": "日本の首都はどこですか？",
    "ko": "대한민국의 수도는 어디인가요?",
    "ru": "Когда родился Пушкин?",
    "te": "భారతదేశ రాజధాని ఏది?",
}


@pytest.mark.parametrize("lang", sorted(IN_SCRIPT))
def test_questions_in_their_languages_script_match(lang):
    assert script_share(IN_SCRIPT[lang], lang) == 1.0
    assert matches_script(IN_SCRIPT[lang], lang)
    for other, text in IN_SCRIPT.items():
        if other != lang and {lang, other} != {"fi", "en"}:
            assert not matches_script(text, lang), (lang, other)


def test_script_share_on_hand_written_mixtures():
    assert script_share("abc где", "ru") == pytest.approx(0.5)  # 3 Cyrillic of 6 letters
    assert not matches_script("abc где", "ru")  # more than half is needed
    assert matches_script("Где Moscow?", "ru") is False  # 3 of 9
    assert script_share("Seoul은 어디?", "ko") == pytest.approx(3 / 8)
    assert script_share("ما هو Cairo؟", "ar") == pytest.approx(4 / 9)
    assert matches_script("Who founded Helsinki?", "fi")  # English passes for fi: script is not language
    assert not matches_script("中国的首都是哪里？", "ja")  # Chinese: CJK without kana
    assert script_share("中国的首都是哪里？", "ja") == 1.0
    assert matches_script("東京タワーは何年に建てられた?", "ja")
    assert matches_script("ক্রিকেট কি?", "bn")  # vowel signs (marks) are ignored, consonants count
    for lang in IN_SCRIPT:
        assert not matches_script("", lang)
        assert not matches_script("1923 ?", lang)  # no letters
        assert script_share("", lang) == 0.0
    with pytest.raises(UMRError, match="'xx': unknown language"):
        script_share("abc", "xx")


def test_question_stats_counts_shares_and_examples():
    qs = [mgenq.GeneratedQuestion(f"genq-ru-{i}", text, "ru", str(i))
          for i, text in enumerate(["Когда родился Пушкин?", "", "When was he born?", "Где?"])]
    stats = mgenq.question_stats(qs, "ru", n_examples=2)
    assert (stats["count"], stats["script_match"], stats["empty"]) == (4, 2, 1)
    assert stats["script_match_share"] == 0.5 and stats["empty_share"] == 0.25
    assert [e["id"] for e in stats["examples"]] == ["genq-ru-0", "genq-ru-1"]


def test_per_language_script_shares_on_a_hand_made_set(tmp_path):
    """ja: 1 of 3 in script (Chinese and English do not count); ko: 2 of 2; the total: 3 of 5."""
    texts = {"ja": ["東京タワーはいつ建てられた?", "中国的首都是哪里？", "When was Tokyo Tower built?"],
             "ko": ["서울은 어디?", "Seoul은 어디에 있나요?"]}
    qs = [mgenq.GeneratedQuestion(f"genq-{lang}-{i}", t, lang, f"p{i}") for lang, ts in texts.items()
          for i, t in enumerate(ts)]
    stats = mgenq.all_stats(qs, ["ja", "ko"])
    assert stats["languages"]["ja"]["script_match"] == 1
    assert stats["languages"]["ja"]["script_match_share"] == pytest.approx(0.3333)
    assert stats["languages"]["ko"]["script_match_share"] == 1.0  # "Seoul은 어디에 있나요": 7 Hangul of 12 letters
    assert (stats["all"]["count"], stats["all"]["script_match"], stats["all"]["script_match_share"]) == (5, 3, 0.6)
    mgenq.write_stats_csv(tmp_path / "s.csv", stats)
    lines = (tmp_path / "s.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(mgenq.STATS_COLUMNS)
    assert lines[1].startswith("ja,3,1,0.3333,0,0.0,") and lines[2].startswith("ko,2,2,1.0,0,0.0,")
    assert lines[3].startswith("all,5,3,0.6,0,0.0,")


# -- sampling and generation ---------------------------------------------------------------------


def test_passage_sample_is_seeded_distinct_and_per_language():
    a = sample_rows(1000, 50, seed=1, lang="ar")
    assert a == sample_rows(1000, 50, seed=1, lang="ar")
    assert len(set(a)) == 50 and all(0 <= r < 1000 for r in a)
    assert a != sample_rows(1000, 50, seed=2, lang="ar")
    assert a != sample_rows(1000, 50, seed=1, lang="bn")
    with pytest.raises(UMRError, match="only 10 passages"):
        sample_rows(10, 11, seed=1, lang="ar")


def test_templates_and_their_tag_keys():
    assert "{language}" in resolve_template("instruction-first")
    custom = "Ask in {language}: {text}"
    assert resolve_template(custom) == custom
    with pytest.raises(UMRError, match="unknown template name"):
        resolve_template("nope")
    with pytest.raises(UMRError, match="placeholders"):
        resolve_template("Ask about {passage}")
    with pytest.raises(UMRError, match="placeholders"):
        resolve_template("Ask about {text}")  # no language
    for name in TEMPLATES:
        assert template_key(name) == name and GenQSpec.PATTERN.fullmatch(GenQSpec("m", name).tag)
    key = template_key(custom)
    assert key.startswith("custom-") and key != template_key(custom + " ") and GenQSpec("m", key).tag
    assert template_for_key(key, custom) == custom
    with pytest.raises(UMRError, match="configured"):
        template_for_key(key, "Other {language} {text}")


def test_seeded_sampler_keeps_the_nucleus_and_is_reproducible():
    # probabilities 0.5, 0.3, 0.2 (token order 2, 0, 1); top_p 0.6 keeps the two most likely tokens
    scores = torch.log(torch.tensor([[0.3, 0.2, 0.5]]))
    draws = []
    for seed in range(400):
        out = SeededSampler([seed], temperature=1.0, top_p=0.6)(None, scores)
        assert torch.isfinite(out).sum() == 1
        draws.append(int(out.argmax()))
    assert set(draws) == {0, 2}
    assert draws.count(2) / len(draws) == pytest.approx(0.5 / 0.8, abs=0.07)
    again = [int(SeededSampler([seed], 1.0, 0.6)(None, scores).argmax()) for seed in range(400)]
    assert again == draws
    # each row has its own generator: a row's draws do not depend on the rows beside it
    rows = SeededSampler([11, 12, 13], 1.0, 1.0)(None, scores.repeat(3, 1)).argmax(dim=1).tolist()
    assert rows[1] == int(SeededSampler([12], 1.0, 1.0)(None, scores).argmax())


@pytest.fixture(scope="module")
def offsets(mini_data, tmp_path_factory):
    path = tmp_path_factory.mktemp("mgenq") / "offsets.npz"
    save_offsets(path, *build_offsets(mini_data["corpus_xor_retrieve"], progress=False))
    return path


def test_generation_is_identical_for_a_seed_and_differs_across_seeds(mini_data, tiny_lm):
    generator = QuestionGenerator(str(tiny_lm), device="cpu")
    sampling = SamplingSettings(max_new_tokens=12, batch_size=4)
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        first = generate_for_language(generator, corpus, "ja", 6, seed=5, sampling=sampling)
        again = generate_for_language(generator, corpus, "ja", 6, seed=5, sampling=sampling)
        other = generate_for_language(generator, corpus, "ja", 6, seed=6, sampling=sampling)
        # every question has its own generator: batching and the other languages change nothing
        mixed = generate_questions(generator, corpus, {"ru": 3, "ja": 6}, seed=5, progress=False,
                                   sampling=SamplingSettings(max_new_tokens=12, batch_size=5))
    assert first == again
    assert [q.id for q in first] == [f"genq-ja-{i}" for i in range(6)]
    assert [q.question for q in first] != [q.question for q in other]
    assert [q.passage_id for q in first] != [q.passage_id for q in other]
    assert [q for q in mixed if q.lang == "ja"] == first
    assert all(q.question for q in first)


def test_a_tiny_nucleus_is_greedy_decoding(mini_data, tiny_lm):
    generator = QuestionGenerator(str(tiny_lm), device="cpu")
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = corpus.by_rows(range(3))
        prompts = [mgenq.render_prompt(TEMPLATES["instruction-first"], p, "ru") for p in passages]
        sampled = generator.generate(prompts, [1, 2, 3], SamplingSettings(max_new_tokens=8, top_p=1e-6), progress=False)
    ids = generator.tokenizer(prompts, return_tensors="pt", padding=True)
    greedy = generator.model.generate(**ids, do_sample=False, num_beams=1, max_new_tokens=8)
    assert sampled == [t.strip() for t in generator.tokenizer.batch_decode(greedy, skip_special_tokens=True)]


def test_generate_cli_is_byte_identical_and_writes_stats(mini_data, tiny_lm, offsets, tmp_path):
    def run(seed, name, batch_size=4):
        argv = ["generate", "--model", tiny_lm, "--corpus", mini_data["corpus_xor_retrieve"], "--offsets", offsets,
                "--languages", "ko", "ru", "--count-from", mini_data["xor_retrieve_train"], "--seed", seed,
                "--max-new-tokens", 10, "--batch-size", batch_size, "--device", "cpu",
                "--out", tmp_path / f"{name}.jsonl", "--stats-out", tmp_path / f"{name}.json",
                "--stats-csv", tmp_path / f"{name}.csv"]
        assert cli(argv) == 0
        return tuple((tmp_path / f"{name}.{ext}").read_bytes() for ext in ("jsonl", "json", "csv"))

    first, again, other = run(1, "a"), run(1, "b", batch_size=3), run(2, "c")
    assert first[0] == again[0] and first[2] == again[2]  # the stats JSON records the batch size
    assert first[0] != other[0]
    records = [json.loads(line) for line in first[0].decode().splitlines()]
    train = [json.loads(line)["lang"] for line in open(mini_data["xor_retrieve_train"], encoding="utf-8")]
    assert [r["lang"] for r in records] == ["ko"] * train.count("ko") + ["ru"] * train.count("ru")
    assert set(records[0]) == {"id", "question", "lang", "passage_id"}
    stats = json.loads(first[1])
    assert stats["languages"]["ko"]["count"] == train.count("ko") > 0
    assert stats["all"]["count"] == len(records) and 0.0 <= stats["all"]["script_match_share"] <= 1.0
    assert stats["languages"]["ko"]["examples"][0] == records[0]
    assert stats["settings"]["seed"] == 1 and "{language}" in stats["settings"]["template"]
    csv_lines = first[2].decode().splitlines()
    assert [line.split(",")[0] for line in csv_lines] == ["lang", "ko", "ru", "all"]
    assert csv_lines[1].split(",")[:4] == ["ko", str(train.count("ko")), str(stats["languages"]["ko"]["script_match"]),
                                           str(stats["languages"]["ko"]["script_match_share"])]


def test_one_line_errors_name_the_culprit(mini_data, tiny_lm, offsets, tmp_path, capsys):
    base = ["--corpus", mini_data["corpus_xor_retrieve"], "--offsets", offsets, "--count", 2,
            "--out", tmp_path / "q.jsonl", "--stats-out", tmp_path / "s.json"]
    assert cli(["generate", "--model", tmp_path / "no-model", "--languages", "ar", *base]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no-model" in err and "not found" in err
    assert cli(["generate", "--model", tiny_lm, "--languages", "ru", "xx", *base]) == 1
    assert "--languages 'xx': unknown language" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert cli(["train", "--student", tmp_path / "none", "--pairs", empty, "--corpus", mini_data["corpus_xor_retrieve"],
                "--offsets", offsets, "--out", tmp_path / "r"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(empty) in err and "empty pairs file" in err
    assert not (tmp_path / "q.jsonl").exists() and not (tmp_path / "r").exists()


# -- training ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_files(mini_data, tmp_path_factory):
    """Hand-made generated pairs over mini-corpus passages, one empty question among them."""
    out = tmp_path_factory.mktemp("pairs")
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = corpus.by_rows(range(12))
    files = []
    for k, lang in enumerate(["fi", "ru"]):
        path = out / f"{lang}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for i, p in enumerate(passages[k * 6 : (k + 1) * 6]):
                question = "" if (lang, i) == ("ru", 3) else f"{p.title} {p.text.split()[0]}?"
                handle.write(json.dumps({"id": f"genq-{lang}-{i}", "question": question, "lang": lang,
                                         "passage_id": p.id}, ensure_ascii=False) + "\n")
        files.append(path)
    return files


def test_read_pairs_skips_empty_questions(pair_files):
    pairs, empty = read_pairs(pair_files)
    assert (len(pairs), empty) == (11, 1)
    assert "genq-ru-3" not in {p.id for p in pairs}


def test_train_writes_a_loadable_retriever(mini_data, tiny_retriever, offsets, pair_files, tmp_path):
    out = tmp_path / "mgenq"
    argv = ["train", "--student", tiny_retriever, "--pairs", *pair_files, "--corpus", mini_data["corpus_xor_retrieve"],
            "--offsets", offsets, "--batch-size", 4, "--epochs", 1, "--learning-rate", 1e-3, "--warmup-steps", 1,
            "--max-length", 64, "--seed", 3, "--device", "cpu", "--out", out]
    assert cli(argv) == 0
    assert (out / "query_encoder" / "config.json").exists() and (out / "passage_encoder" / "config.json").exists()
    meta = json.loads((out / mgenq.SETTINGS_FILE).read_text())
    assert (meta["n_pairs"], meta["n_empty_skipped"], meta["steps"]) == (11, 1, 2)
    assert meta["pairs_per_language"] == {"fi": 6, "ru": 5}
    assert not (tmp_path / "mgenq.checkpoints").exists()
    trained = DualEncoder.load(str(out), 64)
    start = DualEncoder.load(str(tiny_retriever), 64)
    changed = [not torch.equal(a, b) for a, b in zip(trained.query_model.parameters(), start.query_model.parameters())]
    assert any(changed)
    # untied: the two encoders moved apart
    assert any(not torch.equal(a, b) for a, b in zip(trained.query_model.parameters(),
                                                     trained.passage_model.parameters()))


def test_a_batch_larger_than_the_pairs_is_lowered(mini_data, tiny_retriever, offsets, pair_files, tmp_path):
    out = tmp_path / "mgenq"
    argv = ["train", "--student", tiny_retriever, "--pairs", *pair_files, "--corpus", mini_data["corpus_xor_retrieve"],
            "--offsets", offsets, "--batch-size", 64, "--epochs", 1, "--max-length", 32, "--device", "cpu",
            "--out", out]
    assert cli(argv) == 0
    meta = json.loads((out / mgenq.SETTINGS_FILE).read_text())
    assert (meta["batch_size"], meta["requested_batch_size"], meta["steps"]) == (11, 64, 1)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_grad_cache_step_equals_the_plain_step(mini_data, tiny_retriever, pair_files, temperature):
    pairs, _ = read_pairs(pair_files)
    with Corpus(mini_data["corpus_xor_retrieve"]) as corpus:
        passages = {p.id: p for p in corpus.by_rows(range(12))}

    def first_step(grad_cache):
        encoder = DualEncoder.load(str(tiny_retriever), 64)
        settings = ContrastiveSettings(batch_size=5, epochs=1, warmup_steps=1, max_length=64, seed=3,
                                       temperature=temperature, grad_cache=grad_cache, query_chunk_size=2,
                                       passage_chunk_size=3)
        trainer = ContrastiveTrainer(encoder, pairs, passages, settings, torch.device("cpu"))
        for model in (encoder.query_model, encoder.passage_model):
            model.eval()  # no dropout: the two paths draw different masks
        loss = trainer.step_gradients(*next(trainer.batches()))
        return loss, [p.grad.clone() for p in trainer.params if p.grad is not None]

    plain_loss, plain = first_step(False)
    cached_loss, cached = first_step(True)
    assert cached_loss == pytest.approx(plain_loss, abs=1e-5)
    assert len(plain) == len(cached) > 0
    for a, b in zip(plain, cached):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


# -- lineage, plan, metrics ----------------------------------------------------------------------


def test_mgenq_tags_round_trip_and_the_node_sits_in_its_parents_lineage():
    generation = GenQSpec("mt0-xl", "custom-0123abcd", top_p=0.9, temperature=0.7, max_new_tokens=64, seed=3)
    training = ContrastiveSpec(temperature=0.05, batch_size=96, epochs=40, learning_rate=2e-5, warmup_steps=1237)
    assert GenQSpec.parse(generation.tag) == generation and ContrastiveSpec.parse(training.tag) == training
    node = Node("mcontriever").with_genq(generation, training)
    assert node.path == f"mcontriever/{generation.tag}/{training.tag}"
    assert Node.parse(node.path) == node and node.parent == Node("mcontriever") and node.iteration == 0
    assert node.genq_dir() == f"mcontriever/{generation.tag}"
    assert re.fullmatch(RETRIEVER_NODE, node.path)
    assert not re.fullmatch(RETRIEVER_NODE, f"mcontriever/{generation.tag}")
    with pytest.raises(ValueError):
        node.child(None, None)


def test_the_plan_evaluates_mgenq_on_every_task_and_metrics_name_it():
    config = validate_config({})
    node = mgenq_node(config)
    assert node.genq[0].generator == config["umr"]["rerank"]["reranker"]  # the toy default: the mT5 stand-in
    assert {(e.task, e.split) for e in evaluations(config) if e.node == node.path} == {
        (task, "dev") for task in config["umr"]["tasks"]}
    assert not any("genq-" in n for _, n, _ in planned_reranks(config))
    row = describe(node.path, {"mcontriever": "mContriever"}, None, None)
    assert (row["system"], row["variant"], row["iteration"], row["retriever"]) == ("mGenQ", "default", 0, "mcontriever")
    assert (row["generator"], row["batch_size"], row["temperature"]) == ("mt5", 16, 1.0)
    other = Node("mcontriever").with_genq(GenQSpec("mt5", top_p=0.5), node.genq[1])
    assert describe(other.path, {}, None, None, node.genq)["variant"] == "top_p=0.5"
    off = validate_config({"baselines": {"mgenq": {"enabled": False}}})
    assert not any("genq-" in e.node for e in evaluations(off))


@pytest.mark.parametrize("mgenq_config, message", [
    ({"generator": "nope"}, "baselines.mgenq.generator"),
    ({"generator": "mcontriever"}, "baselines.mgenq.generator"),
    ({"template": "nope"}, "baselines.mgenq.template"),
])
def test_bad_mgenq_settings_name_their_key(mgenq_config, message):
    config = validate_config({"baselines": {"mgenq": mgenq_config}})
    with pytest.raises(ConfigError, match=f"config key '{message}'"):
        mgenq_node(config)


def test_paper_config_generates_with_mt0_and_trains_like_mdpr():
    from umr.config import load_config

    config = load_config("config.paper.yaml")
    generation, training = mgenq_node(config).genq
    assert config["models"][generation.generator]["hub"] == "bigscience/mt0-xl"
    assert (training.batch_size, training.epochs, training.learning_rate, training.warmup_steps,
            training.max_grad_norm, training.temperature) == (96, 40, 2e-5, 1237, 2.0, 1.0)
    with pytest.raises(ConfigError, match="models.g"):
        validate_config({"models": {**config["models"], "g": {"kind": "generator", "toy": {}}}})
