"""BM25 baseline with Pyserini: language-specific Lucene analyzers, one process per index.

Three commands (``python -m umr.baselines.bm25 {index,search,split} --help``):

- ``index``: DPR TSV corpus -> Lucene index built with the analyzer of ``--lang``
  (Anserini's ``IndexCollection``, the entry point behind ``python -m pyserini.index.lucene``),
  optionally keeping only the passages of one language (``--only-lang``, XOR-Full);
- ``search``: questions JSONL -> TREC run, BM25(k1, b) with the index's analyzer,
  all questions of one process searched in batches (``LuceneSearcher.batch_search``);
- ``split``: a multilingual DPR TSV -> one DPR TSV per passage language.

Which collection the paper's BM25 row searches:
- XOR-Retrieve: the English collection with the English analyzer (questions are in the
  seven XOR languages, so lexical overlap is small and BM25 is weak: that is expected);
- XOR-Full: the collection *of the question's language only*: one index per language,
  built from the multilingual corpus with ``--only-lang L`` (or from ``split``'s output).

Analyzers (pyserini 1.6.0 / Anserini 1.7.1, identical at indexing ``-language L`` and
searching ``LuceneSearcher.set_language(L)``; see ANALYZERS). CORA's BM25 searched with
k1 = 0.82, b = 0.68, the defaults here.

Java: every function that touches Lucene first calls `umr.javaenv.ensure_java21()`.
Importing pyserini costs seconds (it pulls torch/transformers), so a process handles a
whole index or a whole question file, never one query.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from umr.errors import UMRError
from umr.io import atomic_dir, atomic_file, log, run_cli
from umr.languages import LANGUAGE_NAMES
from umr.records import (DPR_HEADER_LINE, DuplicateIdCheck, Passage, Question, Run, dpr_tsv_line, iter_dpr_tsv,
                         read_questions, write_trec_run)

DEFAULT_K1 = 0.82  # CORA's BM25 baseline (baselines/bm25/search_index.py)
DEFAULT_B = 0.68
DEFAULT_TAG = "bm25"
META_FILE = "umr_bm25.json"
LUCENE_SUBDIR = "lucene"

# The analyzer Anserini 1.7.1 (pyserini 1.6.0) uses for each language, at indexing
# (IndexCollection -language -> AnalyzerMap) and at search (SimpleSearcher.set_language).
ANALYZERS: dict[str, str] = {
    "en": "io.anserini.analysis.DefaultEnglishAnalyzer (Porter stemmer, Lucene English stopwords)",
    "ar": "org.apache.lucene.analysis.ar.ArabicAnalyzer (Arabic normalisation, light prefix/suffix stemmer, stopwords)",
    "bn": "org.apache.lucene.analysis.bn.BengaliAnalyzer (Indic + Bengali normalisation, suffix stemmer, stopwords)",
    "fi": "org.apache.lucene.analysis.fi.FinnishAnalyzer (Snowball Finnish stemmer, stopwords)",
    "ja": "org.apache.lucene.analysis.ja.JapaneseAnalyzer (Kuromoji morphological segmentation, base forms, POS stop filter)",
    "ko": "org.apache.lucene.analysis.cjk.CJKAnalyzer (overlapping Hangul/CJK character bigrams; no morphology)",
    "ru": "org.apache.lucene.analysis.ru.RussianAnalyzer (Snowball Russian stemmer, stopwords)",
    "te": "org.apache.lucene.analysis.te.TeluguAnalyzer (Indic + Telugu normalisation, suffix stemmer, stopwords)",
}
SUPPORTED_LANGUAGES: tuple[str, ...] = tuple(ANALYZERS)


def _check_language(lang: str, what: str = "--lang") -> str:
    if lang not in ANALYZERS:
        raise UMRError(f"{what} {lang!r}: no BM25 analyzer configured; supported: {', '.join(SUPPORTED_LANGUAGES)}")
    return lang


# ---------------------------------------------------------------------------------------
# Passage language (XOR-Full: BM25 searches the question-language collection only)
# ---------------------------------------------------------------------------------------
#
# CORA's multilingual corpus (all_w100.tsv, the XOR-Full collection: English plus the seven
# XOR languages) has no language column. CORA's builder
# (wikipedia_preprocess/build_dpr_w100_data.py) gives passages running integer ids
# (`--start_idx` to continue numbering across languages) and the article title, in the
# article's language, as title; the id ranges per language of the released file are not
# documented (and the 29 GB file could not be inspected here). So the language is read from
# the passage:
#   1. an id of the form `<lang>_<n>` / `<lang>-<n>` / `<lang>:<n>` with a known code wins
#      (the toy benchmark and user corpora can make the split exact this way);
#   2. otherwise the dominant script of title + start of text: Arabic -> ar, Bengali -> bn,
#      Telugu -> te, Hangul -> ko, kana (with or without kanji) -> ja, Cyrillic -> ru,
#      kanji without kana -> zh (not an XOR language); a few foreign-script words in a
#      Latin-script passage do not count (the script must outweigh its Latin letters);
#   3. Latin script: Finnish if Finnish function words, case endings and ä/ö outweigh
#      English function words, else English (the collection's Latin-script languages).
# `split` and `index --only-lang` log the passage count per detected language so the split
# can be checked against the corpus's published sizes.

_ID_PREFIX = re.compile(r"^([a-z]{2,3})[_:\-]")
_NON_LATIN = re.compile(r"[^\x00-\u024F\u1E00-\u1EFF\u2000-\u206F\u20A0-\u20CF]")
_LATIN_LETTER = re.compile(r"[A-Za-z\u00C0-\u024F]")
# (language, pattern, weight): syllabic/logographic scripts carry ~3x more per character
_SCRIPTS: tuple[tuple[str, re.Pattern, int], ...] = (
    ("ar", re.compile(r"[\u0600-\u06FF\u0750-\u077F\u08A0-\u08FF\uFB50-\uFDFF\uFE70-\uFEFF]"), 1),
    ("bn", re.compile(r"[\u0980-\u09FF]"), 1),
    ("te", re.compile(r"[\u0C00-\u0C7F]"), 1),
    ("ru", re.compile(r"[\u0400-\u04FF]"), 1),
    ("ko", re.compile(r"[\u1100-\u11FF\u3130-\u318F\uAC00-\uD7AF]"), 3),
    ("kana", re.compile(r"[\u3040-\u30FF\u31F0-\u31FF\uFF66-\uFF9F]"), 3),
    ("han", re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]"), 3),
)
_WORD = re.compile(r"[^\W\d_]+")
_EN_WORDS = frozenset(
    "the of and in to was is for as by with that from at his her which were are an it be this "
    "had has or not also their its he she they after first".split()
)
_FI_WORDS = frozenset(
    "ja on oli ovat että se ei joka jossa jonka hän myös sekä kun tai mutta vuonna sen hänen kuin "
    "ole olivat oli mukaan jälkeen kanssa vuoden ensimmäinen ennen sitä niin".split()
)
# Finnish case endings (inessive, elative, adessive, ablative, translative) and -nen names
_FI_SUFFIXES = ("ssa", "ssä", "sta", "stä", "lla", "llä", "lta", "ltä", "ksi", "nen")
SAMPLE_CHARS = 400


def passage_language(passage: Passage) -> str:
    """Language code of a passage of a multilingual DPR corpus (see the notes above)."""
    match = _ID_PREFIX.match(passage.id)
    if match and (match.group(1) in LANGUAGE_NAMES or match.group(1) == "zh"):
        return match.group(1)
    sample = f"{passage.title} {passage.text[:SAMPLE_CHARS]}"
    if _NON_LATIN.search(sample):
        counts = {name: len(pattern.findall(sample)) * weight for name, pattern, weight in _SCRIPTS}
        if counts["kana"]:
            counts["ja"] = counts.pop("kana") + counts.pop("han")
        else:
            counts["zh"] = counts.pop("han")
            counts.pop("kana")
        best = max(counts, key=counts.get)
        if counts[best] > len(_LATIN_LETTER.findall(sample)):
            return best
    words = _WORD.findall(sample.lower())
    en = fi = 0.0
    for w in words:
        if w in _EN_WORDS:
            en += 1
        elif w in _FI_WORDS:
            fi += 1
        elif len(w) > 4 and w.endswith(_FI_SUFFIXES):
            fi += 0.5
    fi += 0.5 * (sample.count("ä") + sample.count("ö") + sample.count("Ä") + sample.count("Ö"))
    return "fi" if fi > en else "en"


def split_by_language(corpus: str | Path, out_dir: str | Path, languages: Sequence[str] | None = None) -> dict[str, int]:
    """Write one DPR TSV per passage language (`<out_dir>/<lang>.tsv`) in one pass.

    `languages`, when given, limits the files written; passages of other languages are
    counted but dropped. Returns passage counts per detected language; also written to
    `<out_dir>/counts.json`. A duplicate passage id is an error (file and line) and nothing
    is written; it is found in bounded memory (`DuplicateIdCheck`: 352 MB of hashes for
    CORA's 44 M passages instead of a 4.3 GB set of ids).
    """
    counts: Counter[str] = Counter()
    handles: dict[str, object] = {}
    wanted = set(languages) if languages else None
    ids = DuplicateIdCheck(corpus)
    with atomic_dir(out_dir) as tmp:
        try:
            for i, p in enumerate(iter_dpr_tsv(corpus, unique_ids=False), start=1):
                ids.add(p.id)
                lang = passage_language(p)
                counts[lang] += 1
                if wanted is not None and lang not in wanted:
                    continue
                handle = handles.get(lang)
                if handle is None:
                    handle = handles[lang] = open(tmp / f"{lang}.tsv", "w", encoding="utf-8", newline="")
                    handle.write(DPR_HEADER_LINE)
                handle.write(dpr_tsv_line(p))  # re-quoted as read: titles may hold quotes and tabs
                if i % 1_000_000 == 0:
                    log.info("split: %d passages read (%s)", i, _fmt_counts(counts))
        finally:
            for handle in handles.values():
                handle.close()
        ids.check()  # inside atomic_dir: a duplicate leaves no collections behind
        (tmp / "counts.json").write_text(json.dumps(dict(sorted(counts.items())), indent=1) + "\n")
    log.info("split %s -> %s: %s", corpus, out_dir, _fmt_counts(counts))
    return dict(counts)


def _fmt_counts(counts: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))


# ---------------------------------------------------------------------------------------
# Indexing
# ---------------------------------------------------------------------------------------


def write_json_collection(passages: Iterable[Passage], out_dir: str | Path, shards: int = 1) -> tuple[int, int]:
    """Write Pyserini JsonCollection files (`{"id", "contents": title + " " + text}`).

    Documents are dealt round-robin over `shards` JSONL files so that Anserini's
    indexing threads (one per file) share the work. Passages whose title and text are
    both blank are skipped (Lucene would reject them). Returns (written, skipped).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = max(1, int(shards))
    files = [open(out_dir / f"part-{i:03d}.jsonl", "w", encoding="utf-8") for i in range(shards)]
    written = skipped = 0
    try:
        for p in passages:
            contents = f"{p.title} {p.text}".strip()
            if not contents:
                skipped += 1
                continue
            files[written % shards].write(json.dumps({"id": p.id, "contents": contents}, ensure_ascii=False) + "\n")
            written += 1
    finally:
        for f in files:
            f.close()
    return written, skipped


def _passages_of_language(passages: Iterable[Passage], only_lang: str, counts: Counter[str]) -> Iterable[Passage]:
    for p in passages:
        lang = passage_language(p)
        counts[lang] += 1
        if lang == only_lang:
            yield p


def build_index(
    corpus: str | Path,
    out: str | Path,
    lang: str,
    only_lang: str | None = None,
    threads: int = 1,
    store_raw: bool = False,
    memory_buffer_mb: int = 1024,
    optimize: bool = False,
    java_options: Sequence[str] = (),
    tmp_dir: str | Path | None = None,
) -> dict:
    """Build a BM25 Lucene index of a DPR TSV corpus with the analyzer of `lang`.

    `only_lang` keeps only passages whose `passage_language` is that code (XOR-Full).
    The output directory holds the Lucene index in `lucene/` and `umr_bm25.json`
    (language, analyzer, counts) which `search` reads; it is written atomically.
    The JsonCollection files (about the corpus's size) are written to a temporary
    directory in `tmp_dir` (default: beside `out`) and removed afterwards.
    Returns that metadata.
    """
    _check_language(lang)
    if only_lang is not None:
        _check_language(only_lang, "--only-lang")
    corpus, out = Path(corpus), Path(out)
    if not corpus.exists():
        raise UMRError(f"{corpus}: corpus file not found")
    from umr.javaenv import ensure_java21

    java_home = ensure_java21(java_options)
    from jnius import JavaException, autoclass

    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    docs_dir = Path(tempfile.mkdtemp(prefix=f".{out.name}.docs-", dir=tmp_dir or out.parent))
    try:
        lang_counts: Counter[str] = Counter()
        passages: Iterable[Passage] = iter_dpr_tsv(corpus)
        if only_lang is not None:
            passages = _passages_of_language(passages, only_lang, lang_counts)
        written, skipped = write_json_collection(passages, docs_dir, shards=threads)
        if only_lang is not None:
            log.info("%s: passages per detected language: %s", corpus, _fmt_counts(lang_counts))
        if skipped:
            log.warning("%s: %d passages with empty title and text skipped", corpus, skipped)
        if written == 0:
            raise UMRError(f"{corpus}: no passages to index" + (f" in language {only_lang!r}" if only_lang else ""))
        log.info("wrote %d documents as JsonCollection in %.1fs; indexing with the %s analyzer (%d threads)",
                 written, time.time() - t0, lang, threads)
        with atomic_dir(out) as tmp:
            lucene_dir = tmp / LUCENE_SUBDIR
            args = [
                "-collection", "JsonCollection",
                "-generator", "DefaultLuceneDocumentGenerator",
                "-input", str(docs_dir),
                "-index", str(lucene_dir),
                "-language", lang,
                "-threads", str(max(1, int(threads))),
                "-memoryBuffer", str(int(memory_buffer_mb)),
            ]
            if store_raw:
                args.append("-storeRaw")
            if optimize:
                args.append("-optimize")
            JArgs = autoclass("io.anserini.index.IndexCollection$Args")
            JParser = autoclass("org.kohsuke.args4j.CmdLineParser")
            JIndexCollection = autoclass("io.anserini.index.IndexCollection")
            JArrayList = autoclass("java.util.ArrayList")
            jargs, jlist = JArgs(), JArrayList()
            for arg in args:
                jlist.add(arg)
            try:
                JParser(jargs).parseArgument(jlist)
                indexer = JIndexCollection(jargs)
                indexer.run()
            except JavaException as err:
                raise UMRError(f"Anserini indexing of {corpus} failed: {err}") from None
            counters = indexer.getCounters()
            indexed = int(counters.indexed.get())
            problems = {name: int(getattr(counters, name).get()) for name in ("empty", "unindexable", "skipped", "errors")}
            if indexed != written or any(problems.values()):
                raise UMRError(f"Anserini indexed {indexed} of {written} documents of {corpus} ({problems}); see the log above")
            meta = {
                "language": lang,
                "analyzer": ANALYZERS[lang],
                "documents": indexed,
                "corpus": str(corpus),
                "only_lang": only_lang,
                "skipped_blank": skipped,
                "store_raw": bool(store_raw),
                "anserini_jar": _anserini_jar_name(),
                "pyserini": _version("pyserini"),
                "java_home": str(java_home),
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
    finally:
        shutil.rmtree(docs_dir, ignore_errors=True)
    log.info("indexed %d documents (%s analyzer) -> %s in %.1fs", indexed, lang, out, time.time() - t0)
    return meta


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _anserini_jar_name() -> str:
    from umr.javaenv import anserini_jar

    return anserini_jar().name


def load_index_meta(index: str | Path) -> dict:
    """The metadata `build_index` wrote; an error naming the directory if it is not a BM25 index."""
    index = Path(index)
    meta_path = index / META_FILE
    if not (index / LUCENE_SUBDIR).is_dir() or not meta_path.is_file():
        raise UMRError(f"{index}: not a BM25 index built by `python -m umr.baselines.bm25 index` "
                       f"(needs {LUCENE_SUBDIR}/ and {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as err:
        raise UMRError(f"{meta_path}: unreadable ({err.msg}); rebuild the index") from None
    _check_language(meta.get("language", "?"), f"{meta_path}: language")
    return meta


# ---------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------


class BM25Searcher:
    """A Pyserini LuceneSearcher over one index built by `build_index`.

    The analyzer is the index's language (so XOR-Retrieve questions in any language are
    analysed as English against the English index). Several searchers may live in one
    process (one JVM).
    """

    def __init__(self, index: str | Path, k1: float = DEFAULT_K1, b: float = DEFAULT_B):
        self.index = Path(index)
        self.meta = load_index_meta(self.index)
        self.language = self.meta["language"]
        from umr.javaenv import ensure_java21

        ensure_java21()
        logging.getLogger("faiss").setLevel(logging.WARNING)  # pyserini imports faiss: quiet its loader
        from pyserini.search.lucene import LuceneSearcher

        self._searcher = LuceneSearcher(str(self.index / LUCENE_SUBDIR))
        self._searcher.set_language(self.language)
        self._searcher.set_bm25(float(k1), float(b))
        self.k1, self.b = float(k1), float(b)

    @property
    def num_docs(self) -> int:
        return int(self._searcher.num_docs)

    def search(self, questions: Sequence[Question], top_k: int = 100, threads: int = 1,
               batch_size: int = 1000) -> Run:
        """Top-k passages per question, best first; questions with no hit get an empty list."""
        if top_k < 1:
            raise UMRError(f"--top-k must be >= 1, got {top_k}")
        run: Run = {}
        t0 = time.time()
        for start in range(0, len(questions), batch_size):
            batch = questions[start:start + batch_size]
            hits = self._searcher.batch_search([q.text for q in batch], [q.id for q in batch],
                                               k=int(top_k), threads=max(1, int(threads)))
            for q in batch:
                run[q.id] = [(str(h.docid), float(h.score)) for h in hits.get(q.id, [])]
            done = start + len(batch)
            log.info("bm25 search (%s index): %d/%d questions, %.1fs", self.language, done, len(questions), time.time() - t0)
        return run


def search_questions(index: str | Path, questions: Sequence[Question], k1: float = DEFAULT_K1, b: float = DEFAULT_B,
                     top_k: int = 100, threads: int = 1) -> Run:
    """BM25 top-k for `questions` over `index` (one searcher, one batch search)."""
    return BM25Searcher(index, k1=k1, b=b).search(questions, top_k=top_k, threads=threads)


def select_questions(questions: Sequence[Question], langs: Sequence[str] | None) -> list[Question]:
    if not langs:
        return list(questions)
    wanted = set(langs)
    return [q for q in questions if q.lang in wanted]


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _langs_arg(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m umr.baselines.bm25",
        description="BM25 baseline (Pyserini, language-specific Lucene analyzers). "
                    f"Languages: {', '.join(SUPPORTED_LANGUAGES)}.",
    )
    sub = p.add_subparsers(dest="command", required=True)

    pi = sub.add_parser("index", help="build a Lucene index of a DPR TSV corpus")
    pi.add_argument("--corpus", required=True, help="DPR TSV corpus (id, text, title)")
    pi.add_argument("--lang", required=True, choices=SUPPORTED_LANGUAGES, help="analyzer language of the index")
    pi.add_argument("--only-lang", choices=SUPPORTED_LANGUAGES, default=None,
                    help="keep only passages of this language (multilingual XOR-Full corpus); usually = --lang")
    pi.add_argument("--out", required=True, help="output index directory")
    pi.add_argument("--threads", type=int, default=1, help="indexing threads (default 1)")
    pi.add_argument("--store-raw", action="store_true", help="also store raw documents (not needed: runs carry ids)")
    pi.add_argument("--memory-buffer-mb", type=int, default=1024, help="Lucene RAM buffer in MB (default 1024)")
    pi.add_argument("--optimize", action="store_true", help="merge the index into one segment (slower build, faster search)")
    pi.add_argument("--java-heap", default=None, help="JVM max heap, e.g. 8g (default: the JVM's, 1/4 of memory)")
    pi.add_argument("--tmp-dir", default=None,
                    help="where the temporary JsonCollection (about the corpus's size) goes (default: beside --out)")

    ps = sub.add_parser("search", help="BM25 search of a question file -> TREC run")
    ps.add_argument("--index", required=True, help="index directory built by `index`")
    ps.add_argument("--questions", required=True, help="XOR-TyDi JSONL questions")
    ps.add_argument("--lang", type=_langs_arg, default=None,
                    help="question language(s) to search, comma-separated (default: all questions in the file)")
    ps.add_argument("--k1", type=float, default=DEFAULT_K1, help=f"BM25 k1 (default {DEFAULT_K1}, CORA)")
    ps.add_argument("--b", type=float, default=DEFAULT_B, help=f"BM25 b (default {DEFAULT_B}, CORA)")
    ps.add_argument("--top-k", type=int, default=100, help="passages per question (default 100)")
    ps.add_argument("--threads", type=int, default=1, help="search threads (default 1)")
    ps.add_argument("--tag", default=DEFAULT_TAG, help=f"TREC run tag (default {DEFAULT_TAG})")
    ps.add_argument("--java-heap", default=None, help="JVM max heap, e.g. 4g")
    ps.add_argument("--out", required=True, help="output TREC run file")

    pl = sub.add_parser("split", help="split a multilingual DPR TSV into one DPR TSV per passage language")
    pl.add_argument("--corpus", required=True, help="multilingual DPR TSV (e.g. CORA's all_w100.tsv)")
    pl.add_argument("--out-dir", required=True, help="output directory: <lang>.tsv per language + counts.json")
    pl.add_argument("--langs", type=_langs_arg, default=None, help="languages to write, comma-separated (default: all)")
    return p


def _java_options(heap: str | None) -> list[str]:
    if not heap:
        return []
    if not re.fullmatch(r"\d+[kKmMgG]?", heap):
        raise UMRError(f"--java-heap {heap!r}: expected a size like 4g or 4096m")
    return [f"-Xmx{heap}"]


def _main(args: argparse.Namespace) -> None:
    if args.command == "index":
        build_index(args.corpus, args.out, args.lang, only_lang=args.only_lang, threads=args.threads,
                    store_raw=args.store_raw, memory_buffer_mb=args.memory_buffer_mb, optimize=args.optimize,
                    java_options=_java_options(args.java_heap), tmp_dir=args.tmp_dir)
    elif args.command == "search":
        meta = load_index_meta(args.index)
        if not Path(args.questions).is_file():
            raise UMRError(f"{args.questions}: question file not found")
        questions = select_questions(read_questions(args.questions), args.lang)
        if not questions:
            raise UMRError(f"{args.questions}: no questions in language(s) {', '.join(args.lang)}")
        by_lang = Counter(q.lang for q in questions)
        log.info("%d questions (%s) against the %s index %s (%d documents), k1=%g b=%g top-%d",
                 len(questions), _fmt_counts(by_lang), meta["language"], args.index, meta["documents"],
                 args.k1, args.b, args.top_k)
        from umr.javaenv import ensure_java21

        ensure_java21(_java_options(args.java_heap))
        run = search_questions(args.index, questions, k1=args.k1, b=args.b, top_k=args.top_k, threads=args.threads)
        empty = sum(1 for ranked in run.values() if not ranked)
        if empty:
            log.warning("%d of %d questions got no BM25 hit (no query term survives analysis or matches)",
                        empty, len(questions))
        with atomic_file(args.out) as tmp:
            write_trec_run(tmp, run, args.tag)
        log.info("wrote %s", args.out)
    elif args.command == "split":
        split_by_language(args.corpus, args.out_dir, args.langs)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
