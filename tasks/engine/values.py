"""Cell values both ways: input values (parquet columns, JSON lines) as plain JSON-able Python values
for the row handlers, and output values in the form each output format needs (text cells for CSV
and xlsx, typed columns for parquet, exact JSON lines).

Input mapping (one place, `json_value`): timestamps -> ISO 8601 strings (with their offset when
tz-aware), dates and times -> ISO strings, durations -> ISO 8601 durations, lists/arrays -> lists,
structs/maps/dicts -> dicts, decimals -> int when they have no fraction digits, float when the float
has the same value, else the exact decimal string (never a silent rounding), NaN -> None, numpy
scalars -> Python scalars, bytes -> text when UTF-8. What has no JSON form (infinity, bytes that
are not UTF-8, a map with a repeated key, an unknown object) raises `UnmappableValue`.
"""
from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import re
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

TEXT_KINDS = {"string", "empty", "integer", "boolean"}  # pandas' infer_dtype kinds a text cell takes as they are
NUMBER_TYPES = {"integer": "Int64", "boolean": "boolean", "floating": "Float64", "mixed-integer-float": "Float64"}


class UnmappableValue(ValueError):
    """A value that has no JSON form; the message says why (the caller names file, row and column)."""


def json_value(value: Any) -> Any:
    """`value` as None, bool, int, float, str, list or dict (recursively)."""
    if value is None or isinstance(value, (bool, int, str)) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            raise UnmappableValue(f"{value} is not a JSON number")
        return float(value)
    if isinstance(value, np.generic):
        return json_value(value.item())
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, decimal.Decimal):
        return _decimal_value(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):  # pandas' Timestamp too, nanoseconds kept
        return value.isoformat()
    if isinstance(value, (dt.timedelta, np.timedelta64)):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as error:
            raise UnmappableValue(f"binary value is not UTF-8 text (byte 0x{bytes(value)[error.start]:02x} "
                                  f"at offset {error.start})") from None
    if isinstance(value, dict):
        return {_json_key(key): json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_value(item) for item in value]
    raise UnmappableValue(f"a {type(value).__name__} value ({str(value)[:50]!r}) has no JSON form")


def _decimal_value(value: decimal.Decimal) -> int | float | str | None:
    if value.is_nan():
        return None
    if value.is_infinite():
        raise UnmappableValue(f"{value} is not a JSON number")
    if value.as_tuple().exponent >= 0:
        return int(value)
    number = float(value)
    return number if decimal.Decimal(repr(number)) == value else str(value)


def _json_key(key: Any) -> str:
    key = json_value(key)
    return key if isinstance(key, str) else json.dumps(key)


