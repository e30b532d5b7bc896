"""Bad inputs stop a stage with a one-line message naming the key, file (and line) or directory, exit
non-zero and write no output.

The config matrix is generated from the schema itself: every key gets a value of the wrong type and,
where the schema constrains it, an impossible value (tests/test_config.py has the hand-picked
cases and the cross-key checks; those exact cases are not repeated here). The file cases run the
stages' command lines (`umr.<stage>._main` through `run_cli`, as `python -m umr.<stage>` does; one
case runs the real `python -m`, and one the real `snakemake`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from umr.config import load_config, load_schema
from umr.corpus import build_offsets, save_offsets
from umr.errors import ConfigError
from umr.io import run_cli
from umr.languages import XOR_LANGUAGES
from umr.records import read_questions, write_trec_run

REPO = Path(__file__).resolve().parents[1]
REPO_CONFIG = REPO / "config.yaml"


# -- config: every key, wrong type and impossible value -------------------------------------------
def _wrong_type(schema: dict):
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types:
        return 5
    if "boolean" in types:
        return "yes"
    if "integer" in types or "number" in types:
        return "ten"
    if "array" in types:
        return "ja"
    if "object" in types:
        return "x"
    return None


def _impossible(schema: dict) -> list[tuple[str, object, str]]:
    """(suffix of the key the message must name, value, what is wrong) for each constraint."""
    out = []
    number = schema.get("type") == "number"
    if "minimum" in schema:
        out.append(("", schema["minimum"] - (0.5 if number else 1), "below minimum"))
    if "exclusiveMinimum" in schema:
        out.append(("", schema["exclusiveMinimum"], "at exclusive minimum"))
    if "maximum" in schema:
        out.append(("", schema["maximum"] + (0.5 if number else 1), "above maximum"))
    if "enum" in schema:
        out.append(("", "nope", "not in enum"))
    if "pattern" in schema:
        out.append(("", "../escape", "pattern"))
    if "minLength" in schema:
        out.append(("", "", "empty string"))
    if "minItems" in schema:
        out.append(("", [], "empty list"))
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        item = schema["items"]
        bad_item = _wrong_type(item)
        out.append((".0", [bad_item], "item of wrong type"))
        for suffix, value, why in _impossible(item):
            out.append((".0" + suffix, [value], f"item {why}"))
    return out


# Parent objects whose entries are named by the user: one representative name each.
NAMED_ENTRIES = {"models": "mcontriever", "supervised": "mdpr", "data.sha256": "xor_retrieve/dev.jsonl"}


def _config_cases(node: dict, path: list[str]):
    if "properties" in node:
        if path:
            yield ".".join(path), node, "x", "section of wrong type"
        for key, sub in node["properties"].items():
            yield from _config_cases(sub, path + [key])
        return
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and ".".join(path) in NAMED_ENTRIES:
        yield from _config_cases(extra, path + [NAMED_ENTRIES[".".join(path)]])
        return
    if "oneOf" in node and "type" not in node and "integer" in {alt.get("type") for alt in node["oneOf"]}:
        # umr.rerank.chunks: a number or `auto`
        yield ".".join(path), node, "sometimes", "neither a number nor a choice"
        yield ".".join(path), node, 0, "below minimum"
        return
    if "oneOf" in node and "type" not in node:  # supervised.<name>.<task>.dev: a path or a list of paths
        yield ".".join(path), node, 5, "neither a path nor a list"
        yield ".".join(path), node, [], "empty list"
        return
    wrong = _wrong_type(node)
    if wrong is not None:
        yield ".".join(path), node, wrong, "wrong type"
    for suffix, value, why in _impossible(node):
        yield ".".join(path) + suffix, node, value, why


# Exactly these are in tests/test_config.py already.
IN_TEST_CONFIG = {("umr.distill.temperature", "at exclusive minimum"), ("umr.iterations", "below minimum"),
                  ("umr.iterations", "wrong type"), ("languages.0", "item not in enum"),
                  ("retrieval.shards", "below minimum"), ("umr.distill.in_batch_negatives", "wrong type"),
                  ("umr.rerank.template", "not in enum")}

CONFIG_CASES = []
for _key, _schema, _value, _why in _config_cases(_SCHEMA_FOR_CASES := load_schema(), []):
    if (_key, _why) in IN_TEST_CONFIG:
        continue
    _set = _key.rsplit(".0", 1)[0] if _why.startswith("item") else _key
    CONFIG_CASES.append(pytest.param(_set, _value, _key, id=f"{_key}: {_why}"))
# Values of the right type that name something impossible.
CONFIG_CASES += [
    pytest.param("toy_models.retriever", {"hidden": -1}, "toy_models.retriever.hidden", id="toy_models.retriever.hidden"),
    pytest.param("toy_models.reranker", {"layer": 2}, "toy_models.reranker.layer", id="toy_models.reranker: unknown"),
    pytest.param("models.mcontriever", {"kind": "retriever", "toy": {}, "hub": "facebook/mcontriever"},
                 "models.mcontriever", id="models.mcontriever: hub and toy"),
    pytest.param("models.mcontriever", {"kind": "retriever"}, "models.mcontriever", id="models.mcontriever: neither"),
    pytest.param("models.mt5.kind", "retriever", "umr.rerank.reranker", id="umr.rerank.reranker: a retriever"),
    pytest.param("data.sha256", {"corpus/nope.tsv": "0" * 64}, "data.sha256", id="data.sha256: unknown file"),
    pytest.param("umr.distill.passages_per_question", 80, "umr.distill.passages_per_question",
                 id="umr.distill.passages_per_question > umr.rerank.top_k"),
]


def _set_key(config: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    # data.sha256 keys contain dots ("xor_retrieve/dev.jsonl"): rejoin the file name.
    if parts[:2] == ["data", "sha256"] and len(parts) > 2:
        parts = parts[:2] + [".".join(parts[2:])]
    if parts[:2] == ["data", "urls"] and len(parts) > 2:
        parts = parts[:2] + [".".join(parts[2:])]
    node = config
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)


_SCHEMA = _SCHEMA_FOR_CASES


@pytest.fixture
def cached_schema(monkeypatch):
    """Parse the schema once for the whole matrix (0.4 s a time otherwise)."""
    import umr.config

    monkeypatch.setattr(umr.config, "load_schema", lambda: copy.deepcopy(_SCHEMA))


@pytest.mark.parametrize("key, value, named", CONFIG_CASES)
def test_config_key_with_a_bad_value_is_named(key, value, named, tmp_path, cached_schema):
    config = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    _set_key(config, key, value)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"config key '{named}'"), message


def test_the_config_matrix_covers_every_schema_key():
    """Every leaf key of the schema has at least one case above (or in tests/test_config.py)."""
    keys = {k for k, *_ in _config_cases(_SCHEMA, [])}
    covered = {p.values[2] for p in CONFIG_CASES} | {k for k, _ in IN_TEST_CONFIG}
    leaves = {k for k in keys if not any(other.startswith(k + ".") for other in keys)}
    assert leaves - covered == set()
    assert len(leaves) > 90


@pytest.mark.parametrize("key, value, named", [
    ("umr.distill.checkpoint_every", -1, "umr.distill.checkpoint_every"),
    ("ablations.reranker", ["nope"], "ablations.reranker"),
])
def test_snakemake_stops_on_a_bad_config_before_any_job(key, value, named, tmp_path):
    """The real `snakemake` command: non-zero, the key named on one line, nothing written."""
    config = yaml.safe_load(REPO_CONFIG.read_text(encoding="utf-8"))
    config["dataset"] = "bad"
    _set_key(config, key, value)
    configfile = tmp_path / "bad.yaml"
    configfile.write_text(yaml.safe_dump(config), encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()
    done = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                           str(workdir), "--configfile", str(configfile), "--cores", "1", "--dry-run", "--quiet",
                           "rules"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if f"config key '{named}'" in line]
    assert lines, done.stderr[-3000:]
    assert not (workdir / "results").exists()


# -- stage command lines ------------------------------------------------------------------------
def cli(module: str, *argv) -> tuple[int, str]:
    """Run `python -m umr.<module> argv` in this process; returns (exit status, stderr)."""
    mod = importlib.import_module(f"umr.{module}")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = run_cli(mod._parser, mod._main, [str(a) for a in argv])
    return status, err.getvalue()


def assert_fails(status: int, stderr: str, *must_contain: str) -> str:
    """Non-zero exit and exactly one `error:` line, naming what it must name."""
    assert status != 0
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    for text in must_contain:
        assert text in errors[0], errors[0]
    return errors[0]


def assert_nothing_written(out_dir: Path, keep: tuple[str, ...] = ()) -> None:
    left = sorted(p.name for p in out_dir.iterdir() if p.name not in keep) if out_dir.exists() else []
    assert left == [], f"output left behind: {left}"


@pytest.fixture(scope="module")
def inputs(mini_data, tmp_path_factory) -> dict[str, Path]:
    """Valid inputs of the stages (offsets, a run), next to which each test puts one bad file."""
    d = tmp_path_factory.mktemp("bad-input")
    corpus = mini_data["corpus_xor_retrieve"]
    ids, offsets = build_offsets(corpus, progress=False)
    save_offsets(d / "offsets.npz", ids, offsets)
    ids = [i.decode("utf-8") for i in ids]
    run = {}
    for path in (mini_data["xor_retrieve_dev"], mini_data["xor_retrieve_train"]):
        for i, q in enumerate(read_questions(path)):
            run[q.id] = [(ids[(i * 7 + j) % len(ids)], -float(j) / 3) for j in range(6)]
    write_trec_run(d / "run.trec", run, "rr")
    # Training questions of the two languages the distill commands are configured with.
    train = d / "train.jsonl"
    train.write_text("".join(line + "\n" for line in _lines(mini_data["xor_retrieve_train"])
                             if json.loads(line)["lang"] in ("ja", "ru")), encoding="utf-8")
    return {"corpus": corpus, "offsets": d / "offsets.npz", "run": d / "run.trec", "dev": mini_data["xor_retrieve_dev"],
            "train": train}


def rerank_args(inputs, model, questions, out, lang="ja", run=None):
    return ["--model", model, "--run", run or inputs["run"], "--questions", questions, "--lang", lang, "--top-k", "4",
            "--corpus", inputs["corpus"], "--offsets", inputs["offsets"], "--out", out]


def distill_args(inputs, student, out, questions=None, languages=("ja", "ru")):
    return ["--student", student, "--questions", questions or inputs["train"], "--languages", *languages,
            "--reranked", inputs["run"], "--corpus", inputs["corpus"], "--offsets", inputs["offsets"], "--top-k", "6",
            "--batch-size", "4", "--passages-per-question", "3", "--epochs", "2", "--max-length", "64",
            "--warmup-steps", "1", "--checkpoint-every", "3", "--out", out]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


MALFORMED_JSONL = {
    "truncated JSON": ('{"id": "broken", "question": "Who', "invalid JSON"),
    "not an object": ('["id", "question"]', "each line must be a JSON object"),
    "missing field": ('{"id": "q-nofield", "lang": "ja"}', "missing field 'question'"),
    "empty question": ('{"id": "q-empty", "question": " ", "lang": "ja"}', "field 'question' must be a non-empty string"),
    "duplicate id": (None, "duplicate question id"),
}


@pytest.mark.parametrize("case", MALFORMED_JSONL)
def test_malformed_jsonl_names_file_and_line(case, inputs, tiny_lm, tmp_path):
    lines = _lines(inputs["dev"])
    bad_line, expected = MALFORMED_JSONL[case]
    lines.insert(2, bad_line if bad_line is not None else lines[0])  # line 3
    questions = tmp_path / "dev.jsonl"
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, stderr = cli("rerank", *rerank_args(inputs, tiny_lm, questions, out / "ja.trec"))
    assert_fails(status, stderr, f"{questions}:3: ", expected)
    assert_nothing_written(out)


WRONG_COLUMNS = {
    "corpus TSV, 2 columns": ("corpus", "p-short\tonly text", "expected 3 tab-separated columns (id, text, title), found 2"),
    "corpus TSV, 4 columns": ("corpus", "p-long\ttext\ttitle\textra", "found 4"),
    "TREC run, 5 columns": ("run", "q Q0 p 1 0.5", "TREC run lines have 6 columns, found 5"),
}


@pytest.mark.parametrize("case", WRONG_COLUMNS)
def test_a_row_with_the_wrong_column_count_names_file_and_line(case, inputs, tiny_lm, tmp_path):
    kind, row, expected = WRONG_COLUMNS[case]
    lines = _lines(inputs[kind])
    lines.insert(2, row)  # line 3
    bad = tmp_path / f"bad.{kind}"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    if kind == "corpus":
        status, stderr = cli("corpus", "--tsv", bad, "--out", out / "offsets.npz")
    else:
        status, stderr = cli("rerank", *rerank_args(inputs, tiny_lm, inputs["dev"], out / "ja.trec", run=bad))
    assert_fails(status, stderr, f"{bad}:3: ", expected)
    assert_nothing_written(out)


def test_duplicate_passage_ids_name_file_and_line(inputs, tmp_path):
    lines = _lines(inputs["corpus"])
    duplicate = lines[1].split("\t")[0]
    lines.append(f"{duplicate}\tanother text\tanother title")
    bad = tmp_path / "corpus.tsv"
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    status, stderr = cli("corpus", "--tsv", bad, "--out", out / "offsets.npz")
    assert_fails(status, stderr, f"{bad}:{len(lines)}: ", f"duplicate passage id {duplicate!r}")
    assert_nothing_written(out)


@pytest.mark.parametrize("stage", ["rerank", "distill"])
def test_a_language_with_no_questions_is_an_error(stage, inputs, tiny_lm, tiny_retriever, tmp_path):
    out = tmp_path / "out"
    if stage == "rerank":  # one job per configured language: te has no questions in the file
        no_te = tmp_path / "dev.jsonl"
        no_te.write_text("".join(line + "\n" for line in _lines(inputs["dev"]) if json.loads(line)["lang"] != "te"),
                         encoding="utf-8")
        status, stderr = cli("rerank", *rerank_args(inputs, tiny_lm, no_te, out / "te.trec", lang="te"))
        assert_fails(status, stderr, str(no_te), "no questions in language 'te'")
    else:  # training on the configured languages: one of them has no training questions
        only_ja = tmp_path / "train.jsonl"
        only_ja.write_text("".join(line + "\n" for line in _lines(inputs["train"]) if json.loads(line)["lang"] == "ja"),
                           encoding="utf-8")
        status, stderr = cli("distill", *distill_args(inputs, tiny_retriever, out / "retriever", only_ja))
        assert_fails(status, stderr, str(only_ja), "no training questions in language(s) ru")
    assert_nothing_written(out)


@pytest.mark.parametrize("kind", ["questions JSONL", "corpus TSV"])
def test_non_utf8_bytes_name_file_and_line(kind, inputs, tiny_lm, tmp_path):
    source = inputs["dev"] if kind == "questions JSONL" else inputs["corpus"]
    lines = source.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"\"", b"\xff\"", 1) if kind == "questions JSONL" else b"p-latin1\tcaf\xe9\tt\n"
    bad = tmp_path / source.name
    bad.write_bytes(b"".join(lines))
    out = tmp_path / "out"
    if kind == "questions JSONL":
        status, stderr = cli("rerank", *rerank_args(inputs, tiny_lm, bad, out / "ja.trec"))
    else:
        status, stderr = cli("corpus", "--tsv", bad, "--out", out / "offsets.npz")
    assert_fails(status, stderr, f"{bad}:2: ", "not valid UTF-8")
    assert_nothing_written(out)


@pytest.mark.parametrize("stage", ["encode", "rerank", "distill"])
def test_a_missing_model_directory_is_named(stage, inputs, tmp_path):
    missing = tmp_path / "models" / "nope"
    out = tmp_path / "out"
    if stage == "encode":
        status, stderr = cli("encode", "--retriever", missing, "--corpus", inputs["corpus"], "--offsets",
                             inputs["offsets"], "--out", out / "shard-0-of-1.npy")
    elif stage == "rerank":
        status, stderr = cli("rerank", *rerank_args(inputs, missing, inputs["dev"], out / "ja.trec"))
    else:
        status, stderr = cli("distill", *distill_args(inputs, missing, out / "retriever"))
    assert_fails(status, stderr, str(missing), "not found")
    assert_nothing_written(out)


@pytest.fixture(scope="module")
def real_checkpoint(inputs, tiny_retriever, tmp_path_factory) -> Path:
    """A genuine distillation checkpoint (step 3), kept after training."""
    import umr.distill

    d = tmp_path_factory.mktemp("checkpoint")
    remove = umr.distill.Checkpoints.remove
    umr.distill.Checkpoints.remove = lambda self: None
    try:
        status, stderr = cli("distill", *distill_args(inputs, tiny_retriever, d / "retriever"))
    finally:
        umr.distill.Checkpoints.remove = remove
    assert status == 0, stderr[-3000:]
    return umr.distill.Checkpoints(umr.distill.checkpoint_dir_for(d / "retriever"), "").files()[0]


def test_a_truncated_checkpoint_is_named(inputs, tiny_retriever, real_checkpoint, tmp_path):
    out = tmp_path / "out"
    checkpoints = out / "retriever.checkpoints"
    checkpoints.mkdir(parents=True)
    data = real_checkpoint.read_bytes()
    truncated = checkpoints / real_checkpoint.name
    truncated.write_bytes(data[: len(data) // 2])
    status, stderr = cli("distill", *distill_args(inputs, tiny_retriever, out / "retriever"))
    assert_fails(status, stderr, f"{truncated}: truncated or corrupt distillation checkpoint")
    assert_nothing_written(out, keep=("retriever.checkpoints",))
    assert truncated.read_bytes() == data[: len(data) // 2], "the evidence is left for the user"


def test_truncated_model_weights_are_named(inputs, tiny_retriever, tmp_path):
    model = tmp_path / "retriever"
    shutil.copytree(tiny_retriever, model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "out"
    status, stderr = cli("encode", "--retriever", model, "--corpus", inputs["corpus"], "--offsets", inputs["offsets"],
                         "--out", out / "shard-0-of-1.npy")
    assert_fails(status, stderr, str(model))
    assert_nothing_written(out)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_faiss_index_is_named(damage, inputs, tiny_retriever, tmp_path):
    from umr.index import build_index, write_index

    index = tmp_path / "shard-0-of-1.faiss"
    write_index(build_index(np.random.default_rng(0).random((50, 32), dtype=np.float32)), index)
    data = index.read_bytes()
    index.write_bytes(b"not a faiss index" * 10 if damage == "garbage" else data[: len(data) // 2])
    out = tmp_path / "out"
    status, stderr = cli("retrieve", "--retriever", tiny_retriever, "--questions", inputs["dev"], "--languages",
                         *XOR_LANGUAGES, "--index", index, "--offsets", inputs["offsets"], "--top-k", "5", "--out",
                         out / "dev.trec")
    assert_fails(status, stderr, f"{index}: corrupt or unreadable faiss index")
    assert_nothing_written(out)


def test_an_index_type_that_cannot_be_built_names_the_config_key(tmp_path):
    embeddings = tmp_path / "shard-0-of-1.npy"
    np.save(embeddings, np.random.default_rng(0).random((20, 8), dtype=np.float32))
    out = tmp_path / "out"
    for factory, expected in (("Nope", "could not parse index string"), ("IVF64,Flat", "Number of training points")):
        status, stderr = cli("index", "--embeddings", embeddings, "--factory", factory, "--out", out / "x.faiss")
        assert_fails(status, stderr, f"faiss index {factory!r} (config key retrieval.index)", expected)
    assert_nothing_written(out)


def test_truncated_embeddings_are_named(tmp_path):
    embeddings = tmp_path / "shard-0-of-1.npy"
    np.save(embeddings, np.zeros((20, 8), dtype=np.float32))
    embeddings.write_bytes(embeddings.read_bytes()[:300])
    out = tmp_path / "out"
    status, stderr = cli("index", "--embeddings", embeddings, "--out", out / "x.faiss")
    assert_fails(status, stderr, f"{embeddings}: unreadable embeddings")
    assert_nothing_written(out)


def test_the_real_command_line_exits_non_zero_with_one_line(inputs, tmp_path):
    """`python -m umr.corpus` itself (the stages share run_cli): status 1, one stderr line, no output."""
    bad = tmp_path / "corpus.tsv"
    bad.write_text("id\ttext\ttitle\np1\tsome text\n", encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "umr.corpus", "--tsv", str(bad), "--out", str(out / "offsets.npz")],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 1
    # (before it, at most a progress bar)
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"error: {bad}:2: expected 3 tab-separated columns (id, text, title), found 2"], done.stderr
    assert_nothing_written(out)
