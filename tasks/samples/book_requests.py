"""Labelled book-request samples for the dedupe tests and benchmark.

Every row carries an `entity` label: one person at one place (tasks.apis.dedupe ignores the column). A new
row is a true duplicate when its entity is in the history or earlier in the batch.

Rows are typed by people: names with typos, swapped order ("Smith, John"), case, dropped accents or
middle initials; addresses with St/Street, N/North, Apt/#/Unit, full state names, typos, missing
zip, city or street type; phones in several formats. A request is confirmed by SMS, so the phone is
the requester's own mobile: in a batch 2 % of people give none, 10 % of requests leave it out and 3 %
give a new number; the history holds past accepted requests, all with a phone (1.5 % a new one).
Hard non-duplicates are new entities: a family member at the same address (same surname, other first
name, their own phone or none), a neighbour on the same street (another house number, sometimes with
the same name), a namesake in another city, and a namesake at the same house number and street in
another city.
"""
from __future__ import annotations

import random
import unicodedata
from collections import defaultdict
from datetime import date, timedelta

import numpy as np
import pandas as pd
from nicknames import NickNamer

from tasks.samples.book_places import (
    BUILDINGS,
    COUNTRY,
    SUBURBS,
    TOWNS,
    TYPES,
    UNIT_LABELS,
    phones,
    postcodes,
    render_phone,
)

FIRST = ("James Mary John Patricia Robert Jennifer Michael Linda William Elizabeth David Barbara Richard Susan "
         "Joseph Jessica Thomas Sarah Charles Karen Christopher Nancy Daniel Lisa Matthew Betty Anthony Margaret "
         "Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew Donna Joshua Michelle Kenneth Carol Kevin "
         "Amanda Brian Melissa George Deborah Timothy Stephanie Ronald Rebecca Edward Laura Jason Sharon Jeffrey "
         "Cynthia Ryan Kathleen Jacob Amy Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela "
         "Larry Emma Justin Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel Christine Gregory "
         "Debra Alexander Rachel Frank Carolyn Raymond Janet Patrick Catherine Jack Maria Dennis Heather Jerry "
         "Diane Tyler Ruth Aaron Julie José Olivia Adam Joyce Nathan Virginia Henry Victoria Douglas Kelly "
         "Zachary Lauren Peter Christina Kyle Joan Ethan Evelyn Walter Judith Noah Megan Jeremy Andrea Christian "
         "Cheryl Keith Hannah Roger Jacqueline Terry Martha Gerald Gloria Harold Teresa Sean Ann Austin Sara "
         "Carl Madison Arthur Frances Lawrence Kathryn Dylan Janice Jesse Jean Jordan Abigail Bryan Alice Billy "
         "Judy Joe Sophia Bruce Grace Gabriel Denise Logan Amber Albert Doris Willie Marilyn Alan Danielle Juan "
         "Beverly Wayne Isabella Elijah Theresa Randy Diana Roy Natalie Vincent Brittany Ralph Charlotte Eugene "
         "Marie Russell Kayla Bobby Alexis Mason Lori Philip Renée Zoë François Chloé Björn Søren Ramón Inés "
         "Léa Ángel").split()
LAST = ("Smith Johnson Williams Brown Jones García Miller Davis Rodríguez Martínez Hernández López González "
        "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Pérez Thompson White Harris Sánchez Clark "
        "Ramírez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
        "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gómez Phillips Evans Turner Díaz Parker Cruz "
        "Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutiérrez Ortiz Morgan Cooper Peterson "
        "Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chávez Wood James Bennett Gray "
        "Mendoza Ruiz Hughes Price Álvarez Castillo Sanders Patel Myers Long Ross Foster Jiménez Powell Jenkins "
        "Perry Russell Sullivan Bell Coleman Butler Henderson Barnes Fisher Vásquez Simmons Romero Jordan "
        "Patterson Alexander Hamilton Graham Reynolds Griffin Wallace Moreno West Cole Hayes Bryant Herrera "
        "Gibson Ellis Tran Medina Aguilar Stevens Murray Ford Castro Marshall Owens Harrison Fernández McDonald "
        "Woods Washington Kennedy Wells Vargas Henry Chen Freeman Webb Tucker Guzmán Burns Crawford Olson "
        "Simpson Porter Hunter Gordon Mendez Silva Shaw Snyder Mason Dixon Muñoz Hunt Hicks Holmes Palmer "
        "Wagner Black Robertson Boyd Rose Stone Salazar Fox Warren Mills Meyer Rice Schmidt Garza Daniels "
        "Ferguson Nichols Stephens Soto Weaver Ryan Gardner Payne Grant Dunn O'Brien O'Connor Müller "
        "Nowak Kowalski Schäfer Dubois Lefèvre Østergaard García-López Smith-Jones").split()
