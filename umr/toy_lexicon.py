"""Words, scripts and sentence templates of the built-in toy benchmark.

Names are built from Latin CV syllables so that each script can render them by
transliteration (Cyrillic, Arabic, Bengali, katakana, Hangul, Telugu), as real
Wikipedias in those languages spell foreign names. Question and passage templates
are short, plausible sentences in each language's own script.
"""

from __future__ import annotations

CONSONANTS = "ktmnrslvdbgphz"
VOWELS = "aeiou"
CODAS = "nrslkm"

_CYRILLIC = dict(zip(CONSONANTS, "ктмнрслвдбгпхз")) | dict(zip(VOWELS, "аеиоу"))
_ARABIC_C = dict(zip(CONSONANTS, "كتمنرسلفدبغبهز"))
_ARABIC_V = dict(zip(VOWELS, ["ا", "ي", "ي", "و", "و"]))
_BENGALI_C = dict(zip(CONSONANTS, "কতমনরসলভদবগপহজ"))
_BENGALI_V = dict(zip(VOWELS, ["া", "ে", "ি", "ো", "ু"]))
_TELUGU_C = dict(zip(CONSONANTS, "కతమనరసలవదబగపహజ"))
_TELUGU_V = dict(zip(VOWELS, ["ా", "ె", "ి", "ొ", "ు"]))
_KANA = {
    "k": "カケキコク", "t": "タテチトツ", "m": "マメミモム", "n": "ナネニノヌ", "r": "ラレリロル",
    "s": "サセシソス", "l": "ラレリロル", "v": "バベビボブ", "d": "ダデジドズ", "b": "バベビボブ",
    "g": "ガゲギゴグ", "p": "パペピポプ", "h": "ハヘヒホフ", "z": "ザゼジゾズ",
}
_KANA_CODA = {"n": "ン", "r": "ル", "s": "ス", "l": "ル", "k": "ク", "m": "ム"}
# Hangul initial-consonant and vowel indices for syllable composition (U+AC00 block).
_HANGUL_INITIAL = dict(zip(CONSONANTS, [15, 16, 6, 2, 5, 9, 5, 7, 3, 7, 0, 17, 18, 12]))
_HANGUL_VOWEL = dict(zip(VOWELS, [0, 5, 20, 8, 13]))
_HANGUL_EU = 18  # ㅡ, the vowel Korean adds after a foreign final consonant
_HANGUL_FINAL_N = 4  # ㄴ as a final consonant


def _hangul(initial: int, vowel: int, final: int = 0) -> str:
    return chr(0xAC00 + (initial * 21 + vowel) * 28 + final)


def transliterate_word(syllables: tuple[str, ...], coda: str, lang: str) -> str:
    """Render one name word (CV syllables + optional final consonant) in a language's script."""
    if lang in ("en", "fi"):
        word = "".join(c + v for c, v in syllables) + coda
        return word[0].upper() + word[1:]
    if lang == "ru":
        word = "".join(_CYRILLIC[c] + _CYRILLIC[v] for c, v in syllables) + (_CYRILLIC[coda] if coda else "")
        return word[0].upper() + word[1:]
    if lang == "ar":
        return "".join(_ARABIC_C[c] + _ARABIC_V[v] for c, v in syllables) + (_ARABIC_C[coda] if coda else "")
    if lang == "bn":
        return "".join(_BENGALI_C[c] + _BENGALI_V[v] for c, v in syllables) + (_BENGALI_C[coda] + "্" if coda else "")
    if lang == "te":
        return "".join(_TELUGU_C[c] + _TELUGU_V[v] for c, v in syllables) + (_TELUGU_C[coda] + "్" if coda else "")
    if lang == "ja":
        return "".join(_KANA[c][VOWELS.index(v)] for c, v in syllables) + (_KANA_CODA[coda] if coda else "")
    if lang == "ko":
        blocks = [_hangul(_HANGUL_INITIAL[c], _HANGUL_VOWEL[v]) for c, v in syllables]
        if coda == "n":
            last = ord(blocks[-1]) - 0xAC00
            blocks[-1] = chr(0xAC00 + last + _HANGUL_FINAL_N)
        elif coda:
            blocks.append(_hangul(_HANGUL_INITIAL[coda], _HANGUL_EU))
        return "".join(blocks)
    raise KeyError(f"no transliteration for language {lang!r}")


