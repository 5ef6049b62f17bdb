"""Text normalisation: the one function every transcript in minutes goes through.

Every manifest's `text`, every LM corpus and every scored hypothesis must share one alphabet,
or WER measures spelling conventions instead of recognition. The alphabet is that of the real
corpus (speechocean762): upper-case A-Z, the apostrophe inside words, single spaces. Numbers
are spelled as words the way a reader would say them ("1984" -> "NINETEEN EIGHTY FOUR",
"3.5" -> "THREE POINT FIVE", "21st" -> "TWENTY FIRST", "50%" -> "FIFTY PERCENT").
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalise_text", "number_to_words", "ALPHABET"]

ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ")

_ONES = (
    "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE THIRTEEN FOURTEEN "
    "FIFTEEN SIXTEEN SEVENTEEN EIGHTEEN NINETEEN"
).split()
_TENS = "_ _ TWENTY THIRTY FORTY FIFTY SIXTY SEVENTY EIGHTY NINETY".split()
_SCALES = ((10**12, "TRILLION"), (10**9, "BILLION"), (10**6, "MILLION"), (1000, "THOUSAND"))
_ORDINAL_IRREGULAR = {
    "ONE": "FIRST", "TWO": "SECOND", "THREE": "THIRD", "FIVE": "FIFTH", "EIGHT": "EIGHTH",
    "NINE": "NINTH", "TWELVE": "TWELFTH",
}
_SYMBOLS = {
    "&": " AND ", "%": " PERCENT ", "+": " PLUS ", "=": " EQUALS ", "@": " AT ",
    "#": " NUMBER ", "°": " DEGREES ",
}
_CURRENCY = {"$": "DOLLARS", "£": "POUNDS", "€": "EUROS"}


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "HUNDRED"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        if n % 10:
            words.append(_ONES[n % 10])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int, *, year_style: bool = False) -> str:
    """Spell a non-negative integer. `year_style` reads 1000-2099 pairs as years do (1984 ->
    NINETEEN EIGHTY FOUR, 2005 -> TWO THOUSAND FIVE), which is how numbers in prose are read."""
    if n < 0:
        return "MINUS " + number_to_words(-n)
    if year_style and 1100 <= n <= 1999 and n % 100 != 0:
        hi, lo = divmod(n, 100)
        low = "OH " + _ONES[lo] if lo < 10 else " ".join(_below_thousand(lo))
        return " ".join(_below_thousand(hi)) + " " + low
    if n == 0:
        return "ZERO"
    words: list[str] = []
    for value, name in _SCALES:
        if n >= value:
            words += number_to_words(n // value).split() + [name]
            n %= value
    if n:
        words += _below_thousand(n)
    return " ".join(words)


def _ordinal(words: str) -> str:
    parts = words.split()
    last = parts[-1]
    if last in _ORDINAL_IRREGULAR:
        parts[-1] = _ORDINAL_IRREGULAR[last]
    elif last.endswith("Y"):
        parts[-1] = last[:-1] + "IETH"
    else:
        parts[-1] = last + "TH"
    return " ".join(parts)


def _spell_number(match: re.Match[str]) -> str:
    cur, whole, frac, suffix = match.group("cur"), match.group("int"), match.group("frac"), match.group("suf")
    whole = whole.replace(",", "")
    if len(whole) > 15:  # a serial number, not a quantity: read digit by digit
        return " " + " ".join(_ONES[int(d)] for d in whole) + " "
    n = int(whole)
    # Years (4 digits, no separators, no decimals) are read as years; "0042" digit by digit.
    if whole.startswith("0") and len(whole) > 1:
        text = " ".join(_ONES[int(d)] for d in whole)
    else:
        text = number_to_words(n, year_style=len(whole) == 4 and not frac and not cur)
    if cur and frac and len(frac) == 2:  # $3.50 -> THREE DOLLARS FIFTY
        cents = number_to_words(int(frac))
        return f" {text} {_CURRENCY[cur]} {cents} "
    if frac:
        text += " POINT " + " ".join(_ONES[int(d)] for d in frac)
    if suffix:
        s = suffix.lower()
        if s in ("st", "nd", "rd", "th"):
            text = _ordinal(text)
        elif s == "s":  # 1960s -> NINETEEN SIXTIES
            text = _ordinal(text)[:-2] + "S" if text.endswith("Y") else text + "S"
    if cur:
        text += " " + _CURRENCY[cur]
    return f" {text} "


_NUMBER = re.compile(
    r"(?P<cur>[$£€])?(?P<int>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<frac>\d+))?(?P<suf>st|nd|rd|th|s)?\b",
    re.IGNORECASE,
)


def normalise_text(text: str) -> str:
    """Normalise any transcript to minutes' alphabet: upper case A-Z, inner apostrophes, single
    spaces; numbers spelled out; all other punctuation dropped. Idempotent."""
    text = unicodedata.normalize("NFKD", text)
    text = text.replace("’", "'").replace("‘", "'").replace("`", "'")
    text = "".join(c for c in text if not unicodedata.combining(c))
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = _NUMBER.sub(_spell_number, text)
    text = text.upper()
    # Hyphens and slashes join words that are read separately ("well-known" -> WELL KNOWN).
    text = re.sub(r"[^A-Z' ]+", " ", text)
    # Keep apostrophes only inside words ("DON'T"), not as quotes ('HELLO').
    text = re.sub(r"(?<![A-Z])'|'(?![A-Z])", " ", text)
    return " ".join(text.split())
