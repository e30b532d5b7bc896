"""Typed records and the file formats at the pipeline's boundaries.

- questions: XOR-TyDi QA JSONL (`id`, `question`, `answers`, `lang`, plus fields such as
  `split` that are ignored; ids are strings, JSON numbers are accepted as such), read the
  same way for the toy benchmark and the real data;
- passages: DPR TSV (`id \\t text \\t title`) as `csv.writer(delimiter="\\t")` writes it:
  a field holding a quote or a tab is quoted and its quotes are doubled (the title
  `"Weird Al" Yankovic` is stored as three quotes, `Weird Al`, two quotes, ` Yankovic`, one
  quote). DPR's English collection has a header row `id text title`; CORA's multilingual
  `all_w100.tsv` has none (CORA wikipedia_preprocess/build_dpr_w100_data.py). Ids stay
  strings, integer-looking ones too;
- runs: TREC run files (`qid Q0 docid rank score tag`), higher score = better.

Training stages read questions through `read_questions`, which has no answers
field at all: UMR is unsupervised, so answers are reachable only via `read_gold`,
which only evaluation calls.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from umr.errors import InputFileError

# DPR TSV rows can be long (a 100-word passage with a long title); the csv module's
# default 128 KiB field limit is enough for w100 but not for user corpora.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


@dataclass(frozen=True, slots=True)
class Question:
    """A question as training sees it: no answers."""

    id: str
    text: str
    lang: str


@dataclass(frozen=True, slots=True)
class GoldQuestion:
    """A question with its answer strings, for evaluation only."""

    id: str
    text: str
    lang: str
    answers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Passage:
    id: str
    title: str
    text: str


# qid -> [(docid, score), ...] sorted best first
Run = dict[str, list[tuple[str, float]]]


def _iter_json_objects(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputFileError(path, f"not valid UTF-8 ({err.reason} at byte {err.start})", line_no) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputFileError(path, f"invalid JSON ({err.msg})", line_no) from None
            if not isinstance(obj, dict):
                raise InputFileError(path, "each line must be a JSON object", line_no)
            yield line_no, obj


def _field(path: Path, line_no: int, obj: dict, name: str) -> str:
    if name not in obj:
        raise InputFileError(path, f"missing field {name!r}", line_no)
    value = obj[name]
    if isinstance(value, int) and not isinstance(value, bool) and name == "id":
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise InputFileError(path, f"field {name!r} must be a non-empty string", line_no)
    # The official loaders strip `lang` (HF xor_tydi_qa, MiuLab/UMR openqa_dataset.py).
    return value.strip() if name == "lang" else value


def _answers(path: Path, line_no: int, obj: dict) -> tuple[str, ...]:
    if "answers" not in obj:
        raise InputFileError(path, "missing field 'answers' (test files have none: evaluate on dev)", line_no)
    answers = obj["answers"]
    if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
        raise InputFileError(path, "field 'answers' must be a list of strings", line_no)
    return tuple(answers)


def _check_lang(path: Path, line_no: int, lang: str, languages: Iterable[str] | None) -> None:
    if languages is not None and lang not in languages:
        raise InputFileError(
            path, f"question language {lang!r} is not in the configured languages ({', '.join(languages)})", line_no
        )


def read_questions(path: str | Path, languages: Iterable[str] | None = None) -> list[Question]:
    """Questions of an XOR-TyDi JSONL file, without their answers.

    `languages`, when given, is the set of allowed `lang` values: a question in any
    other language is an error naming the file and line.
    """
    path = Path(path)
    languages = tuple(languages) if languages is not None else None
    seen: set[str] = set()
    out: list[Question] = []
    for line_no, obj in _iter_json_objects(path):
        qid = _field(path, line_no, obj, "id")
        text = _field(path, line_no, obj, "question")
        lang = _field(path, line_no, obj, "lang")
        _check_lang(path, line_no, lang, languages)
        if qid in seen:
            raise InputFileError(path, f"duplicate question id {qid!r}", line_no)
        seen.add(qid)
        out.append(Question(qid, text, lang))
    if not out:
        raise InputFileError(path, "no questions in file")
    return out


def read_gold(path: str | Path, languages: Iterable[str] | None = None) -> dict[str, GoldQuestion]:
    """Questions with answers (dev files), keyed by id, in file order."""
    path = Path(path)
    languages = tuple(languages) if languages is not None else None
    out: dict[str, GoldQuestion] = {}
    for line_no, obj in _iter_json_objects(path):
        qid = _field(path, line_no, obj, "id")
        text = _field(path, line_no, obj, "question")
        lang = _field(path, line_no, obj, "lang")
        _check_lang(path, line_no, lang, languages)
        if qid in out:
            raise InputFileError(path, f"duplicate question id {qid!r}", line_no)
        out[qid] = GoldQuestion(qid, text, lang, _answers(path, line_no, obj))
    if not out:
        raise InputFileError(path, "no questions in file")
    return out


def write_questions(path: str | Path, questions: Iterable[GoldQuestion | Question]) -> None:
    """Write XOR-TyDi JSONL (answers included for GoldQuestion)."""
    with open(path, "w", encoding="utf-8") as handle:
        for q in questions:
            obj = {"id": q.id, "question": q.text}
            if isinstance(q, GoldQuestion):
                obj["answers"] = list(q.answers)
            obj["lang"] = q.lang
            handle.write(json.dumps(obj, ensure_ascii=False) + "\n")


DPR_HEADER = ("id", "text", "title")


def parse_dpr_line(line: str, path: str | Path, line_no: int | None) -> list[str]:
    """The fields of one DPR TSV line, as `csv.reader(delimiter="\\t")` reads them.

    Most lines hold no quote and are split directly; the others go through the csv
    module (a quoted field keeps its tabs, doubled quotes are undone). A quoted field
    that runs past the end of the line (a newline inside quotes) is an error: the
    corpus is addressed by line offsets, so one record must be one line.
    """
    line = line.rstrip("\r\n")
    if '"' not in line:
        return line.split("\t")
    spilled = False

    def one_line() -> Iterator[str]:
        nonlocal spilled
        yield line + "\n"
        spilled = True  # the reader asked for more: a quoted field is still open

    try:
        row = next(csv.reader(one_line(), delimiter="\t"), [])
    except csv.Error as err:
        if not spilled:
            raise InputFileError(path, f"malformed quoted field ({err})", line_no) from None
    if spilled:
        raise InputFileError(path, "a quoted field is not closed on its line (a newline inside quotes?): "
                                   "records spanning lines are not supported", line_no)
    return row


def _dpr_lines(path: Path) -> Iterator[tuple[int, int, list[str]]]:
    """(line number, byte offset, fields) of each record line: UTF-8 checked, blank lines and the header skipped."""
    pos = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, start=1):
            offset, pos = pos, pos + len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise InputFileError(path, f"not valid UTF-8 ({err.reason} at byte {err.start})", line_no) from None
            if not line.strip("\r\n"):
                continue
            fields = parse_dpr_line(line, path, line_no)
            if line_no == 1 and fields[0] == "id":
                continue
            yield line_no, offset, fields


def iter_dpr_rows(path: str | Path, unique_ids: bool = True) -> Iterator[tuple[int, Passage]]:
    """(byte offset of the line, passage) for each row of a DPR TSV file, validated.

    A first line whose first field is `id` is the header (DPR's files have one,
    CORA's does not). Wrong column counts, unclosed quotes, non-UTF-8 bytes and
    duplicate ids are errors naming the file and line; an empty corpus is an error.
    `unique_ids=False` leaves the duplicate check (a set of every id: ~100 B each, 4.3 GB
    for CORA's 44 M passages) to the caller, e.g. `DuplicateIdCheck`.
    """
    path = Path(path)
    seen: set[str] = set()
    count = 0
    for line_no, offset, fields in _dpr_lines(path):
        if len(fields) != 3:
            raise InputFileError(path, f"expected 3 tab-separated columns (id, text, title), found {len(fields)}", line_no)
        pid, text, title = fields
        if not pid:
            raise InputFileError(path, "empty passage id", line_no)
        if unique_ids:
            if pid in seen:
                raise InputFileError(path, f"duplicate passage id {pid!r}", line_no)
            seen.add(pid)
        count += 1
        yield offset, Passage(pid, title, text)
    if count == 0:
        raise InputFileError(path, "empty corpus: no passages")


def iter_dpr_tsv(path: str | Path, unique_ids: bool = True) -> Iterator[Passage]:
    """Passages of a DPR TSV file (`id, text, title`, header row optional); see `iter_dpr_rows`."""
    for _, passage in iter_dpr_rows(path, unique_ids):
        yield passage


class DuplicateIdCheck:
    """The duplicate-id check of `iter_dpr_rows` in bounded memory, for corpora of tens of millions.

    Instead of a set of every id (a str object of ~50 B plus ~40 B of set slot each: 4.3 GB
    for 44 M ids), it keeps one 64-bit hash per id in NumPy blocks (44 M x 8 B = 352 MB) and
    sorts them once at the end. Only if two hashes are equal is the file read again to find
    the exact duplicate; if none is found, it was a hash collision (odds ~ n^2 / 2^65: 5e-5
    for 44 M ids). The error is the one `iter_dpr_rows` raises: the first line whose id
    occurred before. Use: `add` each id while streaming `iter_dpr_tsv(path, unique_ids=False)`,
    then `check()` before publishing anything.
    """

    BLOCK = 1 << 20  # hashes per NumPy block (8 MB)

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._blocks: list[np.ndarray] = []
        self._block = np.empty(self.BLOCK, dtype=np.int64)
        self._n = 0

    @staticmethod
    def _hash(pid: str) -> int:
        # Python's str hash: 64-bit, cached on the str, salted per process; add() and the
        # re-read of check() run in the same process, and a collision only costs a re-read.
        return hash(pid)

    def add(self, pid: str) -> None:
        self._block[self._n] = self._hash(pid)
        self._n += 1
        if self._n == len(self._block):
            self._blocks.append(self._block)
            self._block, self._n = np.empty(self.BLOCK, dtype=np.int64), 0

    def check(self) -> None:
        """Raise the InputFileError of the first repeated id (file and line), if any."""
        # The one concatenation doubles the hashes briefly: 2 x 8 B per id (704 MB for 44 M).
        hashes = np.concatenate(self._blocks + [self._block[:self._n]])
        self._blocks, self._block, self._n = [], np.empty(self.BLOCK, dtype=np.int64), 0
        hashes.sort()  # in place
        suspects = set(hashes[1:][hashes[1:] == hashes[:-1]].tolist())
        del hashes
        if not suspects:
            return
        seen: set[str] = set()
        for line_no, _, fields in _dpr_lines(self.path):
            pid = fields[0]
            if self._hash(pid) in suspects:
                if pid in seen:
                    raise InputFileError(self.path, f"duplicate passage id {pid!r}", line_no)
                seen.add(pid)


def _quote_field(value: str) -> str:
    # csv.writer's QUOTE_MINIMAL for delimiter "\t" once newlines are ruled out
    if '"' in value or "\t" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def dpr_tsv_line(passage: Passage) -> str:
    """One row as `csv.writer(delimiter="\\t", lineterminator="\\n")` writes it.

    A newline in a field would make a record span lines, which the line-offset
    reader rejects, so it is a ValueError here.
    """
    for name, value in (("id", passage.id), ("text", passage.text), ("title", passage.title)):
        if "\n" in value or "\r" in value:
            raise ValueError(f"passage {passage.id}: {name} contains a newline")
    return "\t".join(_quote_field(v) for v in (passage.id, passage.text, passage.title)) + "\n"


DPR_HEADER_LINE = "\t".join(DPR_HEADER) + "\n"


def write_dpr_tsv(path: str | Path, passages: Iterable[Passage]) -> None:
    """DPR TSV with its header row, quoted like DPR's own files (csv.writer)."""
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(DPR_HEADER_LINE)
        for p in passages:
            handle.write(dpr_tsv_line(p))


def write_trec_run(path: str | Path, run: Run, tag: str) -> None:
    """Write a TREC run; each question's list is written in the order given, ranks from 1."""
    with open(path, "w", encoding="utf-8") as handle:
        for qid, ranked in run.items():
            for rank, (docid, score) in enumerate(ranked, start=1):
                handle.write(f"{qid} Q0 {docid} {rank} {score:.6f} {tag}\n")


def read_trec_run(path: str | Path) -> Run:
    """Read a TREC run; per question, passages sorted by rank."""
    path = Path(path)
    rows: dict[str, list[tuple[int, str, float]]] = {}
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 6:
                raise InputFileError(path, f"TREC run lines have 6 columns, found {len(parts)}", line_no)
            qid, _, docid, rank, score, _ = parts
            try:
                rows.setdefault(qid, []).append((int(rank), docid, float(score)))
            except ValueError:
                raise InputFileError(path, "rank must be an integer and score a number", line_no) from None
    if not rows:
        raise InputFileError(path, "empty run file")
    return {qid: [(d, s) for _, d, s in sorted(r)] for qid, r in rows.items()}
