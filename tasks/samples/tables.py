"""Generated sample inputs for the demo, tests and benchmarks (written in blocks: 2 M rows fit)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tasks.engine.tables import OutputWriter

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


FIRST_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luis"]
COMPANY_WORDS = ["Acme", "Blue", "Cedar", "Delta", "Ember", "Falcon", "Granite", "Harbor", "Iris", "Juniper"]
COMPANY_KINDS = ["Logistics", "Foods", "Robotics", "Health", "Analytics", "Energy", "Studio", "Systems"]


def leads_frame(rows: int, companies: int, seed: int = 11) -> pd.DataFrame:
    """Leads at `companies` distinct companies (each with its own domain), shuffled."""
    rng = np.random.default_rng(seed)
    names = [f"{COMPANY_WORDS[i % 10]} {COMPANY_KINDS[(i // 10) % 8]} {i}" for i in range(companies)]
    company = np.arange(rows) % companies
    rng.shuffle(company)
    return pd.DataFrame({
        "email": [f"lead{n}@{names[c].lower().replace(' ', '')}.com" for n, c in enumerate(company)],
        "first_name": rng.choice(FIRST_NAMES, rows),
        "company": [names[c] for c in company],
        "domain": [f"{names[c].lower().replace(' ', '')}.com" for c in company],
        "title": rng.choice(["CEO", "Head of Operations", "CTO", "VP Sales"], rows),
    })


def write_leads(path: str | Path, rows: int, companies: int, seed: int = 11) -> Path:
    writer = OutputWriter(path)
    writer.write(leads_frame(rows, companies, seed))
    return writer.close()