STREETS = ("Main Oak Maple Cedar Pine Elm Washington Lake Hill Park Walnut Sunset Lincoln Jackson Church Willow "
           "Highland Meadow Forest River Spring Ridge Franklin Adams Madison Jefferson Chestnut Dogwood Hickory "
           "Magnolia Lakeview Center Mill Railroad Prospect Valley Woodland Birch Cherry Laurel Sycamore Grant "
           "Union Broad Market Water Front Bridge Harbor Orchard Colonial Greenwood Fairview Kingston Princeton "
           "Cambridge Oxford Hawthorne Juniper Aspen Spruce Poplar Holly Ivy Rosewood Sherwood Westwood "
           "Riverside Hillcrest Lakeshore Bayview Mountain Canyon Mesa Desert Prairie Heritage Liberty Victory "
           "Pleasant Garden Mulberry Locust Beech Linden Vine Wildwood Briarwood Foxhill Stonebridge").split()
DIRECTIONS = [("North", "N"), ("South", "S"), ("East", "E"), ("West", "W")]
ABROAD_SHARE = 0.3  # people outside the US (UK, Canada, Australia, India)
NO_PHONE_SHARE = 0.02  # people who give no mobile (requests are confirmed by SMS, so nearly all give one)
BOOKS = ["Dune", "Beloved", "Middlemarch", "The Hobbit", "Invisible Man", "Emma", "Ulysses", "Persuasion",
         "Things Fall Apart", "The Road", "Moby-Dick", "Jane Eyre", "Native Son", "Kindred", "Dracula"]
KEYBOARD = "qwertyuiop asdfghjkl zxcvbnm".split()
PEOPLE_COLUMNS = ["first", "middle", "last", "house", "direction", "street", "type", "unit", "city", "zip", "phone",
                  "building", "suburb"]
NICKNAMES = NickNamer()


def _zipf(n: int) -> np.ndarray:
    weights = 1 / np.arange(1, n + 1) ** 0.8
    return weights / weights.sum()


def _towns(n: int, rng: np.random.Generator) -> np.ndarray:
    """Town indexes: ABROAD_SHARE abroad; within a country, a few towns much more often than others."""
    home = COUNTRY == "US"
    weights = np.zeros(len(TOWNS))
    weights[home], weights[~home] = _zipf(home.sum()) * (1 - ABROAD_SHARE), _zipf((~home).sum()) * ABROAD_SHARE
    return rng.choice(len(TOWNS), n, p=weights / weights.sum())


def _people(n: int, rng: np.random.Generator, no_phone: float = NO_PHONE_SHARE) -> pd.DataFrame:
    """Canonical person-at-place records (the entity is the row position); `no_phone` of them give no phone."""
    town = _towns(n, rng)
    country = COUNTRY[town]
    units = rng.integers(1, 40, n).astype(str).astype(object) + np.where(rng.random(n) < 0.2, "B", "")
    type_count = np.array([len(TYPES[c]) for c in country])
    suburbs = [SUBURBS.get(c, [""]) for c in country]
    return pd.DataFrame({
        "first": rng.choice(FIRST, n, p=_zipf(len(FIRST))),
        "middle": np.where(rng.random(n) < 0.25, rng.choice(list("ABCDEFGHJKLMNPRSTW"), n), ""),
        "last": rng.choice(LAST, n, p=_zipf(len(LAST))),
        "house": rng.integers(1, 10_000, n),
        "direction": np.where((rng.random(n) < 0.2) & (country == "US"), rng.integers(0, len(DIRECTIONS), n), -1),
        "street": rng.integers(0, len(STREETS), n),
        "type": (rng.random(n) * type_count).astype(int),
        "unit": np.where(rng.random(n) < 0.25, units, ""),
        "city": town,
        "zip": postcodes(town, rng),
        "phone": np.where(rng.random(n) < 1 - no_phone, phones(town, rng), ""),
        "building": np.where(rng.random(n) < np.where(country == "US", 0.03, 0.25), rng.choice(BUILDINGS, n), ""),
        "suburb": [s[k % len(s)] for s, k in zip(suburbs, rng.integers(0, 1000, n))],
    })


