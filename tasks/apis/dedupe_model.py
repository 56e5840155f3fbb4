"""The Splink model behind the book-request dedupe: comparisons, blocking, unsupervised training.

A pair of records is scored by a Fellegi-Sunter model: each field's comparison falls into a level
(exact, similar, missing, different, ...), each level adds a learnt match weight, and the sum gives
the match probability. Levels carry short labels (`LEVELS`) that duplicates.csv shows per field.

Training needs no labels: u (how often two different people agree by chance) from random pairs, m (how
often one person's records agree) by expectation maximisation on pairs sharing postcode + house
number (learns the name, phone and street weights) and pairs sharing the full name (learns the
address weights), the prior from pairs that agree on name, house and street. Term-frequency
adjustments make an exact match on a rare first name, surname, street or locality count for more
than one on 'smith' or 'main'. The model is a Splink JSON file, reused as it is by later runs.

The model adds the fields' evidence up as if independent, and an address agreeing in every part
outweighs a first name, house number or town that conflicts; but a household member, a neighbour
on the same street or a namesake at the same number in another town agrees on just those parts.
So `another_person` overrules it: a conflict there together with a different phone number (both
given) is another person, whatever the probability. With the same phone, or no phone to compare, the
model decides (a replaced first name or a mistyped house number is then a duplicate).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from splink import Linker, SettingsCreator, block_on

SEED = 16
U_PAIRS = 2e6  # random pairs for the u probabilities
EM_PAIRS = 1e6  # blocked pairs at most per EM session
PRIOR_RECALL = 0.6  # share of the true pairs thought to agree exactly on name, house and street


@dataclass(frozen=True)
class Level:
    label: str
    sql: str
    tf_column: str | None = None
    null: bool = False


def _jw(column: str, at_least: float) -> str:
    return _jw_pair(f"{column}_l", f"{column}_r", at_least)


def _jw_pair(left: str, right: str, at_least: float = 0.9) -> str:
    return f"jaro_winkler_similarity({left}, {right}) >= {at_least}"


def _null(column: str) -> Level:
    return Level("missing", f"{column}_l IS NULL OR {column}_r IS NULL", null=True)


def _exact(column: str, tf: bool = False) -> Level:
    return Level("exact", f"{column}_l = {column}_r", column if tf else None)


ELSE = Level("different", "ELSE")
# first name and surname the other way round, either may carry a typo (or a lone name in the other's surname)
SWAPPED = Level("swapped", f"({_jw_pair('first_name_l', 'surname_r')} AND ({_jw_pair('surname_l', 'first_name_r')} OR "
                           "surname_l IS NULL OR first_name_r IS NULL)) OR (surname_l = first_name_r AND "
                           "(first_name_l IS NULL OR surname_r IS NULL))")
TOKENS = "string_split({0}_{1}, ' ')"
# one locality within the other, spaces ignored ('surfersparadise' in 'dale view surfers paradise')
JOINED = "replace(locality_{0}, ' ', '')"
LEVELS: dict[str, list[Level]] = {
    "first_name": [_null("first_name"), _exact("first_name", tf=True),
                   Level("nickname", "list_has_any(first_forms_l, first_forms_r)"),
                   Level("similar", _jw("first_name", 0.9)), SWAPPED,
                   Level("initial", "(length(first_name_l) = 1 OR length(first_name_r) = 1) AND "
                                    "left(first_name_l, 1) = left(first_name_r, 1)"),
                   Level("close", _jw("first_name", 0.75)), ELSE],
    "surname": [_null("surname"), _exact("surname", tf=True), Level("similar", _jw("surname", 0.92)), SWAPPED,
                Level("close", _jw("surname", 0.8)), ELSE],
    "house": [_null("house"), _exact("house"), Level("typo", "damerau_levenshtein(house_l, house_r) <= 1"), ELSE],
    "unit": [_null("unit"), _exact("unit"), ELSE],
    "street": [_null("street"), _exact("street", tf=True), Level("similar", _jw("street", 0.92)),
               Level("close", _jw("street", 0.8)), ELSE],
    "building": [_null("building"), _exact("building"), Level("similar", _jw("building", 0.85)), ELSE],
    "locality": [_null("locality"), _exact("locality", tf=True), Level("similar", _jw("locality", 0.9)),
                 Level("part", f"contains({JOINED.format('l')}, {JOINED.format('r')}) OR "
                               f"contains({JOINED.format('r')}, {JOINED.format('l')})"),
                 Level("overlap", f"list_has_any({TOKENS.format('locality', 'l')}, {TOKENS.format('locality', 'r')})"),
                 ELSE],
    "postcode": [_null("postcode"), _exact("postcode"), Level("area", "left(postcode_l, 3) = left(postcode_r, 3)"),
                 ELSE],
    "phone": [_null("phone"), _exact("phone"), ELSE],
}
RECORD_COLUMNS = ("unique_id", "first_name", "surname", "first_forms", "house", "unit", "street", "building",
                  "locality", "postcode", "phone")
TOWN = "string_split(locality, ' ')[-1]"  # the last word of the locality (suburb, town or city)


@dataclass(frozen=True)
class BlockingKey:
    """A pair is scored when its records share a key: `parts` (SQL over the record columns) all present
    and equal, the key held by at most `cap` records (a commoner one says too little to be worth the pairs)."""
    name: str
    parts: tuple[str, ...]
    cap: int = 300

    def sql(self) -> str:
        present = " AND ".join(f"({part}) IS NOT NULL" for part in self.parts)
        return f"CASE WHEN {present} THEN concat_ws('|', {', '.join(self.parts)}) END"


# several keys per record, so that a typo or a gap in any one field leaves another key to find the pair
BLOCKING_KEYS = (
    BlockingKey("bk_phone", ("phone",)), BlockingKey("bk_postcode_surname", ("postcode", "surname")),
    BlockingKey("bk_postcode_first", ("postcode", "first_name")), BlockingKey("bk_postcode_house", ("postcode", "house")),
    BlockingKey("bk_house_street", ("house", "street")), BlockingKey("bk_house_surname", ("house", "surname")),
    BlockingKey("bk_street_surname", ("street", "surname")),
    BlockingKey("bk_names", ("least(first_name, surname)", "greatest(first_name, surname)"), cap=100),
    BlockingKey("bk_house_town", ("house", TOWN), cap=100),
    BlockingKey("bk_first_town", ("first_name", TOWN), cap=100),
    BlockingKey("bk_surname_town", ("surname", TOWN), cap=100))


def another_person(levels: pd.DataFrame) -> np.ndarray:
    """Per pair (columns <field>_level): True when the first name is clearly different, the house
    number differs or the town does (neither locality nor postcode agrees, one of them differs) and the
    phones differ."""
    def level(name: str, *labels: str) -> np.ndarray:
        return levels[f"{name}_level"].isin(labels).to_numpy()

    town_agrees = level("locality", "exact", "similar", "part") | level("postcode", "exact")
    town_differs = level("locality", "different", "overlap") | level("postcode", "different", "area")
    conflict = level("first_name", "different") | level("house", "different", "typo") | (town_differs & ~town_agrees)
    return conflict & level("phone", "different")


def _comparison(name: str, levels: list[Level]) -> dict[str, Any]:
    out = []
    for level in levels:
        entry: dict[str, Any] = {"sql_condition": level.sql, "label_for_charts": level.label}
        if level.null:
            entry["is_null_level"] = True
        if level.tf_column:
            entry["tf_adjustment_column"] = level.tf_column
            entry["tf_adjustment_weight"] = 1.0
        out.append(entry)
    return {"output_column_name": name, "comparison_levels": out}


def settings() -> SettingsCreator:
    """The untrained model."""
    return SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="unique_id",
        comparisons=[_comparison(name, levels) for name, levels in LEVELS.items()],
        blocking_rules_to_generate_predictions=[block_on(key.name) for key in BLOCKING_KEYS],
        retain_matching_columns=True, retain_intermediate_calculation_columns=False, max_iterations=20)


def train(linker: Linker) -> None:
    """Estimate the model's parameters on the linker's records (history + batch), without labels."""
    training = linker.training
    training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname", "house", "street"), block_on("first_name", "surname", "phone")],
        recall=PRIOR_RECALL)
    training.estimate_u_using_random_sampling(max_pairs=U_PAIRS, seed=SEED)
    for rule in (block_on("postcode", "house"), block_on("first_name", "surname")):
        training.estimate_parameters_using_expectation_maximisation(rule, max_pairs=EM_PAIRS)


def save(linker: Linker, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    linker.misc.save_model_to_json(str(path), overwrite=True)
