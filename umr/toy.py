"""The built-in toy benchmark: a small XOR-TyDi QA look-alike generated from a seed.

It is written in the real file formats (XOR-TyDi JSONL, DPR TSV), so the loaders
that read XOR-TyDi read it too, and it has the properties that make the UMR loop
meaningful:

- an English collection of biography-like articles split into ~w100 passages, plus
  place and organisation articles and unrelated filler articles;
- questions in ar, bn, fi, ja, ko, ru, te in their own scripts, about facts of the
  people in the English articles; answers are English spans of those passages;
- cross-lingual signal as in real data: names are shared (written in Latin script)
  in a configurable share of questions and transliterated otherwise; years are
  shared digits; nothing else is shared across scripts;
- competition: people share first names and surnames, every person has several
  passages, and other articles mention them, so ranking is not trivial;
- an in-language collection per question language (XOR-Full): articles about local
  people that exist only in that language, and about some of the English-article
  people; XOR-Full answers are in the question's language.

The only supervision in the files is the `answers` field, which training never
reads (see `umr.records.read_questions`).
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from umr.io import atomic_file, log, run_cli
from umr.languages import XOR_LANGUAGES
from umr.records import GoldQuestion, Passage, write_dpr_tsv, write_questions
from umr.toy_lexicon import (
    CODAS, CONSONANTS, EN_FACTS, EN_FILLER, EN_PERSON_FILLER, LOCAL_FACTS, LOCAL_FILLER, NAME_SEPARATOR,
    OCCUPATIONS, ORG_KINDS, QUESTIONS, RIVER_WORDS, THINGS, VOWELS, WORK_ADJECTIVES, WORK_NOUNS,
    korean_has_final, transliterate_word,
)

# Relations asked about; XOR-Full uses those whose answers transliterate (names, years).
RELATIONS = ("born_year", "born_place", "school", "employer", "work", "spouse", "died_year", "died_place")
FULL_RELATIONS = ("born_year", "born_place", "spouse", "died_year", "died_place")


@dataclass(frozen=True)
class ToySizes:
    """Sizes of the generated benchmark (config key `toy`)."""

    seed: int = 13
    persons: int = 320
    first_names: int = 110
    surnames: int = 140
    places: int = 600
    orgs: int = 400
    filler_articles: int = 300
    passage_words: int = 70
    local_persons_per_language: int = 30
    local_article_rate: float = 0.5
    shared_name_rate: float = 0.75
    code_switch_rate: float = 0.5
    languages: tuple[str, ...] = XOR_LANGUAGES
    questions: dict = field(default_factory=lambda: {
        "xor_retrieve": {"train": 50, "dev": 50},
        "xor_full": {"train": 40, "dev": 50},
    })


@dataclass(frozen=True)
class Word:
    """A name word: Latin CV syllables plus an optional final consonant."""

    syllables: tuple[tuple[str, str], ...]
    coda: str

    def render(self, lang: str = "en") -> str:
        return transliterate_word(self.syllables, self.coda, lang)


@dataclass(frozen=True)
class Name:
    words: tuple[Word, ...]

    def render(self, lang: str = "en") -> str:
        return NAME_SEPARATOR.get(lang, " ").join(w.render(lang) for w in self.words)

    @property
    def last(self) -> Word:
        return self.words[-1]


@dataclass
class Person:
    name: Name
    gender: str
    occupation: str
    born_year: int
    born_place: Word
    died_year: int
    died_place: Word
    school: str = ""
    employer: str = ""
    employer_year: int = 0
    work: str = ""
    work_year: int = 0
    spouse: Name | None = None
    spouse_year: int = 0


class _Generator:
    def __init__(self, sizes: ToySizes):
        self.sizes = sizes
        self.rng = random.Random(sizes.seed)
        self._used_words: set[tuple] = set()

    # -- vocabulary -----------------------------------------------------------
    def word(self, min_syl: int = 2, max_syl: int = 3) -> Word:
        rng = self.rng
        while True:
            n = rng.randint(min_syl, max_syl)
            syl = tuple((rng.choice(CONSONANTS), rng.choice(VOWELS)) for _ in range(n))
            coda = rng.choice(CODAS) if rng.random() < 0.5 else ""
            key = (syl, coda)
            if key not in self._used_words:
                self._used_words.add(key)
                return Word(syl, coda)

    def years(self, lo: int = 1550, hi: int = 1950) -> int:
        return self.rng.randint(lo, hi)

    # -- world ------------------------------------------------------------------
    def build_world(self) -> None:
        s, rng = self.sizes, self.rng
        self.first_names = [self.word(2, 2) for _ in range(s.first_names)]
        self.surnames = [self.word(2, 3) for _ in range(s.surnames)]
        self.places = [self.word(2, 3) for _ in range(s.places)]
        org_bases = [self.word(2, 3) for _ in range(s.orgs)]
        self.orgs = [f"{b.render()} {rng.choice(ORG_KINDS)}" for b in org_bases]
        titles = [f"The {a} {n}" for a in WORK_ADJECTIVES for n in WORK_NOUNS]
        rng.shuffle(titles)
        self.persons = [self.person(titles) for _ in range(s.persons)]
        self.local_persons = {
            lang: [self.person(titles, with_career=False) for _ in range(s.local_persons_per_language)]
            for lang in s.languages
        }
        self.local_article_of = {
            lang: {i for i in range(len(self.persons)) if rng.random() < s.local_article_rate}
            for lang in s.languages
        }

    def _unique_name(self, taken: set[Name]) -> Name:
        while True:
            name = Name((self.rng.choice(self.first_names), self.rng.choice(self.surnames)))
            if name not in taken:
                taken.add(name)
                return name

    def person(self, titles: list[str], with_career: bool = True) -> Person:
        rng = self.rng
        if not hasattr(self, "_names"):
            self._names: set[Name] = set()
        born = self.years(1550, 1900)
        p = Person(
            name=self._unique_name(self._names),
            gender=rng.choice("mf"),
            occupation=rng.choice(sorted(OCCUPATIONS)),
            born_year=born,
            born_place=rng.choice(self.places),
            died_year=born + rng.randint(40, 90),
            died_place=rng.choice(self.places),
            spouse=self._unique_name(self._names),
            spouse_year=born + rng.randint(20, 38),
        )
        if with_career:
            p.school = rng.choice(self.orgs)
            p.employer = rng.choice(self.orgs)
            p.employer_year = born + rng.randint(22, 35)
            p.work = titles.pop() if titles else f"The {rng.choice(WORK_NOUNS)} of {rng.choice(self.places).render()}"
            p.work_year = born + rng.randint(25, 39)
        return p

    # -- English collection ------------------------------------------------------
    def _pronouns(self, p: Person) -> dict[str, str]:
        he, his, him = ("He", "His", "him") if p.gender == "m" else ("She", "Her", "her")
        return {"he": he, "his": his, "him": him, "he_lower": he.lower(), "his_lower": his.lower()}

    def _fact_sentence(self, p: Person, fact: str) -> str:
        values = {
            "full": p.name.render(), "short": p.name.last.render(), "occ": p.occupation,
            **self._pronouns(p),
        }
        if fact == "born":
            values |= {"place": p.born_place.render(), "year": p.born_year}
        elif fact == "died":
            values |= {"place": p.died_place.render(), "year": p.died_year}
        elif fact == "school":
            values |= {"org": p.school}
        elif fact == "employer":
            values |= {"org": p.employer, "year": p.employer_year}
        elif fact == "work":
            values |= {"work": p.work, "year": p.work_year}
        elif fact == "spouse":
            values |= {"spouse": p.spouse.render(), "year": p.spouse_year}
        return self.rng.choice(EN_FACTS[fact]).format(**values)

    def _filler_values(self) -> dict:
        rng = self.rng
        place, place2 = rng.sample(self.places, 2)
        other = rng.choice(self.persons).name.render() if getattr(self, "persons", None) else ""
        return {
            "place": place.render(), "place2": place2.render(), "org": rng.choice(self.orgs),
            "year": self.years(), "num": rng.randint(2, 90) * 1000, "river": rng.choice(RIVER_WORDS),
            "thing": rng.choice(THINGS), "decade": rng.randint(155, 194) * 10, "other": other,
        }

    def _pad(self, sentences: list[str], templates: tuple[str, ...], extra: dict | None = None) -> str:
        """Append filler sentences until the passage reaches the configured length."""
        while sum(len(s.split()) for s in sentences) < self.sizes.passage_words:
            values = self._filler_values() | (extra or {})
            sentences.append(self.rng.choice(templates).format(**values))
        return " ".join(sentences)

    def english_passages(self) -> list[Passage]:
        rng, passages = self.rng, []
        for p in self.persons:
            groups = [["occupation", "born", "school"], ["employer", "work"], ["spouse", "died"]]
            for facts in groups:
                sentences = [self._fact_sentence(p, f) for f in facts]
                passages.append(Passage("", p.name.render(), self._pad(sentences, EN_PERSON_FILLER + EN_FILLER, self._pronouns(p))))
        born_in: dict[Word, list[Person]] = {}
        for p in self.persons:
            born_in.setdefault(p.born_place, []).append(p)
        for place in self.places:
            people = born_in.get(place, [])[:3]
            sentences = [f"{place.render()} is a town near the {rng.choice(RIVER_WORDS)}, first mentioned in {self.years()}."]
            if people:
                sentences.append("People born in {} include {}.".format(place.render(), ", ".join(x.name.render() for x in people)))
            passages.append(Passage("", place.render(), self._pad(sentences, EN_FILLER)))
        members: dict[str, list[Person]] = {}
        for p in self.persons:
            members.setdefault(p.employer, []).append(p)
        for org in self.orgs:
            people = members.get(org, [])[:3]
            sentences = [f"{org} was founded in {self.years()} in {rng.choice(self.places).render()}."]
            if people:
                sentences.append("Its former staff include {}.".format(" and ".join(x.name.render() for x in people)))
            passages.append(Passage("", org, self._pad(sentences, EN_FILLER)))
        for _ in range(self.sizes.filler_articles):
            title = rng.choice(self.places).render()
            passages.append(Passage("", f"History of {title}", self._pad([], EN_FILLER, {"place": title})))
        rng.shuffle(passages)
        return [Passage(str(i), p.title, p.text) for i, p in enumerate(passages, start=1)]

    # -- in-language collections (XOR-Full) -----------------------------------------
    def _local_sentence(self, p: Person, fact: str, lang: str, gloss: bool = False, latin: bool = False) -> str:
        """One fact in the question language. `gloss` adds the original Latin spelling
        after the name, as Wikipedias do on a foreign person's first mention; `latin`
        writes the name in Latin script only (code-switching, common for foreign names)."""
        template = LOCAL_FACTS[fact][lang]
        if isinstance(template, dict):
            template = template[p.gender]
        name = p.name.render("en" if latin else lang)
        values = {"name": name + (f" ({p.name.render()})" if gloss else ""), "occ": OCCUPATIONS[p.occupation][lang]}
        if lang == "ko":
            values["name_topic"] = values["name"] + ("은" if latin or korean_has_final(name) else "는")
        if fact == "born":
            values |= {"place": p.born_place.render(lang), "year": p.born_year}
        elif fact == "died":
            values |= {"place": p.died_place.render(lang), "year": p.died_year}
        elif fact == "spouse":
            values |= {"spouse": p.spouse.render(lang), "year": p.spouse_year}
        return template.format(**values)

    def _local_pad(self, sentences: list[str], lang: str) -> str:
        while sum(len(s.split()) for s in sentences) < self.sizes.passage_words // 2 or len(sentences) < 4:
            place = self.rng.choice(self.places).render(lang)
            values = {"place": place, "year": self.years()}
            if lang == "ko":
                values["place_topic"] = place + ("은" if korean_has_final(place) else "는")
            sentences.append(self.rng.choice(LOCAL_FILLER[lang]).format(**values))
        return " ".join(sentences)

    def local_passages(self, lang: str) -> list[Passage]:
        passages = []
        for p in self.local_persons[lang]:
            for facts in (["born", "occupation"], ["spouse", "died"]):
                sentences = [self._local_sentence(p, f, lang) for f in facts]
                passages.append(Passage("", p.name.render(lang), self._local_pad(sentences, lang)))
        for i in sorted(self.local_article_of[lang]):
            p = self.persons[i]
            sentences = [self._local_sentence(p, f, lang, gloss=(f == "born"),
                                              latin=f != "born" and self.rng.random() < self.sizes.code_switch_rate)
                         for f in ("born", "occupation", "spouse", "died")]
            passages.append(Passage("", p.name.render(lang), self._local_pad(sentences, lang)))
        self.rng.shuffle(passages)
        return [Passage(f"{lang}_{i}", p.title, p.text) for i, p in enumerate(passages, start=1)]

    # -- questions -------------------------------------------------------------------
    def _question_text(self, p: Person, relation: str, lang: str, latin_name: bool) -> str:
        template = QUESTIONS[relation][lang]
        if isinstance(template, dict):
            template = template[p.gender]
        name = p.name.render("en" if latin_name else lang)
        year = {"employer": p.employer_year, "spouse": p.spouse_year}.get(relation, "")
        return template.format(name=name, year=year)

    @staticmethod
    def english_answer(p: Person, relation: str) -> str:
        return {
            "born_year": str(p.born_year), "born_place": p.born_place.render(), "school": p.school,
            "employer": p.employer, "work": p.work, "spouse": p.spouse.render() if p.spouse else "",
            "died_year": str(p.died_year), "died_place": p.died_place.render(),
        }[relation]

    @staticmethod
    def local_answer(p: Person, relation: str, lang: str) -> str:
        return {
            "born_year": str(p.born_year), "born_place": p.born_place.render(lang),
            "spouse": p.spouse.render(lang) if p.spouse else "", "died_year": str(p.died_year),
            "died_place": p.died_place.render(lang),
        }[relation]

    def _qid(self) -> str:
        while True:
            qid = str(self.rng.randrange(10**17, 10**18))
            if qid not in self._qids:
                self._qids.add(qid)
                return qid

    def questions(self) -> dict[str, dict[str, list[GoldQuestion]]]:
        """XOR-Retrieve and XOR-Full questions per split.

        XOR-Full shares the XOR-Retrieve questions (same ids) whose answers can be
        written in the question language, then adds questions about local people.
        """
        s, rng = self.sizes, self.rng
        self._qids: set[str] = set()
        pool = [(i, r) for i in range(len(self.persons)) for r in RELATIONS]
        rng.shuffle(pool)
        out: dict[str, dict[str, list[GoldQuestion]]] = {"xor_retrieve": {}, "xor_full": {}}
        local_pool = {lang: [(i, r) for i in range(len(self.local_persons[lang])) for r in FULL_RELATIONS]
                      for lang in s.languages}
        for pool_list in local_pool.values():
            rng.shuffle(pool_list)
        for split in ("train", "dev"):
            retrieve, full = [], []
            n_retrieve = s.questions["xor_retrieve"][split]
            n_full = s.questions["xor_full"][split]
            for lang in s.languages:
                lang_full: list[GoldQuestion] = []
                for _ in range(n_retrieve):
                    i, relation = pool.pop()
                    p = self.persons[i]
                    latin = lang == "fi" or rng.random() < s.shared_name_rate
                    q = GoldQuestion(self._qid(), self._question_text(p, relation, lang, latin), lang,
                                     (self.english_answer(p, relation),))
                    retrieve.append(q)
                    if relation in FULL_RELATIONS and len(lang_full) < n_full // 2:
                        lang_full.append(GoldQuestion(q.id, q.text, lang, (self.local_answer(p, relation, lang),)))
                while len(lang_full) < n_full:
                    i, relation = local_pool[lang].pop()
                    p = self.local_persons[lang][i]
                    lang_full.append(GoldQuestion(self._qid(), self._question_text(p, relation, lang, False), lang,
                                                  (self.local_answer(p, relation, lang),)))
                full.extend(lang_full)
            out["xor_retrieve"][split] = retrieve
            out["xor_full"][split] = full
        return out


# Canonical file names under the dataset's data directory (the paper data uses the same).
def data_files(data_dir: str | Path) -> dict[str, Path]:
    d = Path(data_dir)
    return {
        "xor_retrieve_train": d / "xor_retrieve" / "train.jsonl",
        "xor_retrieve_dev": d / "xor_retrieve" / "dev.jsonl",
        "xor_full_train": d / "xor_full" / "train.jsonl",
        "xor_full_dev": d / "xor_full" / "dev.jsonl",
        "corpus_xor_retrieve": d / "corpus" / "xor_retrieve.tsv",
        "corpus_xor_full": d / "corpus" / "xor_full.tsv",
    }


def generate(sizes: ToySizes, out_dir: str | Path) -> dict[str, Path]:
    """Generate the toy benchmark into `out_dir`; returns the written files."""
    gen = _Generator(sizes)
    gen.build_world()
    english = gen.english_passages()
    local = [p for lang in sizes.languages for p in gen.local_passages(lang)]
    multilingual = [Passage(f"en_{p.id}", p.title, p.text) for p in english] + local
    questions = gen.questions()
    files = data_files(out_dir)
    _check_answers_are_spans(questions, english, multilingual)
    for key, path in files.items():
        with atomic_file(path) as tmp:
            if key == "corpus_xor_retrieve":
                write_dpr_tsv(tmp, english)
            elif key == "corpus_xor_full":
                write_dpr_tsv(tmp, multilingual)
            else:
                task, split = key.rsplit("_", 1)
                write_questions(tmp, questions[task][split])
    n_words = sum(len(p.text.split()) for p in english) / len(english)
    log.info("toy benchmark (seed %d): %d English passages (%.0f words on average), %d XOR-Full passages",
             sizes.seed, len(english), n_words, len(multilingual))
    for task in questions:
        for split, qs in questions[task].items():
            log.info("  %s/%s: %d questions", task, split, len(qs))
    return files


def _check_answers_are_spans(questions: dict, english: list[Passage], multilingual: list[Passage]) -> None:
    """Every answer must occur in its collection, or the benchmark is broken.

    XOR-Full questions shared with XOR-Retrieve are exempt on the XOR-Full side: like
    the real data, their in-language answers are translations of English spans,
    which the English passages hold.
    """
    en_text = "\n".join(p.text for p in english)
    all_text = "\n".join(p.text for p in multilingual)
    for split, qs in questions["xor_retrieve"].items():
        for q in qs:
            if not any(a in en_text for a in q.answers):
                raise AssertionError(f"toy xor_retrieve/{split} question {q.id}: answer {q.answers} not in the collection")
    for split, qs in questions["xor_full"].items():
        shared = {q.id for q in questions["xor_retrieve"][split]}
        for q in qs:
            if q.id not in shared and not any(a in all_text for a in q.answers):
                raise AssertionError(f"toy xor_full/{split} question {q.id}: answer {q.answers} not in the collection")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m umr.toy", description="Generate the built-in toy benchmark.")
    p.add_argument("--out", required=True, help="data directory to write")
    p.add_argument("--sizes", default="{}", help="JSON object overriding the default sizes (config key `toy`)")
    p.add_argument("--languages", nargs="+", default=list(XOR_LANGUAGES), help="question languages")
    return p


def sizes_from_config(section: dict | None, languages: Sequence[str] = XOR_LANGUAGES) -> ToySizes:
    return ToySizes(**dict(section or {}), languages=tuple(languages))


def _main(args: argparse.Namespace) -> None:
    generate(sizes_from_config(json.loads(args.sizes), args.languages), args.out)


if __name__ == "__main__":
    raise SystemExit(run_cli(_parser, _main))