def _family_first_names(homes: pd.DataFrame, people: pd.DataFrame, rng: np.random.Generator) -> list[str]:
    """For each home, a first name nobody there has yet (in people or chosen here before)."""
    taken = defaultdict(set)
    members = people.merge(homes.drop_duplicates(), on=list(homes.columns))
    for *home, first in members[[*homes.columns, "first"]].itertuples(index=False, name=None):
        taken[tuple(home)].add(first)
    names = []
    for home in homes.itertuples(index=False, name=None):
        names.append(str(rng.choice([f for f in FIRST if f not in taken[home]])))
        taken[home].add(names[-1])
    return names


def _hard_negatives(people: pd.DataFrame, sources: np.ndarray, rng: np.random.Generator,
                    shares: tuple[float, ...] = (0.35, 0.25, 0.25, 0.15), no_phone: float = NO_PHONE_SHARE
                    ) -> pd.DataFrame:
    """New entities close to people[sources]; shares of family members (same address and surname, their
    own mobile phone or none), neighbours (same street, another house number, half of them the same
    name), namesakes elsewhere, namesakes at the same house number and street in another city."""
    n = len(sources)
    out = people.iloc[sources].reset_index(drop=True)
    fresh = _people(n, rng, no_phone)
    kind = rng.choice(4, n, p=shares)
    family, neighbour, elsewhere, other_city = (kind == k for k in range(4))
    home = ["house", "direction", "street", "type", "unit", "city"]
    out.loc[family, "first"] = _family_first_names(out.loc[family, home], people, rng)
    out.loc[family, "middle"] = ""
    out.loc[family, "phone"] = fresh.loc[family, "phone"]  # their own mobile (requests are confirmed by SMS)
    step = rng.choice([-8, -6, -4, -2, 2, 4, 6, 8], n)
    house = out["house"].to_numpy()
    out.loc[neighbour, "house"] = np.where(house + step >= 1, house + step, house - step)[neighbour]
    renamed = neighbour & (rng.random(n) < 0.5)
    out.loc[renamed, ["first", "middle", "last"]] = fresh.loc[renamed, ["first", "middle", "last"]]
    out.loc[neighbour, ["unit", "phone"]] = fresh.loc[neighbour, ["unit", "phone"]]
    moved = ["house", "direction", "street", "type", "unit", "city", "zip", "phone", "building", "suburb"]
    out.loc[elsewhere, moved] = fresh.loc[elsewhere, moved]
    town = ["unit", "city", "zip", "phone", "building", "suburb"]
    out.loc[other_city & (fresh["city"] != out["city"]), town] = fresh.loc[other_city & (fresh["city"] != out["city"]), town]
    out["type"] = np.minimum(out["type"], [len(TYPES[COUNTRY[c]]) - 1 for c in out["city"]])
    return out


def _typo(word: str, r: random.Random) -> str:
    if len(word) < 4:
        return word
    k = r.randrange(1, len(word) - 1)
    op = r.random()
    if op < 0.3:
        row = next((row for row in KEYBOARD if word[k].lower() in row), "aeiou")
        return word[:k] + r.choice(row) + word[k + 1:]
    if op < 0.55:
        return word[:k] + word[k + 1:]
    if op < 0.8:
        return word[:k] + word[k + 1] + word[k] + word[k + 2:]
    return word[:k] + word[k] + word[k:]


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _case(text: str, r: random.Random) -> str:
    roll = r.random()
    return text.upper() if roll < 0.08 else text.lower() if roll < 0.14 else text


