"""Text clean-up shared by the name and address parsers, vectorised with pyarrow.

Lower case, accents and apostrophes dropped, other punctuation to spaces (commas kept as their own
word when asked, since they separate the parts of an address); each distinct word is mapped once in
Python (a table of variants -> canonical word), so a million rows cost a few seconds.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SPECIAL = str.maketrans({"ß": "ss", "ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th",
                         "ı": "i"})


def variants_table(spec: str) -> dict[str, str]:
    """'st: street str; ave: avenue' -> {'street': 'st', 'str': 'st', 'st': 'st', 'avenue': 'ave', ...}."""
    out = {}
    for entry in spec.split(";"):
        canon, _, variants = entry.partition(":")
        out.update({v: canon.strip() for v in [canon.strip(), *variants.split()]})
    return out


def ascii_word(token: str) -> str:
    """'García' -> 'garcia' (letters and digits only)."""
    plain = unicodedata.normalize("NFKD", token.translate(SPECIAL))
    return "".join(c for c in plain if c.isascii() and c.isalnum())


def strings(values: Iterable) -> pa.Array:
    """A pyarrow string array of the values, "" for missing ones."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    try:  # text and missing values: no copy through Python objects
        array = pa.array(series, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # numbers among them: as text
        array = pa.array(series.astype(object).where(series.notna(), None).astype("string[pyarrow]"), type=pa.string())
    return pc.fill_null(array, "")


def clean(values: Iterable, keep_commas: bool = False) -> pa.Array:
    """Lower case, apostrophes dropped, punctuation to spaces (', ' kept as ' , '), single spaces."""
    text = pc.utf8_lower(strings(values))
    text = pc.replace_substring_regex(text, r"['’`´]", "")
    if keep_commas:
        text = pc.replace_substring_regex(text, r"[,;\n]+", " , ")
        return pc.replace_substring_regex(text, r"[^\p{L}\p{N},_]+", " ")
    return pc.replace_substring_regex(text, r"[^\p{L}\p{N}]+", " ")


def map_words(text: pa.Array, mapping: Callable[[str], str]) -> pa.Array:
    """Each word of each row through mapping (called once per distinct word after ascii_word; a ','
    word stays); words mapped to "" are dropped."""
    words = pc.utf8_split_whitespace(text)
    codes = pc.dictionary_encode(words.flatten())
    mapped = pa.array([t if t == "," else mapping(ascii_word(t)) for t in codes.dictionary.to_pylist()],
                      pa.string())
    joined = pc.binary_join(pa.ListArray.from_arrays(words.offsets, mapped.take(codes.indices)), " ")
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(joined, " {2,}", " "))


def nulls(array: pa.Array) -> pd.Series:
    """Strings as an object Series with None for "" (Splink treats null as 'no evidence')."""
    series = pd.Series(array.to_numpy(zero_copy_only=False), dtype=object)
    return series.where(series != "", None)