NAME_SEPARATOR = {"ja": "・"}


def korean_has_final(word: str) -> bool:
    """Whether a Hangul word ends in a final consonant (decides particle forms)."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


# English words used in titles of works and in filler sentences.
WORK_ADJECTIVES = (
    "Silent", "Golden", "Hidden", "Northern", "Broken", "Distant", "Crimson", "Quiet", "Endless", "Winter",
    "Second", "Lonely", "Bright", "Ancient", "Open", "Iron", "Pale", "Wandering", "Last", "Burning",
)
WORK_NOUNS = (
    "Harbor", "Garden", "Letters", "River", "Orchard", "Bridge", "Lantern", "Meadow", "Tower", "Voyage",
    "Chronicle", "Mirror", "Symphony", "Compass", "Island", "Window", "Season", "Archive", "Festival", "Road",
)
ORG_KINDS = ("University", "Institute", "Academy", "Conservatory", "Observatory", "Museum", "College", "Society")
RIVER_WORDS = ("river", "lake", "bay", "valley", "hills", "coast")
THINGS = (
    "wool markets", "glass workshops", "old cathedral", "river port", "botanical garden", "printing houses",
    "salt mines", "clock makers", "summer fair", "stone bridge", "fishing fleet", "paper mills",
)

OCCUPATIONS: dict[str, dict[str, str]] = {
    "painter": {"ar": "رسام", "bn": "চিত্রশিল্পী", "fi": "taidemaalari", "ja": "画家", "ko": "화가", "ru": "художник", "te": "చిత్రకారుడు"},
    "composer": {"ar": "ملحن", "bn": "সুরকার", "fi": "säveltäjä", "ja": "作曲家", "ko": "작곡가", "ru": "композитор", "te": "స్వరకర్త"},
    "architect": {"ar": "مهندس معماري", "bn": "স্থপতি", "fi": "arkkitehti", "ja": "建築家", "ko": "건축가", "ru": "архитектор", "te": "వాస్తుశిల్పి"},
    "physicist": {"ar": "فيزيائي", "bn": "পদার্থবিজ্ঞানী", "fi": "fyysikko", "ja": "物理学者", "ko": "물리학자", "ru": "физик", "te": "భౌతిక శాస్త్రవేత్త"},
    "novelist": {"ar": "روائي", "bn": "ঔপন্যাসিক", "fi": "kirjailija", "ja": "小説家", "ko": "소설가", "ru": "писатель", "te": "నవలా రచయిత"},
    "sculptor": {"ar": "نحات", "bn": "ভাস্কর", "fi": "kuvanveistäjä", "ja": "彫刻家", "ko": "조각가", "ru": "скульптор", "te": "శిల్పి"},
    "botanist": {"ar": "عالم نبات", "bn": "উদ্ভিদবিজ্ঞানী", "fi": "kasvitieteilijä", "ja": "植物学者", "ko": "식물학자", "ru": "ботаник", "te": "వృక్షశాస్త్రవేత్త"},
    "engineer": {"ar": "مهندس", "bn": "প্রকৌশলী", "fi": "insinööri", "ja": "技術者", "ko": "기술자", "ru": "инженер", "te": "ఇంజనీర్"},
    "poet": {"ar": "شاعر", "bn": "কবি", "fi": "runoilija", "ja": "詩人", "ko": "시인", "ru": "поэт", "te": "కవి"},
    "historian": {"ar": "مؤرخ", "bn": "ইতিহাসবিদ", "fi": "historioitsija", "ja": "歴史家", "ko": "역사가", "ru": "историк", "te": "చరిత్రకారుడు"},
    "astronomer": {"ar": "فلكي", "bn": "জ্যোতির্বিজ্ঞানী", "fi": "tähtitieteilijä", "ja": "天文学者", "ko": "천문학자", "ru": "астроном", "te": "ఖగోళ శాస్త్రవేత్త"},
    "chemist": {"ar": "كيميائي", "bn": "রসায়নবিদ", "fi": "kemisti", "ja": "化学者", "ko": "화학자", "ru": "химик", "te": "రసాయన శాస్త్రవేత్త"},
}

# English sentence templates per fact; several variants so passages are not uniform.
# {full}: full name, {short}: surname, {he}/{his}: pronouns.
EN_FACTS: dict[str, tuple[str, ...]] = {
    "born": (
        "{full} was born in {place} in {year}.",
        "{full} was born in {year} in the town of {place}.",
        "Born in {place} in {year}, {full} grew up in a large family.",
    ),
    "occupation": (
        "{full} was a {occ} known across the region.",
        "{short} became a {occ} at a young age.",
        "{full} is remembered as a {occ} of unusual range.",
    ),
    "school": (
        "{short} studied at {org}.",
        "{he} was educated at {org}, where {he_lower} later taught for a short time.",
        "As a student {short} attended {org}.",
    ),
    "employer": (
        "From {year} {short} worked at {org}.",
        "In {year} {short} took a position at {org}.",
        "{short} joined {org} in {year} and stayed for many years.",
    ),
    "work": (
        "{his} best known work is {work}, completed in {year}.",
        "In {year} {short} finished {work}, which made {him} famous.",
        "{short} is best known for {work} ({year}).",
    ),
    "spouse": (
        "In {year} {short} married {spouse}.",
        "{short} married {spouse} in {year}.",
        "{his} marriage to {spouse} in {year} was widely reported.",
    ),
    "died": (
        "{short} died in {place} in {year}.",
        "{full} died in {year} in {place}.",
        "{he} spent {his_lower} last years in {place}, where {he_lower} died in {year}.",
    ),
}

EN_PERSON_FILLER: tuple[str, ...] = (
    "{he} often travelled to {place} to visit friends.",
    "{his} letters are kept in the archive of {org}.",
    "{he} corresponded for years with {other}.",
    "{he} spoke several languages and read widely.",
    "Critics have compared {his_lower} style with that of {other}.",
    "{his} early notebooks were lost in a fire.",
    "Contemporaries described {him} as patient and stubborn.",
    "{he} rarely gave interviews and kept no diary.",
)

# Filler is mostly free of names and years: in real collections a random passage
# seldom contains a given answer, and the toy should not let chance find answers.
EN_FILLER: tuple[str, ...] = (
    "The town of {place} lies on a {river}.",
    "{place} is known for its {thing}.",
    "During the {decade}s the region grew quickly.",
    "Local newspapers of the time praised the new bridge.",
    "The winters there are long and the summers short.",
    "Many families moved to the coast in search of work.",
    "Records from that period are incomplete.",
    "The old market square was rebuilt after a flood.",
    "Trade along the river brought timber, salt and grain.",
    "A small museum now tells the story of the district.",
)

# Question templates per relation and language; a dict value splits by grammatical gender.
QUESTIONS: dict[str, dict[str, str | dict[str, str]]] = {
    "born_year": {
        "ar": {"m": "في أي عام ولد {name}؟", "f": "في أي عام ولدت {name}؟"},
        "bn": "{name} কত সালে জন্মগ্রহণ করেন?",
        "fi": "Minä vuonna {name} syntyi?",
        "ja": "{name}は何年に生まれましたか？",
        "ko": "{name}의 출생 연도는 언제입니까?",
        "ru": {"m": "В каком году родился {name}?", "f": "В каком году родилась {name}?"},
        "te": "{name} ఏ సంవత్సరంలో జన్మించారు?",
    },
    "born_place": {
        "ar": {"m": "أين ولد {name}؟", "f": "أين ولدت {name}؟"},
        "bn": "{name} কোথায় জন্মগ্রহণ করেন?",
        "fi": "Missä {name} syntyi?",
        "ja": "{name}はどこで生まれましたか？",
        "ko": "{name}의 출생지는 어디입니까?",
        "ru": {"m": "Где родился {name}?", "f": "Где родилась {name}?"},
        "te": "{name} ఎక్కడ జన్మించారు?",
    },
    "school": {
        "ar": {"m": "أين درس {name}؟", "f": "أين درست {name}؟"},
        "bn": "{name} কোথায় পড়াশোনা করেন?",
        "fi": "Missä {name} opiskeli?",
        "ja": "{name}はどこで学びましたか？",
        "ko": "{name}의 모교는 어디입니까?",
        "ru": {"m": "Где учился {name}?", "f": "Где училась {name}?"},
        "te": "{name} ఎక్కడ చదువుకున్నారు?",
    },
    "employer": {
        "ar": {"m": "أين بدأ {name} العمل في عام {year}؟", "f": "أين بدأت {name} العمل في عام {year}؟"},
        "bn": "{year} সালে {name} কোথায় কাজ শুরু করেন?",
        "fi": "Missä {name} aloitti työt vuonna {year}?",
        "ja": "{year}年に{name}はどこで働き始めましたか？",
        "ko": "{year}년에 {name}의 새 직장은 어디였습니까?",
        "ru": {"m": "Где {name} начал работать в {year} году?", "f": "Где {name} начала работать в {year} году?"},
        "te": "{year}లో {name} ఎక్కడ పని ప్రారంభించారు?",
    },
    "work": {
        "ar": "ما هو أشهر أعمال {name}؟",
        "bn": "{name}-এর সবচেয়ে বিখ্যাত কাজ কোনটি?",
        "fi": "Mikä on henkilön {name} tunnetuin teos?",
        "ja": "{name}の代表作は何ですか？",
        "ko": "{name}의 대표작은 무엇입니까?",
        "ru": "Какое произведение {name} самое известное?",
        "te": "{name} యొక్క ప్రసిద్ధ రచన ఏది?",
    },
    "spouse": {
        "ar": {"m": "من تزوج {name} في عام {year}؟", "f": "من تزوجت {name} في عام {year}؟"},
        "bn": "{year} সালে {name} কাকে বিয়ে করেন?",
        "fi": "Kenen kanssa {name} meni naimisiin vuonna {year}?",
        "ja": "{year}年に{name}は誰と結婚しましたか？",
        "ko": "{year}년에 {name}의 배우자가 된 사람은 누구입니까?",
        "ru": {"m": "На ком женился {name} в {year} году?", "f": "За кого вышла замуж {name} в {year} году?"},
        "te": "{year}లో {name} ఎవరిని వివాహం చేసుకున్నారు?",
    },
    "died_year": {
        "ar": {"m": "في أي عام توفي {name}؟", "f": "في أي عام توفيت {name}؟"},
        "bn": "{name} কত সালে মারা যান?",
        "fi": "Minä vuonna {name} kuoli?",
        "ja": "{name}は何年に亡くなりましたか？",
        "ko": "{name}의 사망 연도는 언제입니까?",
        "ru": {"m": "В каком году умер {name}?", "f": "В каком году умерла {name}?"},
        "te": "{name} ఏ సంవత్సరంలో మరణించారు?",
    },
    "died_place": {
        "ar": {"m": "أين توفي {name}؟", "f": "أين توفيت {name}؟"},
        "bn": "{name} কোথায় মারা যান?",
        "fi": "Missä {name} kuoli?",
        "ja": "{name}はどこで亡くなりましたか？",
        "ko": "{name}의 사망 장소는 어디입니까?",
        "ru": {"m": "Где умер {name}?", "f": "Где умерла {name}?"},
        "te": "{name} ఎక్కడ మరణించారు?",
    },
}

# In-language sentences of the XOR-Full collection: {name}, {place}, {spouse} are
# transliterated, {occ} translated, years in digits. Korean particles are chosen by
# the caller ({name_topic}).
LOCAL_FACTS: dict[str, dict[str, str | dict[str, str]]] = {
    "born": {
        "ar": {"m": "ولد {name} في مدينة {place} عام {year}.", "f": "ولدت {name} في مدينة {place} عام {year}."},
        "bn": "{name} {year} সালে {place} শহরে জন্মগ্রহণ করেন।",
        "fi": "{name} syntyi vuonna {year} kaupungissa {place}.",
        "ja": "{name}は{year}年に{place}で生まれた。",
        "ko": "{name_topic} {year}년 {place}에서 태어났다.",
        "ru": {"m": "{name} родился в {year} году в городе {place}.", "f": "{name} родилась в {year} году в городе {place}."},
        "te": "{name} {year}లో {place}లో జన్మించారు.",
    },
    "occupation": {
        "ar": {"m": "كان {name} {occ}.", "f": "كانت {name} {occ}."},
        "bn": "{name} একজন {occ} ছিলেন।",
        "fi": "{name} oli ammatiltaan {occ}.",
        "ja": "{name}は{occ}であった。",
        "ko": "{name}의 직업은 {occ}이다.",
        "ru": "По профессии {name} — {occ}.",
        "te": "{name} ఒక {occ}.",
    },
    "spouse": {
        "ar": {"m": "تزوج {name} من {spouse} عام {year}.", "f": "تزوجت {name} من {spouse} عام {year}."},
        "bn": "{name} {year} সালে {spouse}-কে বিয়ে করেন।",
        "fi": "{name} meni naimisiin henkilön {spouse} kanssa vuonna {year}.",
        "ja": "{name}は{year}年に{spouse}と結婚した。",
        "ko": "{name}의 배우자는 {spouse}이며 {year}년에 결혼했다.",
        "ru": {"m": "В {year} году {name} женился на {spouse}.", "f": "В {year} году {name} вышла замуж за {spouse}."},
        "te": "{name} {year}లో {spouse}ను వివాహం చేసుకున్నారు.",
    },
    "died": {
        "ar": {"m": "توفي {name} في {place} عام {year}.", "f": "توفيت {name} في {place} عام {year}."},
        "bn": "{name} {year} সালে {place} শহরে মারা যান।",
        "fi": "{name} kuoli vuonna {year} kaupungissa {place}.",
        "ja": "{name}は{year}年に{place}で亡くなった。",
        "ko": "{name_topic} {year}년 {place}에서 사망했다.",
        "ru": {"m": "{name} умер в {year} году в городе {place}.", "f": "{name} умерла в {year} году в городе {place}."},
        "te": "{name} {year}లో {place}లో మరణించారు.",
    },
}

LOCAL_FILLER: dict[str, tuple[str, ...]] = {
    "ar": ("تأسست مدينة {place} عام {year}.", "يقع {place} على ضفاف نهر كبير.", "افتتحت مكتبة جديدة في {place} عام {year}."),
    "bn": ("{place} শহরটি {year} সালে প্রতিষ্ঠিত হয়।", "{place} একটি বড় নদীর তীরে অবস্থিত।", "{year} সালে {place} শহরে একটি নতুন গ্রন্থাগার খোলা হয়।"),
    "fi": ("{place} perustettiin vuonna {year}.", "{place} sijaitsee suuren joen rannalla.", "Vuonna {year} kaupunkiin {place} avattiin uusi kirjasto."),
    "ja": ("{place}は{year}年に設立された町である。", "{place}は大きな川のほとりにある。", "{year}年に{place}に新しい図書館が開かれた。"),
    "ko": ("{place_topic} {year}년에 세워진 도시이다.", "{place_topic} 큰 강가에 있다.", "{year}년 {place}에 새 도서관이 문을 열었다."),
    "ru": ("Город {place} основан в {year} году.", "{place} расположен на берегу большой реки.", "В {year} году в городе {place} открылась новая библиотека."),
    "te": ("{place} నగరం {year}లో స్థాపించబడింది.", "{place} ఒక పెద్ద నది ఒడ్డున ఉంది.", "{year}లో {place}లో కొత్త గ్రంథాలయం ప్రారంభమైంది."),
}