def _name(first: str, middle: str, last: str, r: random.Random, noise: float) -> str:
    nicknames = sorted(NICKNAMES.nicknames_of(first))
    if nicknames and r.random() < 0.1 * noise:  # Bob for Robert
        first = r.choice(nicknames).title()
    if r.random() < 0.5:
        first, last = _plain(first), _plain(last)
    if r.random() < 0.15 * noise:
        first, last = (_typo(first, r), last) if r.random() < 0.5 else (first, _typo(last, r))
    middle = middle + r.choice(["", "."]) if middle and r.random() < 0.6 else ""
    roll = r.random()
    if roll < 0.75:
        text = " ".join(p for p in (first, middle, last) if p)
    elif roll < 0.9:
        text = f"{last}, {first}" + (f" {middle}" if middle else "")
    else:
        text = f"{last} {first}"
    text = _case(text, r)
    return text.replace(" ", "  ", 1) + " " if r.random() < 0.05 else text


def _address(p: tuple, r: random.Random, noise: float) -> str:
    """The address as a person in its country writes it, with typos and parts left out."""
    house, direction, street, kind, unit, town, postcode, building, suburb = p[3:10] + p[11:13]
    name, code, region, _, _, country = TOWNS[town]
    words = [str(house)]
    if direction >= 0 and r.random() > 0.05 * noise:
        words.append(DIRECTIONS[direction][r.random() < 0.6])
    words.append(_typo(STREETS[street], r) if r.random() < 0.12 * noise else STREETS[street])
    if r.random() > 0.04 * noise:
        long, short = TYPES[country][kind]
        words.append(long if r.random() < 0.4 else short + r.choice(["", "."]))
    line = " ".join(words)
    if building and r.random() > 0.3 * noise:
        line = f"{building}, {line}" if country != "AU" or r.random() < 0.5 else f"{line}, {building}"
    if unit and r.random() > 0.08 * noise:
        label = r.choice(UNIT_LABELS[country])
        if country == "US":
            line += r.choice([", ", " "]) + label + unit
        else:
            line = f"{unit}/{line}" if country == "AU" and r.random() < 0.4 and not building else f"{label}{unit}, {line}"
    town_part = _typo(name, r) if r.random() < 0.06 * noise else name
    places = {"US": [town_part], "CA": [town_part], "GB": [suburb, town_part], "AU": [suburb.replace("-", " ")],
              "IN": [suburb, town_part]}[country]
    parts = [line] + [place for place in places if place and r.random() > 0.1 * noise]
    if code and parts[1:] and r.random() > 0.06 * noise:
        parts.append(parts.pop() + " " + (region if r.random() < 0.2 else code))
    if r.random() > 0.12 * noise:
        parts.append(parts.pop() + " " + postcode if len(parts) > 1 else postcode)
    return _case(r.choice([", ", " "]).join(parts), r)


def _phone(e164: str, r: random.Random) -> str:
    country = next((c for prefix, c in (("+44", "GB"), ("+61", "AU"), ("+91", "IN")) if e164.startswith(prefix)), "US")
    return render_phone(e164, country, r)


def _render(people: pd.DataFrame, entity: np.ndarray, r: random.Random, noise: float,
            phone_missing: float) -> pd.DataFrame:
    rows = list(people[PEOPLE_COLUMNS].itertuples(index=False, name=None))
    names, addresses, phones = [], [], []
    for e in entity:
        p = rows[e]
        names.append(_name(p[0], p[1], p[2], r, noise))
        addresses.append(_address(p, r, noise))
        phone = p[10]
        if phone and r.random() < 0.03 * noise:  # a new number
            phone = phone[:-7] + str(r.randrange(2_000_000, 10_000_000))
        phones.append("" if r.random() < phone_missing else phone)
    return pd.DataFrame({"name": names, "phone": [_phone(p, r) for p in phones], "address": addresses,
                         "book": [r.choice(BOOKS) for _ in entity],
                         "phone_e164": pd.Series(phones, dtype=object).replace("", None),
                         "entity": np.asarray(entity, dtype=np.int64)})


