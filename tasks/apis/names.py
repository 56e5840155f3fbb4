"""People's names for record linkage: first name, surname and the first name's formal forms.

'Smith, John A.' and 'Dr John A Smith' -> first 'john', surname 'smith' (titles and middle initials
dropped; with a comma the surname comes first). Without a comma the first word is the first name and
the last word the surname, so 'Smith John' comes out swapped: the comparisons have a level for that.
A single word is kept as the first name (the comparisons also try it against the other's surname).
`first_forms` holds the first name and its formal forms from the `nicknames` data set ('bob' ->
bob, robert), so Bob and Robert agree.
"""
from __future__ import annotations

import functools
from collections.abc import Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from nicknames import NickNamer

from tasks.apis.normalise import clean, map_words, nulls, strings

TITLES = frozenset("mr mrs ms miss mx dr prof sir dame rev".split())
NAME_COLUMNS = ("first_name", "surname", "first_forms")


def normalise_name(value: str | None) -> str:
    """'Dr. José  GARCÍA-López' -> 'jose garcia lopez' (titles and middle initials dropped)."""
    return " ".join(_words(pd.Series([value], dtype=object))[0])


@functools.lru_cache(maxsize=1)
def _nicknamer() -> NickNamer:
    return NickNamer()


@functools.lru_cache(maxsize=200_000)
def _forms(first: str) -> tuple[str, ...]:
    return tuple(sorted({first, *_nicknamer().canonicals_of(first)}))


def _words(values: pd.Series) -> list[list[str]]:
    """Each name's words, surname first when the name had a comma; titles and middle initials gone."""
    text = strings(values)
    comma = pc.match_substring(text, ",").to_numpy(zero_copy_only=False)
    # "Smith, John" -> "John Smith" before the punctuation goes
    swapped = pc.replace_substring_regex(text, r"^\s*([^,]*?)\s*,\s*(.*)$", r"\2 \1")
    words = map_words(clean(pc.if_else(pa.array(comma), swapped, text)), lambda w: "" if w in TITLES else w)
    out = []
    for row in words.to_pylist():
        tokens = row.split()
        if sum(len(t) > 1 for t in tokens) >= 2:  # initials go when two longer words remain
            tokens = [t for t in tokens if len(t) > 1]
        out.append(tokens)
    return out


def parse_names(values: Iterable) -> pd.DataFrame:
    """first_name, surname (None when missing) and first_forms (list) per name."""
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    firsts, surnames = [], []
    for tokens in _words(series.reset_index(drop=True)):
        firsts.append(tokens[0] if tokens else "")
        surnames.append(tokens[-1] if len(tokens) > 1 else "")
    first = nulls(pa.array(firsts, pa.string()))
    return pd.DataFrame({"first_name": first, "surname": nulls(pa.array(surnames, pa.string())),
                         "first_forms": [list(_forms(f)) if f else None for f in first]})
