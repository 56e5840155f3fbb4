"""Personalised-emails benchmark: prints figures, asserts nothing.

  python bench/email_benchmark.py [--leads 5000] [--companies 1000]

Emulated Serper (300 ms) and an OpenAI-compatible LLM (Groq path, 1.5 s) limited to 600 requests
per minute. The physical limit is leads / (600 per minute) + one search and one LLM latency: the
time at the provider's sustained rate. (The emulator counts the limit over a sliding 60 s window,
so a client bursting 600 calls at the start of each minute could finish up to one minute sooner;
real providers enforce their per-minute limits over shorter intervals too, so the flow paces evenly.)
Then the old way on the same input: ThreadPoolExecutor(20), search + LLM per row, no cache, a 429
retried after its Retry-After. Prefect runs against a local server.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="bench-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import httpx  # noqa: E402
import pandas as pd  # noqa: E402

from emulators import Emulator  # noqa: E402
from tasks.engine.server import temporary_server  # noqa: E402
from tasks.samples.tables import write_leads  # noqa: E402

KEYS = {"OPENAI_API_KEY": "bench-llm-key", "SERPER_API_KEY": "bench-search-key"}
LIMIT_PER_MINUTE, LLM_LATENCY, SEARCH_LATENCY = 600, 1.5, 0.3
SETTINGS = {"chat": {"latency": LLM_LATENCY, "rate_limit": LIMIT_PER_MINUTE, "rate_window": 60,
                     "api_key": KEYS["OPENAI_API_KEY"]},
            "serper": {"latency": SEARCH_LATENCY, "api_key": KEYS["SERPER_API_KEY"]}}


def new_way(directory: Path, leads: Path, url: str, per_request: int) -> tuple[float, dict]:
    from flows.personalised_emails import personalised_emails

    os.environ["BATCHFLOWS_WORK_DIR"] = str(directory / "work")
    started = time.monotonic()
    figures = personalised_emails(str(leads), str(directory / "out.csv"), provider="openai",
                                  llm={"base_url": url + "/openai/v1", "requests_per_minute": LIMIT_PER_MINUTE},
                                  search={"base_url": url, "requests_per_minute": 6000},
                                  concurrency=60 * per_request, leads_per_request=per_request)
    return time.monotonic() - started, figures


def old_way(leads: Path, url: str, workers: int = 20) -> tuple[float, int, int]:
    """The old runner: per row a search then an LLM call, 20 threads, sync httpx, no cache."""
    rows = pd.read_csv(leads).to_dict("records")
    client = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=workers))

    def post(path: str, key: dict, body: dict) -> httpx.Response:
        for _ in range(10):
            response = client.post(path, headers=key, json=body)
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("retry-after", 1)))
        return response

    def one(row: dict) -> bool:
        found = post("/search", {"X-API-KEY": KEYS["SERPER_API_KEY"]}, {"q": f"{row['company']} {row['domain']}"})
        prompt = f"Write an opening line to {row['first_name']} at {row['company']}: {found.text[:900]}"
        answer = post("/openai/v1/chat/completions", {"Authorization": f"Bearer {KEYS['OPENAI_API_KEY']}"},
                      {"model": "llama-3.3-70b-versatile", "messages": [{"role": "user", "content": prompt}],
                       "max_tokens": 120})
        return answer.status_code == 200

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        ok = sum(pool.map(one, rows))
    client.close()
    return time.monotonic() - started, ok, len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--leads-per-request", type=int, default=1, help="leads answered by one LLM call")
    parser.add_argument("--no-old-way", action="store_true", help="run the flow only")
    args = parser.parse_args()
    os.environ.update(KEYS)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    directory = Path(tempfile.mkdtemp(prefix="bench-emails-"))
    leads = write_leads(directory / "leads.csv", args.leads, args.companies)
    calls = -(-args.leads // args.leads_per_request)
    physical = calls / (LIMIT_PER_MINUTE / 60) + LLM_LATENCY + SEARCH_LATENCY
    bursting = (calls - 1) // LIMIT_PER_MINUTE * 60 + LLM_LATENCY + SEARCH_LATENCY
    print(f"{args.leads:,} leads at {args.companies:,} companies, {args.leads_per_request} per LLM call; "
          f"LLM {LLM_LATENCY} s, limit {LIMIT_PER_MINUTE}/min; "
          f"search {SEARCH_LATENCY} s; physical limit {physical:.1f} s (bursting a full window each minute: "
          f"{bursting:.1f} s)", flush=True)
    with temporary_server(), Emulator(SETTINGS) as emulator:
        wall, figures = new_way(directory, leads, emulator.url, args.leads_per_request)
        llm, search = emulator.stats("chat"), emulator.stats("serper")
        research = figures["research"]
        print(f"flow:    {wall:.1f} s wall = {physical / wall:.3f} of the physical limit; {figures['ok']:,} ok, "
              f"{figures['partial']:,} partial, {figures['failed']:,} failed", flush=True)
        print(f"         research {research['seconds']:.1f} s: {search['total']:,} searches; "
              f"LLM: {llm['total']:,} requests, statuses {llm['statuses']}, max in any 60 s {llm['max_60s']}, "
              f"LLM phase {figures['wall_seconds']:.1f} s; ${figures.get('cost_usd', 0):.4f}", flush=True)
        if args.no_old_way:
            return
        emulator.reset()
        old, ok, rows = old_way(leads, emulator.url)
        llm, search = emulator.stats("chat"), emulator.stats("serper")
        print(f"old way: {old:.1f} s wall = {physical / old:.3f} of the physical limit; {ok:,}/{rows:,} ok; "
              f"{search['total']:,} searches; LLM {llm['total']:,} requests, statuses {llm['statuses']}", flush=True)
        print(f"flow vs old way: {old / wall:.2f}x faster, {search['total'] / max(1, research['looked_up']):.1f}x "
              f"fewer searches")


if __name__ == "__main__":
    main()
