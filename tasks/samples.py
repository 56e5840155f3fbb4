"""Generated sample inputs for the demo, tests and benchmarks (written in blocks: 2 M rows fit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.tables import OutputWriter

CATEGORIES = ["groceries", "fuel", "travel", "dining", "online", "utilities", "other"]
CITIES = ["Austin", "Boston", "Chicago", "Denver", "Miami", "Seattle", "Portland", "Phoenix"]


def users_frame(start: int, count: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed + start)
    return pd.DataFrame({
        "user_id": [f"u{n:08d}" for n in range(start, start + count)],
        "monthly_spend": rng.gamma(2.0, 900.0, count).round(2),
        "top_category": rng.choice(CATEGORIES, count),
        "credit_score": rng.integers(520, 850, count),
        "city": rng.choice(CITIES, count),
    })


def write_users(path: str | Path, rows: int, seed: int = 7, block: int = 100_000) -> Path:
    """Write `rows` users to csv/xlsx/parquet/jsonl (by suffix), streaming in blocks."""
    writer = OutputWriter(path)
    for start in range(0, rows, block):
        writer.write(users_frame(start, min(block, rows - start), seed))
    if rows == 0:
        writer.write(users_frame(0, 0, seed))
    return writer.close()
