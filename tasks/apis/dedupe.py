"""Duplicate book requests: new requests against the history of past requests and within the batch.

A duplicate is the same person at the same place, found by probabilistic record linkage (Splink on
DuckDB, model in `tasks.apis.dedupe_model`): names split into first name and surname
(`tasks.apis.names`), addresses into house, unit, street, building, locality, postcode and region
(`tasks.apis.addresses`, US/UK/CA/AU/IN), the phone in E.164. Each candidate pair (sharing a blocking
key) gets a match probability; pairs at or over the threshold are duplicates. In a batch the first
occurrence is kept and later ones point at it; a history match wins over a batch match.

The model is trained without labels on the history plus the batch when no model file is given or the
file does not exist yet (then it is written there), and reused as it is when the file exists: daily
runs with one model score alike. History needs request_id, name and address; phone_e164 and country
are optional on both sides. A row's country is its `country` column, else its phone's region, else the
default.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from splink import DuckDBAPI, Linker

from tasks.apis import dedupe_model
from tasks.apis.dedupe_model import BLOCKING_KEYS, LEVELS, RECORD_COLUMNS
from tasks.apis.dedupe_records import history_records, records

HISTORY_COLUMNS = ("request_id", "name", "address")
MIN_TRAINING_RECORDS = 1000  # fewer records than this cannot train a model: give one
DUCKDB_MEMORY = "1GB"  # DuckDB spills to disk past this
AGREE = ("exact", "nickname", "similar", "swapped", "initial", "typo", "no house")
LEVEL_COLUMNS = [f"{name}_level" for name in LEVELS]
PAIR_COLUMNS = ["row", "request_id", "kind", "matched_id", "match_probability", "match_weight", *LEVEL_COLUMNS,
                "best", "reason"]


@dataclass
class DedupeRun:
    """What a find_duplicates call did: the model used (and whether it was trained now), counts, times."""
    model_path: Path | None = None
    trained: bool = False
    candidates: int = 0  # new x history pairs sharing a blocking key (once per key shared)
    pairs: int = 0
    duplicate_rows: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def check_history_columns(columns: Iterable[str], path: object) -> None:
    """Raise ValueError naming the missing columns, the expected ones and what the file has (the
    reader's own `_row` and `_input_error` left out, as in its own missing-column error)."""
    have = [str(c) for c in columns if not str(c).startswith("_")]
    missing = [c for c in HISTORY_COLUMNS if c not in have]
    if missing:
        raise ValueError(f"{path}: history file lacks column(s) {', '.join(missing)}; expected "
                         f"{', '.join(HISTORY_COLUMNS)} (phone optional), found {', '.join(have) or 'none'}")


def _linker(db: DuckDBAPI, everyone: str, model_path: Path | None, run: DedupeRun) -> Linker:
    """A linker over all records: the saved model if model_path exists, else one trained now (and saved)."""
    table = db.register(everyone)
    if model_path is not None and model_path.exists():
        run.model_path = model_path
        return Linker(table, str(model_path), log_level=logging.ERROR)
    count = db._con.execute(f"SELECT count(*) FROM {everyone}").fetchall()[0][0]
    if count < MIN_TRAINING_RECORDS:
        raise ValueError(f"{count:,} requests are too few to train a duplicate model (at least "
                         f"{MIN_TRAINING_RECORDS:,}); give a model trained on a larger history (--dedupe-model)")
    linker = Linker(table, dedupe_model.settings(), log_level=logging.ERROR)
    dedupe_model.train(linker)
    run.trained = True
    if model_path is not None:
        dedupe_model.save(linker, model_path)
        run.model_path = model_path
    return linker


def _with_blocking_keys(db: DuckDBAPI, history: str, batch: str, split: int) -> int:
    """Tables everyone, history_keyed and batch_keyed: the records with their blocking keys (BLOCKING_KEYS,
    counted over history and batch together; a key held by more records than its cap is left out).
    Returns the candidate pairs new x history that the keys give (a pair sharing two keys counts twice)."""
    raw = ", ".join(f"{key.sql()} AS {key.name}" for key in BLOCKING_KEYS)
    sql = db._con.execute
    sql(f"CREATE TABLE raw_keys AS SELECT *, {raw} FROM (SELECT * FROM {history} UNION ALL SELECT * FROM {batch})"
        ).fetchall()
    for key in BLOCKING_KEYS:
        sql(f"CREATE TABLE common_{key.name} AS SELECT {key.name} AS k FROM raw_keys WHERE {key.name} IS NOT NULL "
            f"GROUP BY {key.name} HAVING count(*) > {key.cap}").fetchall()
    capped = ", ".join(f"CASE WHEN {key.name} IN (SELECT k FROM common_{key.name}) THEN NULL ELSE {key.name} END "
                       f"AS {key.name}" for key in BLOCKING_KEYS)
    sql(f"CREATE TABLE everyone AS SELECT {', '.join(RECORD_COLUMNS)}, {capped} FROM raw_keys").fetchall()
    sql("DROP TABLE raw_keys").fetchall()
    sql(f"CREATE TABLE history_keyed AS SELECT * FROM everyone WHERE unique_id < {split}").fetchall()
    sql(f"CREATE TABLE batch_keyed AS SELECT * FROM everyone WHERE unique_id >= {split}").fetchall()
    counts = " + ".join(
        f"(SELECT coalesce(sum(n.c * h.c), 0) FROM (SELECT {k.name}, count(*) c FROM batch_keyed GROUP BY 1) n "
        f"JOIN (SELECT {k.name}, count(*) c FROM history_keyed GROUP BY 1) h USING ({k.name}))" for k in BLOCKING_KEYS)
    return int(sql(f"SELECT {counts}").fetchall()[0][0])


def _scored(new: pd.DataFrame, history: pd.DataFrame, threshold: float, model_path: Path | None,
            country: str, cache_dir: Path | None, run: DedupeRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(pairs new x history, pairs within new) at or over threshold: unique_id_l/_r, probability, levels."""
    started = time.monotonic()
    old, fresh = history_records(history, country, cache_dir), records(new, len(history), country)
    run.seconds["prepare"] = time.monotonic() - started
    db = DuckDBAPI()
    con = db._con
    con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'").fetchall()
    if isinstance(old, Path):
        con.execute(f"CREATE VIEW history AS SELECT * FROM read_parquet('{old}')").fetchall()
    else:
        con.register("history", old)
    con.register("batch", fresh)
    run.candidates = _with_blocking_keys(db, "history", "batch", len(history))
    con.unregister("batch")
    del old, fresh
    run.seconds["keys"] = time.monotonic() - started - run.seconds["prepare"]
    old_table, new_table = db.register("history_keyed"), db.register("batch_keyed")
    started = time.monotonic()
    linker = _linker(db, "everyone", model_path, run)
    for column in {level.tf_column for levels in LEVELS.values() for level in levels if level.tf_column}:
        linker.table_management.compute_tf_table(column)
    run.seconds["model"] = time.monotonic() - started
    started = time.monotonic()
    options = {"threshold_match_probability": threshold, "warning_mode": "never"}
    between = (linker.inference.predict_between(new_table, old_table, **options).as_pandas_dataframe()
               if len(history) and len(new) else pd.DataFrame())
    within = linker.inference.predict_within(new_table, **options).as_pandas_dataframe() if len(new) > 1 \
        else pd.DataFrame()
    run.seconds["predict"] = time.monotonic() - started
    return between, within


def _pairs(scored: pd.DataFrame, kind: str, offset: int, rows: np.ndarray, ids: np.ndarray,
           targets: np.ndarray) -> pd.DataFrame:
    """Splink's scored pairs as PAIR_COLUMNS (less best/reason): the later new row points at the other."""
    if scored.empty:
        return pd.DataFrame(columns=[*PAIR_COLUMNS[:-2], "_pos"])
    left, right = scored["unique_id_l"].to_numpy(np.int64), scored["unique_id_r"].to_numpy(np.int64)
    position = np.maximum(left, right) - offset  # the new row (the later one within the batch)
    other = np.minimum(left, right) - (offset if kind == "batch" else 0)
    out = pd.DataFrame({"_pos": position, "row": rows[position], "request_id": ids[position], "kind": kind,
                        "matched_id": pd.Series(targets[other], dtype=object),
                        "match_probability": scored["match_probability"].to_numpy(float),
                        "match_weight": scored["match_weight"].to_numpy(float)})
    for name, levels in LEVELS.items():
        labels = np.array([level.label for level in levels[::-1]], dtype=object)  # gamma -1 = null, 0 = else, up to exact
        gamma = scored[f"gamma_{name}"].to_numpy(np.int64)
        out[f"{name}_level"] = np.where(gamma < 0, "missing", labels[np.clip(gamma, 0, len(labels) - 1)])
    return out


def _reason(row: pd.Series) -> str:
    agree = [name.replace("_", " ") for name in LEVELS if row[f"{name}_level"] in AGREE]
    where = "history request" if row["kind"] == "history" else "batch row"
    return (f"duplicate of {where} {row['matched_id']} (match probability {row['match_probability']:.4f}; "
            f"agree: {', '.join(agree) or 'nothing exactly'})")


def find_duplicates(new: pd.DataFrame, history: pd.DataFrame, threshold: float = 0.9,
                    model_path: Path | None = None, country: str = "US", run: DedupeRun | None = None,
                    cache_dir: Path | None = None) -> pd.DataFrame:
    """All pairs with match probability >= threshold, one row per pair (PAIR_COLUMNS); `best` marks the
    one pair per duplicate row that gives its reason: its most probable history match, else its most
    probable earlier batch row.

    new: name, address, optional phone_e164, country, request_id and `_row` (row numbers, else index + 1);
    history: request_id, name, address, optional phone_e164 and country. model_path: a Splink model file
    to reuse, or to write after training when it does not exist (None: train, keep nothing). cache_dir:
    where the parsed history is kept for the next run with the same history (None: keep nothing). `run`,
    if given, receives what was done (DedupeRun).
    """
    check_history_columns(history.columns, "history")
    run = run if run is not None else DedupeRun()
    if not len(new):
        return pd.DataFrame(columns=PAIR_COLUMNS)
    new, history = new.reset_index(drop=True) if "_row" in new else new, history.reset_index(drop=True)
    rows = new["_row"].to_numpy(np.int64) if "_row" in new else new.index.to_numpy(np.int64) + 1
    ids = new["request_id"].astype(str).to_numpy(object) if "request_id" in new else np.full(len(new), "", object)
    between, within = _scored(new.reset_index(drop=True), history, threshold, model_path, country, cache_dir,
                              run)
    offset = len(history)
    pairs = pd.concat([_pairs(between, "history", offset, rows, ids, history["request_id"].astype(str).to_numpy(object)),
                       _pairs(within, "batch", offset, rows, ids, rows.astype(object))], ignore_index=True)
    pairs = pairs[~dedupe_model.another_person(pairs)]
    pairs["_order"] = (pairs["kind"] == "batch").astype(float) * 2 - pairs["match_probability"].astype(float)
    pairs = pairs.sort_values(["_pos", "_order"], kind="stable")
    pairs["best"] = ~pairs["_pos"].duplicated()
    pairs["reason"] = [_reason(row) for _, row in pairs.iterrows()] if len(pairs) else []
    run.pairs, run.duplicate_rows = len(pairs), int(pairs["best"].sum())
    return pairs[PAIR_COLUMNS].reset_index(drop=True)
