"""Addresses split into parts for record linkage: US, UK, Canada, Australia and India.

From the end: country words, then the postcode (US 12345 or 12345-6789, Canada A1A 1A1, UK
SW1A 1AA, Australia 4 digits, India 6 digits or 560 001) and the state/province (code or name, e.g.
'Illinois' -> il, 'New South Wales' -> nsw, 'Ontario' -> on, 'Karnataka' -> ka; only the regions of the
row's country when it is known). In what is left: the unit ('Apt 4', '#4', 'Flat 2', 'Suite 5', '4/12'
= unit 4 at number 12), the house number, the street name up to its type (St, Road, Crescent,
Circuit, Close, Parade, Terrace, ... misspelt long types and types glued to the name included), what
comes before the house number (a building or property name: 'Rose Court, 12 High St') and what
comes after the street (the locality: suburb, town, city; a property name written after the street
stays in it). A part that is not there is None. Vectorised: a few regular expressions over the
column, each distinct word mapped once.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.apis.address_words import (
    ALL_REGIONS,
    COUNTRY_WORDS,
    DIRECTIONS,
    LONG_TYPES,
    MULTI_WORD,
    REGIONS,
    STREET_TYPES,
    address_word,
)
from tasks.apis.normalise import clean, map_words, nulls, strings

ADDRESS_COLUMNS = ("house", "unit", "street", "street_type", "building", "locality", "postcode", "region")
POSTCODE = (r"\d{5}(?: ?\d{4})?|\d{3} ?\d{3}|\d{4}|[a-z]\d[a-z] ?\d[a-z]\d|"
            r"[a-z]{1,2}\d[a-z\d]? ?\d[a-z]{2}")
# the end of an address, tried in this order: postcode + region, region + postcode, postcode, region
TAILS = (rf"[ ,]+(?P<pc>{POSTCODE})[ ,]+(?P<r>[a-z]+)[ ,]*$", rf"[ ,]+(?P<r>[a-z]+)[ ,]+(?P<pc>{POSTCODE})[ ,]*$",
         rf"[ ,]+(?P<pc>{POSTCODE})[ ,]*$", r"[ ,]+(?P<r>[a-z]+)[ ,]*$")
TYPES = "|".join(sorted(set(STREET_TYPES.values()), key=len, reverse=True))
DIRECTION = "|".join(sorted(set(DIRECTIONS.values()), key=len, reverse=True))
HOUSE = r"\d+[a-z]?(?:_\d+[a-z]?)?"
NAME = r"(?:[a-z0-9]+ ){0,3}?[a-z][a-z0-9]*"
WITH_HOUSE = (rf"^(?P<pre>|.*?[ ,])(?P<house>{HOUSE}) (?:(?:{DIRECTION}) )?(?P<name>{NAME}) (?P<type>{TYPES})"
              rf"(?: (?:{DIRECTION}))?(?P<post>(?: .*)?)$")
WITHOUT_HOUSE = rf"^(?P<pre>|.*?, )(?P<name>{NAME}) (?P<type>{TYPES})(?: (?:{DIRECTION}))?(?P<post>(?: .*)?)$"
UNTYPED = rf"^(?P<pre>|.*?[ ,])(?P<house>{HOUSE}) (?P<name>[a-z][a-z0-9]*(?: [a-z][a-z0-9]*)?)(?P<post>(?: .*)?)$"
UNIT = r"\bunit (?P<unit>[a-z]?\d+[a-z]?|[a-z])\b"


def _field(struct: pa.Array, name: str) -> np.ndarray:
    index = struct.type.get_field_index(name)
    return pc.fill_null(pc.struct_field(struct, [index]), "").to_numpy(zero_copy_only=False).astype(object)


def _prepare(values: Iterable) -> pa.Array:
    """Cleaned text with commas kept: '4/12' -> 'unit 4 12', '#5' -> 'unit 5', '12-14' -> '12_14',
    multi-word region names joined, glued types split, words in canonical form."""
    text = pc.utf8_lower(strings(values))
    text = pc.replace_substring_regex(text, r"\b([a-z]?\d{1,5}[a-z]?)\s*/\s*(\d+[a-z]?)\b", r" unit \1 \2")
    text = pc.replace_substring_regex(text, r"#\s*", " unit ")
    text = pc.replace_substring_regex(text, r"(\d)\s*-\s*(\d)", r"\1_\2")
    text = clean(text, keep_commas=True)
    text = _join_multi_word(text)
    glued = "|".join(LONG_TYPES)
    text = pc.replace_substring_regex(text, rf"\b([a-z]{{3,}}?)({glued})\b", r"\1 \2")
    text = map_words(text, address_word)
    text = pc.replace_substring_regex(text, r"\bunit(?: unit)+\b", "unit")
    return pc.replace_substring_regex(text, r"(?:[ ,]+(?:" + "|".join(sorted(COUNTRY_WORDS)) + r"))+$", "")


def _join_multi_word(text: pa.Array) -> pa.Array:
    """'new south wales' -> 'newsouthwales' (a region is one word), only in the rows that have one."""
    rows = np.flatnonzero(pc.match_substring_regex(text, MULTI_WORD).to_numpy(zero_copy_only=False))
    if not len(rows):
        return text
    some = text.take(pa.array(rows))
    for phrase in MULTI_WORD[3:-3].split("|"):
        some = pc.replace_substring_regex(some, rf"\b{phrase}\b", phrase.replace(" ", ""))
    values = text.to_numpy(zero_copy_only=False).astype(object)
    values[rows] = some.to_numpy(zero_copy_only=False)
    return pa.array(values, pa.string())


def parse_addresses(values: Iterable, countries: Iterable | None = None) -> pd.DataFrame:
    """ADDRESS_COLUMNS per address (None where a part is missing); countries: ISO codes per row
    (US, GB, CA, AU, IN; anything else or None = any), used to read the region."""
    values = list(values)
    text = _prepare(values)
    country = (pd.Series(list(countries), dtype=object) if countries is not None
               else pd.Series([None] * len(values), dtype=object)).fillna("").str.upper().to_numpy()
    head, postcode, region = _tail(text, country)
    parts = _street_parts(pc.utf8_trim(pa.array(head, pa.string()), " ,"))
    postcode = pd.Series(postcode, dtype=object).str.replace(" ", "", regex=False)
    postcode = postcode.where(~postcode.str.fullmatch(r"\d{9}"), postcode.str[:5])  # ZIP+4 -> ZIP
    out = pd.DataFrame({**parts, "postcode": postcode.where(postcode != "", None),
                        "region": pd.Series(region, dtype=object).where(region != "", None)})
    return out[list(ADDRESS_COLUMNS)]


def _tail(text: pa.Array, country: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(text before the postcode and region, postcode, region code) per row ("" when absent); a word
    counts as the region only when it names one of the row's country."""
    n = len(text)
    head = text.to_numpy(zero_copy_only=False).astype(object)
    postcode, region = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    todo = np.ones(n, dtype=bool)
    for pattern in TAILS:
        rows = np.flatnonzero(todo)
        some = text.take(pa.array(rows))
        found = pc.extract_regex(some, pattern)
        hit = found.is_valid().to_numpy(zero_copy_only=False)
        names = found.type.names
        if "r" in names:
            codes, known = _regions(_field(found, "r"), country[rows])
            hit &= known
            region[rows[hit]] = codes[hit]
        if "pc" in names:
            postcode[rows[hit]] = _field(found, "pc")[hit]
        head[rows[hit]] = pc.replace_substring_regex(some.filter(pa.array(hit)), pattern, "").to_numpy(
            zero_copy_only=False)
        todo[rows[hit]] = False
    return head, postcode, region