def _is_plain(kind: pa.DataType) -> bool:
    """Types pandas gives as plain Python values once the column has no nulls (and no NaN)."""
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
            or pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_json(kind: pa.DataType) -> bool:
    """Types whose Python values (`to_pylist`) are JSON values already: nothing to convert."""
    if pa.types.is_floating(kind):
        return False  # NaN and infinity are not
    if _is_plain(kind) or pa.types.is_null(kind):
        return True
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _is_json(kind.value_type)
    if pa.types.is_struct(kind):
        return all(_is_json(kind.field(i).type) for i in range(kind.num_fields))
    return False


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def arrow_column(column: pa.Array) -> tuple[Any, dict[int, str]]:
    """A parquet column as pandas-ready values and {row index: why that value has no JSON form}.

    Columns of plain types without nulls stay typed (numpy ints and floats, strings); the others
    become Python objects (an int column with nulls: ints and None, never floats)."""
    kind = column.type
    if pa.types.is_floating(kind) and kind.bit_width < 64:  # 1e-07 as float32 is 1.0000000116860974e-07
        shortest = column.to_numpy(zero_copy_only=False).astype(str).astype(np.float64)  # float32's own digits
        column, kind = pa.array(shortest, mask=column.is_null().to_numpy(zero_copy_only=False)), pa.float64()
    if _is_plain(kind) and column.null_count == 0:
        values = column.to_pandas()
        if not pa.types.is_floating(kind) or np.isfinite(values.to_numpy()).all():
            return values, {}
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        try:  # whole microseconds: Python datetimes, much faster than pandas' Timestamps
            column = column.cast(pa.timestamp("us", tz=kind.tz))
        except pa.ArrowInvalid:
            pass  # nanoseconds: Timestamps keep them
    problems: dict[int, str] = {}
    try:
        items = column.to_pylist(maps_as_pydicts="strict")
    except KeyError:  # a map with a repeated key: find its rows
        items = []
        for index in range(len(column)):
            try:
                items.append(column[index].as_py(maps_as_pydicts="strict"))
            except KeyError as error:
                items.append(None)
                repeated = re.search(r"duplicate key was (.+?)\)?\.?$", str(error.args[0]))
                problems[index] = f"a map with a repeated key ({repeated.group(1) if repeated else error})"
    if _is_json(kind):
        return pd.Series(items, dtype=object), problems
    if pa.types.is_temporal(kind) and not pa.types.is_duration(kind) and not pa.types.is_interval(kind):
        return pd.Series([_iso(item) for item in items], dtype=object), problems
    values = []
    for index, item in enumerate(items):
        try:
            values.append(json_value(item))
        except UnmappableValue as error:
            values.append(None)
            problems[index] = str(error)
    return pd.Series(values, dtype=object), problems


def json_lines(frame: pd.DataFrame) -> str:
    """The frame as JSON lines, floats with every digit (pandas' `to_json` keeps 10 decimals:
    1e-12 would become 0.0); a value that has no JSON form (infinity) is written as text."""
    columns = list(frame.columns)
    return "".join(json.dumps(dict(zip(columns, map(_output_json, values))), ensure_ascii=False,
                              separators=(",", ":")) + "\n"
                   for values in frame.itertuples(index=False, name=None))


def _output_json(value: Any) -> Any:
    if value is None or type(value) in (str, int, bool):
        return value
    try:
        return json_value(value)
    except UnmappableValue:
        return str(value)


def plain_float(value: float) -> str:
    """A float in positional notation with every digit that tells it apart (3.36e-05 -> 0.0000336)."""
    if type(value) is float or isinstance(value, np.float64):
        text = float.__repr__(value)
        if "e" not in text:
            return text
    return np.format_float_positional(value, trim="0")


def cell_text(value: Any) -> Any:
    """A value for a text cell: floats positional, lists and dicts as JSON, None for missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else plain_float(value)
    if isinstance(value, (list, dict, tuple, np.ndarray)):
        return json.dumps(json_value(value), ensure_ascii=False)
    return value


def text_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with float columns, and object columns holding floats, lists or dicts, as text cells."""
    out = None
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_float_dtype(column.dtype):
            converted = column.map(cell_text, na_action="ignore").astype(object)
        elif column.dtype == object and pd.api.types.infer_dtype(column, skipna=True) not in TEXT_KINDS:
            converted = column.map(cell_text).astype(object)
        else:
            continue
        if out is None:
            out = frame.copy()
        out[name] = converted.where(column.notna(), None)
    return frame if out is None else out



def arrow_ready(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame for parquet: object columns of ints (with None) as Int64, of bools as boolean, of
    numbers as Float64; any other object column as text (lists and dicts as JSON)."""
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype != object:
            continue
        kind = pd.api.types.infer_dtype(frame[name], skipna=True)
        if kind in NUMBER_TYPES:
            try:
                frame[name] = pd.array(frame[name].tolist(), dtype=NUMBER_TYPES[kind])
                continue
            except (OverflowError, TypeError, ValueError):  # whole numbers past 64 bits: text
                pass
        if kind not in ("string", "empty"):
            frame[name] = frame[name].map(_text_or_none)
    return frame



def _text_or_none(value: Any) -> str | None:
    text = cell_text(value)
    return None if text is None else str(text)
