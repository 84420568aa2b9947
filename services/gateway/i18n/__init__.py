"""French and English strings; locale from ?lang=, the `hqx_lang` cookie, or the browser."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALES = ("en", "fr")
DEFAULT = "en"


@cache
def catalog(locale: str) -> dict[str, str]:
    return json.loads((Path(__file__).parent / f"{locale}.json").read_text(encoding="utf-8"))


def pick_locale(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    for choice in (query, cookie):
        if choice in LOCALES:
            return choice
    ranked: list[tuple[float, str]] = []
    for part in (accept_language or "").split(",")[:20]:
        lang, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        ranked.append((weight, lang.split("-")[0].lower()))
    for _, lang in sorted(ranked, key=lambda r: -r[0]):
        if lang in LOCALES:
            return lang
    return DEFAULT


class Translator:
    def __init__(self, locale: str) -> None:
        self.locale = locale
        self.strings = catalog(locale)

    def __call__(self, key: str, **values: object) -> str:
        text = self.strings.get(key) or catalog(DEFAULT).get(key) or key
        return text.format(**values) if values else text