def _regions(words: np.ndarray, country: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(region code or "", whether the word names a region of the row's country) per row."""
    key = pd.Series(words, dtype=object).fillna("") + "|" + pd.Series(country, dtype=object).fillna("")
    lookup = {}
    for pair in key.unique():
        word, _, land = pair.partition("|")
        lookup[pair] = REGIONS.get(land, ALL_REGIONS).get(word, "")
    codes = key.map(lookup).to_numpy(dtype=object)
    return codes, codes != ""


def _street_parts(head: pa.Array) -> dict[str, pd.Series]:
    """house, unit, street, street_type, building, locality from the text before the postcode."""
    n = len(head)
    unit = _field(pc.extract_regex(head, rf"^.*?{UNIT}"), "unit")
    head = pc.utf8_trim(pc.replace_substring_regex(head, UNIT, " ", max_replacements=1), " ,")
    head = pc.replace_substring_regex(head, r"(?: ,)+", " ,")
    pre, house, name, kind, post = (np.full(n, "", dtype=object) for _ in range(5))
    todo = np.ones(n, dtype=bool)
    for pattern, has_house, has_type in ((WITH_HOUSE, True, True), (WITHOUT_HOUSE, False, True),
                                         (UNTYPED, True, False)):
        rows = np.flatnonzero(todo)
        if not len(rows):
            break
        found = pc.extract_regex(head.take(pa.array(rows)), pattern)
        hit = found.is_valid().to_numpy(zero_copy_only=False)
        at = rows[hit]
        found = found.filter(pa.array(hit))
        pre[at], name[at], post[at] = _field(found, "pre"), _field(found, "name"), _field(found, "post")
        if has_house:
            house[at] = _field(found, "house")
        if has_type:
            kind[at] = _field(found, "type")
        todo[at] = False
    rest = np.flatnonzero(todo)  # nothing street-like: it all counts as the locality
    post[rest] = head.take(pa.array(rest)).to_numpy(zero_copy_only=False)
    for text in (pre, post):  # no house number next to a street: one leading the text before or after it
        lone = np.flatnonzero(house == "")
        found = pc.extract_regex(pa.array(text[lone], pa.string()), rf"^[ ,]*(?P<house>{HOUSE})(?P<rest>(?:[ ,].*)?)$")
        hit = found.is_valid().to_numpy(zero_copy_only=False)
        house[lone[hit]] = _field(found.filter(pa.array(hit)), "house")
        text[lone[hit]] = _field(found.filter(pa.array(hit)), "rest")
    before, after = pa.array(pre, pa.string()), pa.array(post, pa.string())

    def words_only(text: pa.Array) -> pd.Series:
        text = pc.replace_substring_regex(text, r"[ ,]+", " ")
        return nulls(pc.utf8_trim_whitespace(text))

    def column(values: np.ndarray) -> pd.Series:
        return nulls(pa.array(values, pa.string()))

    return {"house": column(np.array([h.replace("_", "-") for h in house], dtype=object)), "unit": column(unit),
            "street": column(name), "street_type": column(kind), "building": words_only(before),
            "locality": words_only(after)}
