"""Message Batch adoption against the Anthropic emulator, through the real SDK: an intent a killed run
left open adopts the batch that holds its requests (a wrong guess, made on time and size alone, is
rejected once the results name the custom_ids), and voids itself once no batch can match any more."""
import asyncio
import time

import anthropic
import pytest

from tasks.apis.batches import BatchSpec, NotSubmitted
from tasks.apis.llm import LlmSpec
from tasks.engine.ratelimit import FileLimits
from tasks.engine.secrets import Secret

KEY = "sk-ant-batches-Xk31"
PARAMS = {"max_tokens": 50, "messages": [{"role": "user", "content": "One line for Acme Corp."}]}


@pytest.fixture
def spec(emulator, tmp_path) -> BatchSpec:
    emulator.configure("anthropic", api_key=KEY, batch_seconds=0.5)
    llm = LlmSpec("anthropic", "claude-sonnet-5", Secret(KEY), emulator.url, timeout=2)
    return BatchSpec(llm, str(tmp_path / "batches.sqlite"), poll_seconds=0.1, clock_skew=0.5,
                     intents=str(tmp_path / "intents.sqlite"))


def killed_run_creates(client, spec: BatchSpec, tmp_path, groups: dict[str, list[str]], order: list[str]):
    """What a run killed before any answer leaves behind: an intent per group (written in `groups`
    order, 0.3 s apart), and batches the API created in `order`."""
    intents = spec.client(1, FileLimits(tmp_path)).intents
    for custom_ids in groups.values():
        intents.begin(custom_ids)
        time.sleep(0.3)
    params = {"model": spec.llm.model, **PARAMS}
    return {name: client.messages.batches.create(requests=[{"custom_id": c, "params": params} for c in groups[name]]).id
            for name in order}


async def results(spec: BatchSpec, tmp_path, custom_ids: list[str]) -> dict[str, tuple[str | None, str]]:
    """custom_id -> (the batch that holds it, its result type), as a rerun's chunk sees them."""
    async with spec.client(1, FileLimits(tmp_path)) as batches:
        found = await asyncio.gather(*(batches.result(c) for c in custom_ids))
        return {c: (await batches.submitted(c), result.type) for c, result in zip(custom_ids, found)}


def test_open_intents_adopt_their_batches_even_when_the_closest_guess_is_wrong(emulator, spec, tmp_path):
    client = anthropic.Anthropic(api_key=KEY, base_url=emulator.url, max_retries=0)
    groups = {"a": [f"a{n}" for n in range(4)], "b": [f"b{n}" for n in range(4)]}
    created = killed_run_creates(client, spec, tmp_path, groups, order=["b", "a"])  # a's closest batch is b's
    found = asyncio.run(results(spec, tmp_path, groups["a"] + groups["b"]))
    assert found == {c: (created[name], "succeeded") for name, ids in groups.items() for c in ids}
    intents = spec.client(1, FileLimits(tmp_path)).intents
    assert intents.of("a0").rejected == (created["b"],) and intents.of("a0").verified
    stats = emulator.stats("anthropic")
    assert (stats["batches_created"], stats["batch_requests"]) == (2, 8)  # nothing sent again


def test_an_intent_no_batch_can_match_is_voided_and_its_requests_sent_again(emulator, spec, tmp_path):
    client = anthropic.Anthropic(api_key=KEY, base_url=emulator.url, max_retries=0)
    groups = {"sent": ["s0", "s1"], "lost": ["l0", "l1", "l2"]}  # the kill came before `lost` left
    created = killed_run_creates(client, spec, tmp_path, groups, order=["sent"])

    async def rerun():
        async with spec.client(1, FileLimits(tmp_path)) as batches:
            with pytest.raises(NotSubmitted):
                await batches.result("l0")
            assert await batches.submitted("l1") is None and await batches.submitted("s1") == created["sent"]
            async def submit(custom_id: str) -> str:
                async with batches.member():
                    await asyncio.sleep(0)  # every row joins before any queues, as rows do while downloading
                    return await batches.submit(custom_id, PARAMS)

            resent = await asyncio.gather(*map(submit, groups["lost"]))
            return resent, [(await batches.result(c)).type for c in groups["lost"]]

    resent, kinds = asyncio.run(rerun())
    assert len(set(resent)) == 1 and resent[0] != created["sent"] and kinds == ["succeeded"] * 3
    stats = emulator.stats("anthropic")
    assert (stats["batches_created"], stats["batch_requests"]) == (2, 5)
