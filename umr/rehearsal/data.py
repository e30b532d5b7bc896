"""The rehearsal's data: the toy benchmark rewritten in the published formats, served over HTTP.

The pipeline reads the real files (SPEC §2) through the same readers as the toy's, so a
rehearsal is only worth something if its files look like the published ones byte for
byte in format. What the official code shows about them:

- XOR-TyDi QA JSONL (`xor_*_retrieve_eng_span*.jsonl`, `xor_*_full*.jsonl`): one object per
  line, `id` (a string holding a signed 64-bit TyDi example id), `question`, `answers`
  (list of strings), `lang`, `split` (huggingface/datasets `datasets/xor_tydi_qa/README.md`;
  AkariAsai/XORQA `evals/eval_xor_engspan.py` concatenates ids to strings). The `q_only`
  test files carry no `answers`.
- `enwiki_20190201_w100.tsv` (XOR-Retrieve): DPR's `psgs_w100.tsv` format, header row
  `id text title`, read with `csv.reader(delimiter="\\t")` (facebookresearch/DPR
  `dpr/data/retriever_data.py`; AkariAsai/CORA `mDPR/dense_retriever.py` load_passages):
  a field holding a quote or a tab is quoted, its quotes doubled.
- `all_w100.tsv` (XOR-Full, CORA): `csv.writer(f, delimiter='\\t', lineterminator='\\n')`
  rows `[id (int), text, title]`, no header (AkariAsai/CORA
  `wikipedia_preprocess/build_dpr_w100_data.py`).

The toy has no quotes, tabs or integer-only XOR-Full ids, so each corpus gets a few extra
passages at its end that exercise the quoting (doubled quotes in a title, a text that is
nothing but a quoted word, a tab inside a CORA title) and non-Latin titles; the toy's rows
keep their ids and their order. The toy has no test split: the dev questions, without
answers, stand in for the test files.
"""

from __future__ import annotations

import contextlib
import csv
import email.utils
import functools
import http.server
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Iterator

from umr.errors import UMRError
from umr.io import atomic_file
from umr.records import GoldQuestion, Passage, iter_dpr_tsv, read_gold
from umr.toy import data_files

# data.urls keys of umr/resources/config.schema.yaml -> basename of their default URL
PUBLISHED_NAMES: dict[str, str] = {
    "xor_retrieve/train.jsonl": "xor_train_retrieve_eng_span.jsonl",
    "xor_retrieve/dev.jsonl": "xor_dev_retrieve_eng_span_v1_1.jsonl",
    "xor_retrieve/test.jsonl": "xor_test_retrieve_eng_span_q_only_v1_1.jsonl",
    "xor_full/train.jsonl": "xor_train_full.jsonl",
    "xor_full/dev.jsonl": "xor_dev_full_v1_1.jsonl",
    "xor_full/test.jsonl": "xor_test_full_q_only_v1_1.jsonl",
    "corpus/xor_retrieve.tsv": "enwiki_20190201_w100.tsv",
    "corpus/xor_full.tsv": "all_w100.tsv",
}

DPR_HEADER_ROW = ["id", "text", "title"]

# (title, text) of the passages added to each collection to exercise the formats.
EXTRA_ENGLISH: tuple[tuple[str, str], ...] = (
    ('"Weird Al" Yankovic', 'Alfred Matthew "Weird Al" Yankovic is an American singer and musician known for '
                            'songs that parody popular music, such as "Eat It" and "Fat".'),
    ("Bad (album)", '"Bad"'),
    ("القاهرة", 'Cairo is the capital of Egypt; its name means "the victorious" in Arabic.'),
    ("東京都", "Tokyo is the capital of Japan and the most populous metropolitan area in the world."),
    ("서울특별시", 'Seoul, officially the "Seoul Special City", is the capital of South Korea.'),
)
EXTRA_MULTILINGUAL: tuple[tuple[str, str], ...] = (
    ("Tab\tin a title", "A passage whose title holds a tab, which csv.writer quotes."),
    ('"Weird Al" Yankovic', '"Weird Al" Yankovic is an American singer known for "parody" songs.'),
    ("القاهرة", "القاهرة هي عاصمة جمهورية مصر العربية وأكبر مدنها، ويعني اسمها \"المنتصرة\"."),
    ("東京都", "東京都は日本の首都であり、「東京」または\"Tokyo\"とも呼ばれる日本最大の都市である。"),
    ('서울 "특별시"', '서울특별시는 대한민국의 수도이며, "서울"이라는 이름은 수도를 뜻하는 말에서 왔다.'),
)

log = logging.getLogger("umr.rehearsal.data")