def history_frame(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(history, people): n past requests (request_id H0000001…, some people asked twice, 8 % share a
    household with another), labelled with `entity`; people = the canonical record per entity. Every
    past request has a phone (the flow accepts none without one), 1.5 % of them a new number."""
    rng, r = np.random.default_rng(seed), random.Random(seed)
    unique = max(min(n, 1), round(n * 0.9))
    people = _people(unique, rng, no_phone=0)
    family = np.flatnonzero(rng.random(unique) < 0.08)  # these people live with an earlier one
    relatives = _hard_negatives(people, rng.integers(0, unique, len(family)), rng, shares=(1, 0, 0, 0), no_phone=0)
    for column in PEOPLE_COLUMNS:
        people.loc[family, column] = relatives[column].to_numpy()
    entity = np.concatenate([np.arange(unique), rng.integers(0, unique, n - unique)])
    rng.shuffle(entity)
    frame = _render(people, entity, r, noise=0.5, phone_missing=0)
    frame.insert(0, "request_id", [f"H{k:07d}" for k in range(1, n + 1)])
    start = date(2024, 1, 1)
    frame.insert(5, "date", [(start + timedelta(days=int(d))).isoformat() for d in rng.integers(0, 1000, n)])
    return frame, people


def new_requests_frame(n: int, history: pd.DataFrame, people: pd.DataFrame, dup_share: float = 0.2,
                       batch_dup_share: float = 0.05, hard_share: float = 0.3, seed: int = 1) -> pd.DataFrame:
    """A batch of n requests (row numbers = index + 1) labelled with `entity`: dup_share re-ask for a
    history entity, batch_dup_share repeat an earlier row of the batch, hard_share of the rest are hard
    non-duplicates of history entities, the others new people."""
    rng, r = np.random.default_rng(seed), random.Random(seed)
    known = history["entity"].unique()
    if not len(known):  # nothing to repeat or imitate
        dup_share = hard_share = 0
    n_dup, n_batch = round(n * dup_share), min(round(n * batch_dup_share), max(n - 1, 0))
    n_hard = round((n - n_dup - n_batch) * hard_share)
    n_new = n - n_dup - n_batch - n_hard
    hard = _hard_negatives(people, rng.choice(known, n_hard), rng)
    everyone = pd.concat([people, _people(n_new, rng), hard], ignore_index=True)
    base = np.concatenate([rng.choice(known, n_dup, replace=n_dup > len(known)),
                           np.arange(len(people), len(everyone))])
    rng.shuffle(base)
    source = rng.integers(0, max(len(base), 1), n_batch)
    position = np.concatenate([np.arange(len(base)), source + 0.5 + rng.random(n_batch) * (len(base) - source - 0.5)])
    entity = np.concatenate([base, base[source]])[np.argsort(position, kind="stable")]
    frame = _render(everyone, entity, r, noise=1.0, phone_missing=0.1)
    frame.insert(4, "date", (date(2026, 11, 1) + timedelta(days=int(rng.integers(0, 20)))).isoformat())
    return frame


def evaluate(pairs: pd.DataFrame, new: pd.DataFrame, history: pd.DataFrame) -> dict:
    """Row-level precision/recall of the best pairs against the labels; a flagged row is right when it
    is a true duplicate and its matched request or row has the same entity."""
    entity = new["entity"].to_numpy()
    rows = new.index.to_numpy() + 1
    expected = np.isin(entity, history["entity"].unique()) | pd.Series(entity).duplicated().to_numpy()
    of_row = dict(zip(rows, entity))
    of_request = dict(zip(history["request_id"], history["entity"]))
    target = np.array([of_request[m] if k == "history" else of_row[m]
                       for k, m in zip(pairs["kind"], pairs["matched_id"])], dtype=np.int64)
    right = target == pairs["row"].map(of_row).to_numpy()
    best = pairs["best"].to_numpy()
    correct = int(right[best].sum())
    flagged_rows = set(pairs["row"][best])
    return {"expected": int(expected.sum()), "flagged": int(best.sum()), "correct": correct,
            "precision": float(correct / best.sum()) if best.any() else 1.0,
            "recall": float(correct / expected.sum()) if expected.any() else 1.0,
            "pair_precision": float(right.mean()) if len(right) else 1.0,
            "false_positives": pairs["row"][best & ~right].tolist(),
            "missed": [int(x) for x in rows[expected] if x not in flagged_rows]}
