"""umr.rehearsal.data: the toy in the published formats reads back unchanged; the server resumes."""

from __future__ import annotations

import csv
import json
import logging
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from umr import toy
from umr.corpus import Corpus
from umr.download import download_file
from umr.records import iter_dpr_tsv, read_gold, read_questions
from umr.rehearsal.data import EXTRA_ENGLISH, EXTRA_MULTILINGUAL, PUBLISHED_NAMES, serve, write_published

from conftest import REPO


@pytest.fixture(scope="module")
def published(mini_data, tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    toy_dir = mini_data["xor_retrieve_train"].parents[1]
    return toy_dir, write_published(toy_dir, tmp_path_factory.mktemp("published"))


def test_published_names_are_the_schema_defaults():
    schema = yaml.safe_load((REPO / "umr" / "resources" / "config.schema.yaml").read_text(encoding="utf-8"))
    urls = schema["properties"]["data"]["properties"]["urls"]["properties"]
    assert PUBLISHED_NAMES == {key: spec["default"].rsplit("/", 1)[1] for key, spec in urls.items()}


def test_questions_read_back(published):
    toy_dir, files = published
    assert set(files) == set(PUBLISHED_NAMES)
    toy_files = toy.data_files(toy_dir)
    for task in ("xor_retrieve", "xor_full"):
        for split in ("train", "dev"):
            path = files[f"{task}/{split}.jsonl"]
            assert path.name == PUBLISHED_NAMES[f"{task}/{split}.jsonl"]
            assert read_gold(path) == read_gold(toy_files[f"{task}_{split}"])
            first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
            assert list(first) == ["id", "question", "answers", "lang", "split"] and first["split"] == split
            assert isinstance(first["id"], str) and isinstance(first["answers"], list)
        test = files[f"{task}/test.jsonl"]
        assert read_questions(test) == read_questions(toy_files[f"{task}_dev"])
        assert all(list(json.loads(line)) == ["id", "question", "lang", "split"]
                   for line in test.read_text(encoding="utf-8").splitlines())


@pytest.mark.parametrize("task, extras, header", [("xor_retrieve", EXTRA_ENGLISH, True),
                                                   ("xor_full", EXTRA_MULTILINGUAL, False)])
def test_corpora_read_back(published, task, extras, header):
    toy_dir, files = published
    path = files[f"corpus/{task}.tsv"]
    toy_passages = list(iter_dpr_tsv(toy.data_files(toy_dir)[f"corpus_{task}"]))
    got = list(iter_dpr_tsv(path))
    assert got[:len(toy_passages)] == toy_passages  # the toy's rows, ids and order unchanged
    added = got[len(toy_passages):]
    assert [(p.title, p.text) for p in added] == list(extras)
    assert all(p.id.isdigit() for p in added) and not {p.id for p in added} & {p.id for p in toy_passages}
    assert path.read_text(encoding="utf-8").startswith("id\ttext\ttitle\n") == header
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows == ([["id", "text", "title"]] if header else []) + [[p.id, p.text, p.title] for p in got]
    raw = path.read_text(encoding="utf-8")
    assert '\t"""Weird Al"" Yankovic"\n' in raw  # DPR's quoting of a title with quotes
    if not header:
        assert '\t"Tab\tin a title"\n' in raw
    with Corpus(path) as corpus:
        assert corpus.get_many([p.id for p in reversed(added)]) == list(reversed(added))


def test_deterministic(published, tmp_path):
    toy_dir, files = published
    again = write_published(toy_dir, tmp_path)
    assert {k: p.read_bytes() for k, p in again.items()} == {k: p.read_bytes() for k, p in files.items()}


def test_download_and_resume_from_the_server(published, tmp_path, caplog):
    _, files = published
    source = files["corpus/xor_full.tsv"]
    data = source.read_bytes()
    caplog.set_level(logging.DEBUG, logger="umr.rehearsal.data")
    with serve(source.parent) as base_url:
        url = f"{base_url}/{source.name}"
        got = download_file(url, tmp_path / "whole.tsv", attempts=1)
        assert (tmp_path / "whole.tsv").read_bytes() == data and got.size == len(data)

        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD")) as head:
            etag, last_modified = head.headers["ETag"], head.headers["Last-Modified"]
        assert etag and not etag.startswith("W/") and last_modified
        out = tmp_path / "resumed.tsv"
        part, meta = out.with_name(out.name + ".part"), out.with_name(out.name + ".part.json")
        cut = len(data) // 3
        part.write_bytes(data[:cut])
        meta.write_text(json.dumps({"url": url, "etag": etag, "last_modified": last_modified}))
        caplog.clear()
        download_file(url, out, attempts=1)
        assert out.read_bytes() == data and not part.exists() and not meta.exists()
        assert any("-> 206" in r.getMessage() and f"bytes={cut}-" in r.getMessage() for r in caplog.records)

        # a part saved from another version of the file (If-Range fails): the whole file again
        part.write_bytes(b"X" * cut)
        meta.write_text(json.dumps({"url": url, "etag": '"stale"', "last_modified": None}))
        caplog.clear()
        download_file(url, out, attempts=1)
        assert out.read_bytes() == data
        assert any("-> 200" in r.getMessage() and "If-Range: \"stale\"" in r.getMessage() for r in caplog.records)

        # a complete part: the server answers 416 and the part is kept as it is
        part.write_bytes(data)
        meta.write_text(json.dumps({"url": url, "etag": etag, "last_modified": last_modified}))
        download_file(url, out, attempts=1)
        assert out.read_bytes() == data


def test_server_answers_ranges(published):
    _, files = published
    source = files["xor_retrieve/dev.jsonl"]
    data = source.read_bytes()
    with serve(source.parent) as base_url:
        url = f"{base_url}/{source.name}"
        for rng, body in (("bytes=5-9", data[5:10]), ("bytes=-4", data[-4:]), (f"bytes=3-{len(data) + 10}", data[3:])):
            with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": rng})) as response:
                assert response.status == 206 and response.read() == body
                assert response.headers["Content-Range"].endswith(f"/{len(data)}")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(data)}-"}))
        assert err.value.code == 416 and err.value.headers["Content-Range"] == f"bytes */{len(data)}"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{base_url}/missing.tsv")
        assert err.value.code == 404


def test_a_port_in_use_is_one_line(tmp_path):
    import socket

    from umr.errors import UMRError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UMRError, match=rf"cannot serve the rehearsal's files on 127\.0\.0\.1:{port} .*--port"):
            with serve(tmp_path, port=port):
                pass
