"""The shared rate limiter holds across threads and processes, as the emulator counts it."""
import asyncio
import multiprocessing
import threading
import time

import pytest
from conftest import API_KEY

from tasks.apis.http import ApiClient
from tasks.engine.outcomes import RowError
from tasks.engine.ratelimit import RateLimiter, limiter_path


def _send(url: str, state_dir: str, rate: float, start: int, count: int) -> None:
    async def main():
        limiter = RateLimiter(limiter_path(state_dir, url), rate)
        async with ApiClient(url, headers={"X-API-Key": API_KEY}, concurrency=20, limiter=limiter) as api:
            await asyncio.gather(*(
                api.request("POST", "/v1/recommendations", json={"user_id": f"p{start + i}", "monthly_spend": 10})
                for i in range(count)))

    asyncio.run(main())


def test_limit_holds_across_processes_and_threads(emulator, tmp_path):
    rate, per_worker = 40, 30  # 4 workers x 30 requests at 40/s: about 3 s
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_send, args=(emulator.url, str(tmp_path), rate, i * 100, per_worker))
                 for i in range(2)]
    threads = [threading.Thread(target=_send, args=(emulator.url, str(tmp_path), rate, 1000 + i * 100, per_worker))
               for i in range(2)]
    started = time.monotonic()
    for worker in processes + threads:
        worker.start()
    for worker in processes + threads:
        worker.join(60)
    elapsed = time.monotonic() - started
    assert all(p.exitcode == 0 for p in processes)
    stats = emulator.stats("cards")
    assert stats["statuses"] == {"200": 4 * per_worker}
    assert stats["max_1s"] <= rate
    assert elapsed >= (4 * per_worker - rate) / rate  # really spread out, not just lucky


def test_retry_after_pauses_every_sharer_of_the_limiter(tmp_path):
    limiter = RateLimiter(tmp_path / "slot", per_second=1000)
    other = RateLimiter(tmp_path / "slot", per_second=1000)
    limiter.pause(0.5)
    assert other.reserve() - time.time() == pytest.approx(0.5, abs=0.05)


def test_client_retries_5xx_and_honours_retry_after(emulator):
    emulator.configure("cards", storm_period=100, storm_duration=1.0, retry_after=1)

    async def main():
        async with ApiClient(emulator.url, headers={"X-API-Key": API_KEY}) as api:
            started = time.monotonic()
            response = await api.request("POST", "/v1/recommendations", json={"user_id": "r1"})
            return response, time.monotonic() - started, api.stats

    response, waited, stats = asyncio.run(main())
    assert response.status_code == 200
    assert waited >= 0.9 and stats.throttled >= 1 and stats.retries >= 1


def test_input_errors_are_not_retried(emulator):
    async def main():
        async with ApiClient(emulator.url, headers={"X-API-Key": API_KEY}) as api:
            await api.request("POST", "/v1/recommendations", json={"user_id": "x", "monthly_spend": -5})

    with pytest.raises(RowError) as error:
        asyncio.run(main())
    assert not error.value.retryable
    assert "HTTP 422: monthly_spend: Input should be greater than or equal to 0" in str(error.value)
    assert emulator.stats("cards")["total"] == 1