def _extra_passages(existing: list[Passage], extras: tuple[tuple[str, str], ...]) -> list[Passage]:
    """The extras with integer ids after the largest integer id in use (no collision)."""
    taken = {p.id for p in existing}
    next_id = max((int(p.id) for p in existing if p.id.isdigit()), default=0) + 1
    out = []
    for title, text in extras:
        while str(next_id) in taken:
            next_id += 1
        out.append(Passage(str(next_id), title, text))
        next_id += 1
    return out


def _write_tsv(path: Path, passages: list[Passage], header: bool) -> None:
    # csv.writer itself, as DPR and CORA wrote theirs (not umr.records' writer: this checks it)
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        if header:
            writer.writerow(DPR_HEADER_ROW)
        writer.writerows([p.id, p.text, p.title] for p in passages)


def _write_jsonl(path: Path, questions: list[GoldQuestion], split: str, with_answers: bool) -> None:
    with atomic_file(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as handle:
        for q in questions:
            obj: dict = {"id": q.id, "question": q.text}
            if with_answers:
                obj["answers"] = list(q.answers)
            obj["lang"] = q.lang
            obj["split"] = split
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")


def write_published(toy_data_dir: Path, out_dir: Path) -> dict[str, Path]:
    """Write the toy benchmark in `toy_data_dir` under `out_dir` with the published names and formats.

    Deterministic (same toy, same bytes). Returns data key (`data.urls`) -> written path.
    """
    toy_files = data_files(toy_data_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for task in ("xor_retrieve", "xor_full"):
        for split in ("train", "dev"):
            questions = list(read_gold(toy_files[f"{task}_{split}"]).values())
            key = f"{task}/{split}.jsonl"
            written[key] = out_dir / PUBLISHED_NAMES[key]
            _write_jsonl(written[key], questions, split, with_answers=True)
            if split == "dev":  # the toy has no test split: dev questions, without answers
                key = f"{task}/test.jsonl"
                written[key] = out_dir / PUBLISHED_NAMES[key]
                _write_jsonl(written[key], questions, "test", with_answers=False)
    for task, extras, header in (("xor_retrieve", EXTRA_ENGLISH, True), ("xor_full", EXTRA_MULTILINGUAL, False)):
        passages = list(iter_dpr_tsv(toy_files[f"corpus_{task}"]))
        key = f"corpus/{task}.tsv"
        written[key] = out_dir / PUBLISHED_NAMES[key]
        _write_tsv(written[key], passages + _extra_passages(passages, extras), header)
    return written


# -- HTTP -----------------------------------------------------------------------------------
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with what umr.download's resume needs: strong ETag, Last-Modified,
    single byte ranges (206 + Content-Range, 416 past the end) guarded by If-Range."""

    _remaining: int | None = None

    def send_head(self):  # noqa: ANN201 (http.server's signature)
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "File not found")
            return None
        handle = open(path, "rb")
        try:
            st = os.fstat(handle.fileno())
            size = st.st_size
            etag = f'"{size:x}-{st.st_mtime_ns:x}"'
            last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            start, end, status = 0, size - 1, 200
            wanted = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            match = _RANGE.fullmatch(wanted.strip()) if wanted else None
            # If-Range: a range only if the file is still the one the client saw, else the whole file
            if match and (match[1] or match[2]) and if_range in (None, etag, last_modified):
                if match[1]:
                    start = int(match[1])
                    end = min(int(match[2]), size - 1) if match[2] else size - 1
                else:  # suffix range: the last N bytes
                    start = max(0, size - int(match[2]))
                if start >= size or start > end:
                    handle.close()
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            handle.seek(start)
            self._remaining = end - start + 1
            return handle
        except BaseException:
            handle.close()
            raise

    def copyfile(self, source, outputfile) -> None:  # noqa: ANN001
        """Only the requested range, not the rest of the file."""
        remaining = self._remaining if self._remaining is not None else -1
        if remaining < 0:
            shutil.copyfileobj(source, outputfile)
            return
        while remaining > 0:
            block = source.read(min(remaining, 1 << 20))
            if not block:
                break
            outputfile.write(block)
            remaining -= len(block)

    def log_request(self, code="-", size="-") -> None:  # noqa: ANN001
        log.debug("%s %s -> %s (Range: %s, If-Range: %s)", self.command, self.path, code,
                  self.headers.get("Range"), self.headers.get("If-Range"))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's name)
        log.debug("%s: " + format, self.address_string(), *args)


@contextlib.contextmanager
def serve(root: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `root` over HTTP from a background thread; yields the base URL (no trailing slash)."""
    handler = functools.partial(_RangeHandler, directory=str(root))
    try:
        server = http.server.ThreadingHTTPServer((host, port), handler)
    except OSError as err:  # a port in use (another rehearsal?) is one line, not a traceback
        raise UMRError(f"cannot serve the rehearsal's files on {host}:{port} ({err.strerror}); "
                       "stop what uses that port or pass --port") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="umr-rehearsal-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
