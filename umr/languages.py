"""The XOR-TyDi QA languages and their English names (used in reranker prompts)."""

from __future__ import annotations

# Question languages of XOR-TyDi QA, in the paper's table order.
XOR_LANGUAGES: tuple[str, ...] = ("ar", "bn", "fi", "ja", "ko", "ru", "te")

LANGUAGE_NAMES: dict[str, str] = {
    "ar": "Arabic",
    "bn": "Bengali",
    "fi": "Finnish",
    "ja": "Japanese",
    "ko": "Korean",
    "ru": "Russian",
    "te": "Telugu",
    "en": "English",
}


def language_name(code: str) -> str:
    """English name of a language code, as the reranker prompt spells it."""
    try:
        return LANGUAGE_NAMES[code]
    except KeyError:
        raise KeyError(f"unknown language code {code!r}; known: {', '.join(LANGUAGE_NAMES)}") from None
