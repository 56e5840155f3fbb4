"""Duplicate book requests: new requests against the history of past requests and within the batch.

A duplicate is the same person at the same place. Family members at one address (same surname,
another first name) are different people; so are neighbours (another house number or flat) and
namesakes in another town. In a batch the first occurrence is kept and later ones point at it.
History needs request_id, name and address; phone_e164 is optional on both sides (old files lack it).

Normalisation (pyarrow, vectorised; Python only once per distinct word): lower case, accents and
apostrophes dropped, punctuation to spaces, Street/Str -> st, North -> n, Apartment/Unit/Suite/# ->
apt, a state name at the end -> its code; in names, titles and middle initials dropped. An address is
then split into house number, unit, street (up to its type) and town (city, state, zip); a zip
without city gets the city written most often with that zip in the two frames.

Blocking (so 100 000 x 1 000 000 takes seconds): rows are compared only when they share a key. Each
row has several keys, so that a typo or a gap in any one field leaves another key to find the pair:
phone (survives any text typo); zip + each name word (street typos, swapped names); zip + house
number (name typos); house number + each street word (no zip, name typos); house number + each name
word (no zip, street typos). A missing field gives no key. Keys are 64-bit hashes joined by sort +
searchsorted; a key held by more than MAX_BLOCK history rows is skipped. On generated data (100 000 x
1 000 000) 99.99 % of the true duplicates share a key with their original, at ~48 candidates per row.

Scoring with rapidfuzz `process.cpdist` (pairwise, all cores), cheapest first: names with
token_set_ratio < ROUGH_FLOOR and pairs with two different house numbers or units are dropped; name
score = each word of the shorter name matched to its best Jaro-Winkler partner, worst word counts
(word order free, so "Smith, John" = "John Smith", while "Mary Smith" vs "Peter Smith" stays low);
under NAME_FLOOR stops. Address score: see `_address_scores` (a town missing on one side caps it at
UNPLACED_CAP). score = (name + address) / 200 + PHONE_BONUS for the same phone - PHONE_PENALTY for two
different ones (a shared household phone alone never makes a duplicate). Pairs >= threshold are kept.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rapidfuzz import fuzz, process
from rapidfuzz.distance import JaroWinkler

HISTORY_COLUMNS = ("request_id", "name", "address")
ROUGH_FLOOR = 70.0  # token_set_ratio of the names under which a candidate pair is dropped at once
NAME_FLOOR = 85.0  # name score under which a candidate pair is dropped before its address is scored
NAME_TOKENS_MAX = 4  # words of a name compared one by one
PHONE_BONUS = 0.05  # added to the score for the same phone
PHONE_PENALTY = 0.03  # taken off for two different phones (people do change numbers)
UNPLACED_CAP = 80.0  # address score at most when the two sides have no town (city or zip) in common
MAX_BLOCK = 1000  # a blocking key shared by more history rows than this is too common to use
BLOCK_PAIRS = 1_000_000  # candidate pairs scored at once (bounds memory)
PAIR_COLUMNS = ["row", "kind", "matched_id", "name_score", "address_score", "phone_match", "score", "best",
                "reason"]


def _table(spec: str) -> dict[str, str]:
    """'st: street str; ave: avenue' -> {'street': 'st', 'str': 'st', 'st': 'st', ...}."""
    out = {}
    for entry in spec.split(";"):
        canon, _, variants = entry.partition(":")
        out.update({v: canon.strip() for v in [canon.strip(), *variants.split()]})
    return out


STREET_TYPES = _table(
    "st: street str; ave: avenue av avn; rd: road; blvd: boulevard boul; dr: drive drv; ln: lane; ct: court;"
    "pl: place; ter: terrace; cir: circle; hwy: highway; pkwy: parkway; sq: square; trl: trail; way")
DIRECTIONS = _table("n: north; s: south; e: east; w: west; ne: northeast; nw: northwest; se: southeast;"
                    "sw: southwest")
STATES = _table(
    "al: alabama; ak: alaska; az: arizona; ar: arkansas; ca: california; co: colorado; ct: connecticut;"
    "de: delaware; fl: florida; ga: georgia; hi: hawaii; id: idaho; il: illinois; in: indiana; ia: iowa;"
    "ks: kansas; ky: kentucky; la: louisiana; me: maine; md: maryland; ma: massachusetts; mi: michigan;"
    "mn: minnesota; ms: mississippi; mo: missouri; mt: montana; ne: nebraska; nv: nevada; nh: newhampshire;"
    "nj: newjersey; nm: newmexico; ny: newyork; nc: northcarolina; nd: northdakota; oh: ohio; ok: oklahoma;"
    "or: oregon; pa: pennsylvania; ri: rhodeisland; sc: southcarolina; sd: southdakota; tn: tennessee;"
    "tx: texas; ut: utah; vt: vermont; va: virginia; wa: washington; wv: westvirginia; wi: wisconsin;"
    "wy: wyoming")
STATE_PAIRS = r"\b(new|north|south|west|rhode) (hampshire|jersey|mexico|york|carolina|dakota|virginia|island)\b"
STATE_NAMES = pa.array([k for k in STATES if len(k) > 2])
STATE_CODES = pa.array([STATES[k] for k in STATES if len(k) > 2])
ADDRESS_TOKENS = {**STREET_TYPES, **DIRECTIONS,
                  **_table("apt: apartment unit suite ste; st: saint; mt: mount; ft: fort")}
NAME_TOKENS = dict.fromkeys(["mr", "mrs", "ms", "miss", "mx", "dr", "prof"], "")
SPECIAL = str.maketrans({"ß": "ss", "ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th",
                         "ı": "i"})
STREET_RE = (r"^(?P<street>\S+(?: \S+)*? (?:" + "|".join(sorted(set(STREET_TYPES.values()))) + r"))"
             r"(?P<dir> (?:n|s|e|w|ne|nw|se|sw))?\b ?(?P<locality>.*)$")
STREET_TYPE_WORDS = r"\b(?:" + "|".join(sorted(set(STREET_TYPES.values()))) + r")\b"
SKIP_STREET_WORDS = [*set(STREET_TYPES.values()), *set(DIRECTIONS.values())]


def _token(token: str, table: dict[str, str]) -> str:
    plain = unicodedata.normalize("NFKD", token.translate(SPECIAL))
    plain = "".join(c for c in plain if c.isascii() and c.isalnum())
    return table.get(plain, plain)


def _strings(values: Iterable) -> pa.Array:
    series = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
    return pc.fill_null(pa.array(series.astype("string[pyarrow]"), type=pa.string()), "")


def _normalise(values: Iterable, address: bool) -> pa.Array:
    text = pc.utf8_lower(_strings(values))
    text = pc.replace_substring_regex(text, r"['’`´]", "")
    if address:
        text = pc.replace_substring(text, "#", " apt ")
    text = pc.replace_substring_regex(text, r"[^\p{L}\p{N}]+", " ")
    if address:
        text = pc.replace_substring_regex(text, STATE_PAIRS, r"\1\2")
    words = pc.utf8_split_whitespace(text)
    codes = pc.dictionary_encode(words.flatten())
    table = ADDRESS_TOKENS if address else NAME_TOKENS
    mapped = pa.array([_token(t, table) for t in codes.dictionary.to_pylist()], pa.string())
    tokens = mapped.take(codes.indices)
    parent = pc.list_parent_indices(words).to_numpy()
    if address:  # a state name last or before the zip ("Washington St" stays a street)
        same_row_next = np.r_[parent[1:] == parent[:-1], False]
        zip_next = np.r_[pc.match_substring_regex(tokens, r"^\d{5}$").to_numpy(zero_copy_only=False)[1:], False]
        state = pc.index_in(tokens, value_set=STATE_NAMES)
        tail = pa.array((~same_row_next | (same_row_next & zip_next)) & _np(pc.is_valid(state)))
        tokens = pc.if_else(tail, STATE_CODES.take(pc.fill_null(state, 0)), tokens)
    else:  # middle initials go when at least two longer tokens remain
        length = pc.utf8_length(tokens).to_numpy(zero_copy_only=False)
        long_per_row = np.bincount(parent[length >= 2], minlength=len(words))
        tokens = pc.if_else(pa.array((length >= 2) | (long_per_row[parent] < 2)), tokens, "")
    joined = pc.binary_join(pa.ListArray.from_arrays(words.offsets, tokens), " ")
    joined = pc.replace_substring_regex(joined, " {2,}", " ")
    if address:  # "Apt. #4" -> "apt 4"
        joined = pc.replace_substring_regex(joined, r"\bapt (?:apt )+", "apt ")
    return pc.utf8_trim_whitespace(joined)


def normalise_name(s: str | None) -> str:
    """'Dr. José  GARCÍA-López' -> 'jose garcia lopez'."""
    return _normalise([s], address=False)[0].as_py()


def normalise_address(s: str | None) -> str:
    """'123 North Main Street, Apt. #4, Springfield, Illinois' -> '123 n main st apt 4 springfield il'."""
    return _normalise([s], address=True)[0].as_py()


def check_history_columns(columns: Iterable[str], path: object) -> None:
    """Raise ValueError naming the missing columns, the expected ones and what the file has."""
    have = [str(c) for c in columns]
    missing = [c for c in HISTORY_COLUMNS if c not in have]
    if missing:
        raise ValueError(f"{path}: history file lacks column(s) {', '.join(missing)}; expected "
                         f"{', '.join(HISTORY_COLUMNS)} (phone optional), found {', '.join(have) or 'none'}")


def _np(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False)


def _hash(values: np.ndarray) -> np.ndarray:
    """64-bit hash per string, 0 for an empty one (= missing)."""
    values = np.asarray(values, dtype=object)
    return np.where(values == "", np.uint64(0), pd.util.hash_array(values))


def _mix(kind: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * np.uint64(0x9E3779B97F4A7C15)) ^ (b + np.uint64(kind * 0x2B2AE3D27D4EB4F))


def _split(text: pa.Array, skip: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(row index, token hash) per word of 2+ characters (not in skip)."""
    words = pc.utf8_split_whitespace(text)
    flat, parent = words.flatten(), pc.list_parent_indices(words)
    keep = pc.greater_equal(pc.utf8_length(flat), 2)
    if skip:
        keep = pc.and_(keep, pc.invert(pc.is_in(flat, pa.array(skip))))
    return _np(parent.filter(keep)), _hash(_np(flat.filter(keep)))


