"""Requests as the dedupe's records: names and addresses parsed into parts, phones, one id per row.

A row's country (which decides how its address is read) is its `country` column, else its phone's
region, else the default. Parsing a long history takes most of a run's preparation, so the parsed
history can be kept in a folder as a Parquet file named by a digest of the history's name, address,
phone and country columns, of the default country and of the parsers' source: the next run with the
same history reads it back (DuckDB reads the file directly, nothing is held in Python); a history
that changed, or a parser that did, is parsed again and replaces the file.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.apis import address_words, addresses, names, normalise
from tasks.apis.addresses import parse_addresses
from tasks.apis.dedupe_model import RECORD_COLUMNS
from tasks.apis.names import parse_names

SOURCE_COLUMNS = ("name", "address", "phone_e164", "country")
CACHE_PREFIX = "dedupe_history_"
PARSE_ROWS = 200_000
RECORD_SCHEMA = pa.schema([("unique_id", pa.int64()), *((c, pa.list_(pa.string())) if c == "first_forms" else
                                                      (c, pa.string()) for c in RECORD_COLUMNS[1:])])


@functools.lru_cache(maxsize=4096)
def _region_of_prefix(prefix: str) -> str:
    """'+1416' -> 'CA', '+61' ... -> 'AU': the region of a number starting so (NANP by area code)."""
    try:
        number = phonenumbers.parse(prefix.ljust(12, "5"))
    except phonenumbers.NumberParseException:
        return ""
    return phonenumbers.region_code_for_number(number) or phonenumbers.region_code_for_country_code(
        number.country_code) or ""


def countries(frame: pd.DataFrame, default: str) -> pd.Series:
    """ISO country per row: the `country` column, else the phone_e164's region, else default."""
    out = pd.Series(default.upper(), index=frame.index, dtype=object)
    if "phone_e164" in frame:
        phone = frame["phone_e164"].fillna("").astype(str)
        prefix = phone.str[:5].where(phone.str.startswith("+"), "")
        regions = {p: _region_of_prefix(p) for p in prefix.unique() if p}
        region = prefix.map(regions).fillna("")
        out = out.where(region == "", region)
    if "country" in frame:
        given = frame["country"].fillna("").astype(str).str.strip().str.upper().replace({"UK": "GB"})
        out = out.where(given == "", given)
    return out


def records(frame: pd.DataFrame, first_id: int, default_country: str) -> pa.Table:
    """The frame as Splink records (RECORD_SCHEMA), unique_id = first_id + position."""
    if not len(frame):
        return RECORD_SCHEMA.empty_table()
    missing = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    parsed_names = parse_names(frame["name"] if "name" in frame else missing)
    address = parse_addresses(frame["address"] if "address" in frame else missing, countries(frame, default_country))
    phone = (frame["phone_e164"] if "phone_e164" in frame else missing).astype(object)
    phone = phone.where(phone.notna() & (phone.astype(str) != ""), None).reset_index(drop=True)
    out = pd.concat([parsed_names, address], axis=1).assign(phone=phone)
    out.insert(0, "unique_id", np.arange(first_id, first_id + len(frame), dtype=np.int64))
    return pa.Table.from_pandas(out[list(RECORD_COLUMNS)], schema=RECORD_SCHEMA, preserve_index=False)


def _record_chunks(frame: pd.DataFrame, default_country: str) -> Iterator[pa.Table]:
    """records() of PARSE_ROWS rows at a time (unique_id = position), so that parsing a long history
    holds one chunk's Python objects at a time."""
    for start in range(0, max(len(frame), 1), PARSE_ROWS):
        yield records(frame.iloc[start:start + PARSE_ROWS], start, default_country)


def _digest(frame: pd.DataFrame, default_country: str) -> str:
    """A digest of the columns records() reads, the default country and the parsers' source code."""
    digest = hashlib.sha256(default_country.upper().encode())
    for module in (addresses, address_words, names, normalise):
        digest.update(Path(module.__file__).read_bytes())
    for column in SOURCE_COLUMNS:
        digest.update(column.encode())
        if column in frame:
            digest.update(pd.util.hash_pandas_object(frame[column].astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def history_records(history: pd.DataFrame, default_country: str, cache_dir: Path | None) -> pa.Table | Path:
    """The history's records (unique_id = position): a Parquet file in cache_dir (written now unless
    this history was parsed before), or a table when there is no cache_dir."""
    if cache_dir is None:
        return pa.concat_tables(_record_chunks(history, default_country))
    path = cache_dir / f"{CACHE_PREFIX}{_digest(history, default_country)}.parquet"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        for old in cache_dir.glob(f"{CACHE_PREFIX}*.parquet"):
            old.unlink()
        partial = path.with_suffix(".partial")
        with pq.ParquetWriter(partial, RECORD_SCHEMA) as writer:
            for chunk in _record_chunks(history, default_country):
                writer.write_table(chunk)
        partial.replace(path)
    return path