def _token_matrix(names: np.ndarray) -> np.ndarray:
    """(rows, NAME_TOKENS_MAX) object matrix of each name's first words, "" where there are fewer."""
    words = pc.utf8_split_whitespace(pa.array(names, pa.string()))
    parent = pc.list_parent_indices(words).to_numpy()
    slot = np.arange(len(parent)) - words.offsets.to_numpy()[parent]
    matrix = np.full((len(words), NAME_TOKENS_MAX), "", dtype=object)
    keep = slot < NAME_TOKENS_MAX
    matrix[parent[keep], slot[keep]] = _np(words.flatten())[keep]
    return matrix


def _prepare(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Normalised name, street and city, hashed house/unit/zip/state/phone (0 = missing) of a frame."""
    def field(struct: pa.Array, k: int) -> pa.Array:
        return pc.fill_null(pc.struct_field(struct, [k]), "")

    missing = pd.Series([None] * len(frame), dtype=object)
    address = _normalise(frame["address"] if "address" in frame else missing, address=True)
    unit = field(pc.extract_regex(address, r"\bapt (?P<u>[a-z0-9]+)\b"), 0)
    rest = pc.utf8_trim_whitespace(pc.replace_substring_regex(address, r" ?\bapt( [a-z0-9]+)?\b", ""))
    house_rest = pc.extract_regex(rest, r"^(?P<house>(?:\d+[a-z]?\b)?) ?(?P<rest>.*)$")
    house, rest = field(house_rest, 0), field(house_rest, 1)
    zipcode = field(pc.extract_regex(rest, r"\b(?P<z>\d{5})\b"), 0)
    parts = pc.extract_regex(rest, STREET_RE)
    typed = pc.is_valid(parts)
    # without a street type, the street is all but house, unit, zip and state, and the city is unknown
    place = pc.extract_regex(pc.utf8_trim_whitespace(pc.replace_substring_regex(
        pc.if_else(typed, field(parts, 2), rest), r" ?\b\d{5}\b", "")), r"^(?P<city>.*?)(?: (?P<state>[a-z]{2}))?$")
    street = pc.if_else(typed, pc.binary_join_element_wise(field(parts, 0), field(parts, 1), ""), field(place, 0))
    name = _normalise(frame["name"] if "name" in frame else missing, address=False)
    return {"name": _np(name), "street": _np(street), "city": _np(pc.if_else(typed, field(place, 0), "")),
            "typed": _np(typed), "house": _hash(_np(house)), "unit": _hash(_np(unit)), "zip": _hash(_np(zipcode)),
            "state": _hash(_np(field(place, 1))),
            "phone": _hash(_np(_strings(frame["phone_e164"] if "phone_e164" in frame else missing)))}


def _fill_cities(*prepared: dict[str, np.ndarray]) -> None:
    """A row with a zip but no city gets the city written most often with that zip (in any frame)."""
    zips, cities = (np.concatenate([p[f] for p in prepared]) for f in ("zip", "city"))
    known = (zips > 0) & (cities != "")
    pairs = pd.DataFrame({"zip": zips[known], "city": cities[known]}).value_counts().reset_index()
    city_of = pairs.drop_duplicates("zip").set_index("zip")["city"]
    for p in prepared:
        gap = (p["zip"] > 0) & (p["city"] == "") & p["typed"]
        p["city"][gap] = city_of.reindex(p["zip"][gap]).fillna("").to_numpy(dtype=object)


def _keys(p: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(key, row) blocking keys of a prepared frame (see the module docstring)."""
    rows = np.arange(len(p["name"]))
    name_rows, name_words = _split(pa.array(p["name"], pa.string()))
    street_rows, street_words = _split(pa.array(p["street"], pa.string()), SKIP_STREET_WORDS)
    zip_of_name, house_of_name, house_of_street = p["zip"][name_rows], p["house"][name_rows], p["house"][street_rows]
    blocks = [(p["phone"], rows, p["phone"] > 0),
              (_mix(1, zip_of_name, name_words), name_rows, zip_of_name > 0),
              (_mix(2, p["zip"], p["house"]), rows, (p["zip"] > 0) & (p["house"] > 0)),
              (_mix(3, house_of_street, street_words), street_rows, house_of_street > 0),
              (_mix(4, house_of_name, name_words), name_rows, house_of_name > 0)]
    return np.concatenate([key[ok] for key, _, ok in blocks]), np.concatenate([row[ok] for _, row, ok in blocks])


def _candidates(new: dict, other: dict, same: bool) -> tuple[np.ndarray, np.ndarray]:
    """Unique (new row, other row) positions sharing a blocking key; with same, only other < new."""
    (new_keys, new_rows), (keys, rows), size = _keys(new), _keys(other), max(len(other["name"]), 1)
    if not len(keys) or not len(new_keys):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    order = np.argsort(keys, kind="stable")
    keys, rows = keys[order], rows[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    counts = np.diff(np.r_[starts, len(keys)])
    at = np.minimum(np.searchsorted(keys[starts], new_keys), len(starts) - 1)
    hit = (keys[starts[at]] == new_keys) & (counts[at] <= MAX_BLOCK)
    n, first = counts[at[hit]], starts[at[hit]]
    left = np.repeat(new_rows[hit], n)
    right = rows[np.repeat(first - np.cumsum(n) + n, n) + np.arange(n.sum())]
    if same:
        left, right = left[right < left], right[right < left]
    code = np.sort(left.astype(np.int64) * size + right)  # np.unique is ten times slower here (numpy 2.4)
    code = code[np.r_[True, code[1:] != code[:-1]]] if len(code) else code
    return code // size, code % size


def _name_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """0-100 per pair of word matrices: every word of the shorter name (of both if as long) must find
    its match (best Jaro-Winkler) in the other; any order, extra words of the longer name ignored."""
    best_a, best_b = np.zeros(a.shape), np.zeros(b.shape)
    for s in range(a.shape[1]):
        for t in range(b.shape[1]):
            both = (a[:, s] != "") & (b[:, t] != "")
            sim = process.cpdist(a[both, s], b[both, t], scorer=JaroWinkler.normalized_similarity, workers=-1)
            best_a[both, s] = np.maximum(best_a[both, s], sim)
            best_b[both, t] = np.maximum(best_b[both, t], sim)
    worst_a = np.where(a != "", best_a, 1).min(axis=1)
    worst_b = np.where(b != "", best_b, 1).min(axis=1)
    count_a, count_b = (a != "").sum(axis=1), (b != "").sum(axis=1)
    worst = np.where(count_a < count_b, worst_a, np.where(count_b < count_a, worst_b, np.minimum(worst_a, worst_b)))
    return 100 * worst


def _untyped(text: np.ndarray) -> np.ndarray:
    return _np(pc.replace_substring_regex(pa.array(text, pa.string()), STREET_TYPE_WORDS, ""))


def _clash(new: dict, other: dict, i: np.ndarray, j: np.ndarray, field: str) -> np.ndarray:
    a, b = new[field][i], other[field][j]
    return (a != b) & (a > 0) & (b > 0)


def _address_scores(new: dict, other: dict, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """0-100: min(street, town) where town = same zip, else city likeness (a missing city is no
    evidence unless the zips differ); 0 for another state; capped at UNPLACED_CAP with no town field in
    common. A side without street type: token_set_ratio of street + city, types left out."""
    street_a, street_b, city_a, city_b = new["street"][i], other["street"][j], new["city"][i], other["city"][j]
    street = np.maximum(process.cpdist(street_a, street_b, scorer=fuzz.ratio, workers=-1),
                        process.cpdist(street_a, street_b, scorer=fuzz.token_sort_ratio, workers=-1))
    street[(street_a == "") | (street_b == "")] = 0
    zip_a, zip_b, other_state = new["zip"][i], other["zip"][j], _clash(new, other, i, j, "state")
    same_zip, zip_clash = (zip_a == zip_b) & (zip_a > 0), _clash(new, other, i, j, "zip")
    city = process.cpdist(city_a, city_b, scorer=fuzz.ratio, workers=-1)
    no_city = (city_a == "") | (city_b == "")
    city[no_city] = np.where(zip_clash[no_city], 0, 100)
    city[other_state] = 0
    address = np.minimum(street, np.where(same_zip, 100, city))
    loose = ~(new["typed"][i] & other["typed"][j])
    address[loose] = process.cpdist(_untyped(street_a[loose] + " " + city_a[loose]),
                                    _untyped(street_b[loose] + " " + city_b[loose]), scorer=fuzz.token_set_ratio,
                                    workers=-1)
    address[loose & (zip_clash | other_state)] = 0
    both_state = (new["state"][i] > 0) & (other["state"][j] > 0)
    unplaced = ~((zip_a > 0) & (zip_b > 0) | (city_a != "") & (city_b != "") | loose & both_state)
    address[unplaced] = np.minimum(address[unplaced], UNPLACED_CAP)
    return address


def _score(new: dict, other: dict, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, ...]:
    """(i, j, name, address, phone_match, score) of the pairs whose name reaches NAME_FLOOR."""
    rough = process.cpdist(new["name"][i], other["name"][j], scorer=fuzz.token_set_ratio,
                           score_cutoff=ROUGH_FLOOR, workers=-1)
    keep = (rough >= ROUGH_FLOOR) & ~_clash(new, other, i, j, "house") & ~_clash(new, other, i, j, "unit")
    i, j = i[keep], j[keep]
    words_a, words_b = _token_matrix(new["name"][i]), _token_matrix(other["name"][j])
    single = (words_a[:, 1] == "") | (words_b[:, 1] == "")  # one-word names: compare whole strings
    name = _name_scores(words_a, words_b)
    name[single] = process.cpdist(new["name"][i[single]], other["name"][j[single]], scorer=fuzz.ratio, workers=-1)
    keep = name >= NAME_FLOOR
    i, j, name = i[keep], j[keep], name[keep]
    address = _address_scores(new, other, i, j)
    phone = (new["phone"][i] == other["phone"][j]) & (new["phone"][i] > 0)
    evidence = PHONE_BONUS * phone - PHONE_PENALTY * _clash(new, other, i, j, "phone")
    return i, j, name, address, phone, np.clip((name + address) / 200 + evidence, 0, 1)


def _pairs(new: dict, other: dict, same: bool, threshold: float) -> tuple[list[tuple[np.ndarray, ...]], int]:
    """Scored pairs reaching threshold, in blocks of BLOCK_PAIRS candidates, and the candidate count."""
    i, j = _candidates(new, other, same)
    out = []
    for start in range(0, max(len(i), 1), BLOCK_PAIRS):
        scored = _score(new, other, i[start:start + BLOCK_PAIRS], j[start:start + BLOCK_PAIRS])
        out.append(tuple(a[scored[-1] >= threshold] for a in scored))
    return out, len(i)


def _row_numbers(frame: pd.DataFrame) -> np.ndarray:
    if "_row" in frame:
        return frame["_row"].to_numpy(dtype=np.int64)
    return frame.index.to_numpy(dtype=np.int64) + 1


def find_duplicates(new: pd.DataFrame, history: pd.DataFrame, threshold: float = 0.9,
                    stats: dict | None = None) -> pd.DataFrame:
    """All pairs scoring >= threshold, one row per pair (PAIR_COLUMNS); `best` marks the one pair per
    duplicate row that gives its reason: its best-scoring history match, else the earliest batch row
    it matches (the first occurrence).

    new: name, address, phone_e164 (optional `_row`); history: request_id, name, address and optional
    phone_e164. matched_id is the history request_id (kind "history") or the row number of the earlier
    batch row (kind "batch"). `stats`, if given, receives the candidate and pair counts.
    """
    check_history_columns(history.columns, "history")
    prepared_new, prepared_history = _prepare(new), _prepare(history)
    _fill_cities(prepared_new, prepared_history)
    rows, ids = _row_numbers(new), history["request_id"].astype(str).to_numpy(dtype=object)
    frames, counts = [], {}
    for kind, other, same, target in [("history", prepared_history, False, ids), ("batch", prepared_new, True, rows)]:
        scored, counts[f"{kind}_candidates"] = _pairs(prepared_new, other, same, threshold)
        for i, j, name, address, phone, score in scored:
            frames.append(pd.DataFrame({
                "_pos": i, "row": rows[i], "kind": kind, "matched_id": pd.Series(target[j], dtype=object),
                "name_score": name.round(1), "address_score": address.astype(float).round(1),
                "phone_match": phone,
                "score": score.round(3), "_order": -score if kind == "history" else j + 2.0}))  # history first
    pairs = pd.concat(frames, ignore_index=True).sort_values(["_pos", "_order"], kind="stable")
    pairs["best"] = ~pairs["_pos"].duplicated()
    pairs["reason"] = pd.Series([
        f"duplicate of {'history request' if k == 'history' else 'batch row'} {m} "
        f"(name {n:.0f}, address {a:.0f}{', same phone' if p else ''})"
        for k, m, n, a, p in zip(pairs["kind"], pairs["matched_id"], pairs["name_score"],
                                 pairs["address_score"], pairs["phone_match"])], index=pairs.index, dtype="str")
    if stats is not None:
        stats.update(counts, pairs=len(pairs), duplicate_rows=int(pairs["best"].sum()))
    return pairs[PAIR_COLUMNS].reset_index(drop=True)
