"""The Anthropic emulator reads prescription PDFs, caches prompts and runs Message Batches: real SDK."""
import base64
import time

import anthropic
import pytest

from emulators.prescriptions import (ILLEGIBLE, write_corrupt_pdf, write_image_only_pdf, write_large_pdf,
                                     write_prescription_pdf)

KEY = "sk-ant-test-Pq72Zs"
MODEL = "claude-sonnet-5"
TEXT = {"type": "string"}
MEDICATION = {"type": "object", "properties": {name: TEXT for name in ("drug", "strength", "dose", "frequency",
                                                                        "duration")}}
SCHEMA = {"type": "object", "required": ["patient_name"], "properties": {
    "patient_name": TEXT, "patient_age": {"type": "integer"}, "patient_sex": {"type": "string", "enum": ["F", "M"]},
    "date": TEXT, "prescriber": TEXT, "clinic": TEXT, "diagnosis": {"type": ["string", "null"]},
    "medications": {"type": "array", "items": MEDICATION}, "notes": {"type": ["string", "null"]}}}
TOOL = {"name": "record_prescription", "description": "Record the prescription's fields.", "input_schema": SCHEMA}
LONG_SYSTEM = "You read scanned prescriptions for a pharmacy and record every field exactly as written. " * 60


@pytest.fixture
def client(emulator):
    emulator.configure("anthropic", api_key=KEY)
    return anthropic.Anthropic(api_key=KEY, base_url=emulator.url, max_retries=0)


def pdf_block(path) -> dict:
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}}


def extraction(path, system="You read prescriptions.", tool=TOOL) -> dict:
    """Messages params asking for the prescription in `path` through a forced tool call."""
    return {"model": MODEL, "max_tokens": 1024, "system": system, "tools": [tool],
            "tool_choice": {"type": "tool", "name": tool["name"]},
            "messages": [{"role": "user", "content": [pdf_block(path), {"type": "text", "text": "Extract it."}]}]}


def test_tool_use_extraction_equals_the_ground_truth(client, emulator, tmp_path):
    for seed in range(8):
        truth = write_prescription_pdf(tmp_path / f"rx{seed}.pdf", seed)
        message = client.messages.create(**extraction(tmp_path / f"rx{seed}.pdf"))
        assert message.stop_reason == "tool_use" and len(message.content) == 1
        call = message.content[0]
        assert call.type == "tool_use" and call.name == TOOL["name"] and call.id.startswith("toolu_")
        assert call.input == truth
        assert 1_500 + 313 < message.usage.input_tokens < 3_000 + 313 + 200  # a page is text + image; tool prompt
    assert emulator.stats("anthropic")["documents"] == 8 and emulator.stats("anthropic")["pdf_pages"] == 8
    three_pages = write_large_pdf(tmp_path / "three.pdf", megabytes=0, pages=3, seed=1)
    message = client.messages.create(**extraction(tmp_path / "three.pdf"))
    assert message.content[0].input == three_pages and message.usage.input_tokens > 3 * 1_500


def test_other_schema_shapes_are_filled_by_name_alias_and_type(client, tmp_path):
    truth = write_prescription_pdf(tmp_path / "rx.pdf", 11)
    optional = {"anyOf": [TEXT, {"type": "null"}]}  # as pydantic writes Optional[str]
    schema = {"type": "object", "$defs": {"Drug": {"type": "object", "properties": {
                  "name": TEXT, "strength": TEXT, "dosage": TEXT, "frequency": TEXT, "duration": TEXT}}},
              "properties": {"patient": {"type": "object", "properties": {
                  "name": TEXT, "age": TEXT, "gender": {"enum": ["female", "male"]}}},
                  "doctor": TEXT, "dx": optional, "drugs": {"type": "array", "items": {"$ref": "#/$defs/Drug"}},
                  "insurance_number": optional}}
    message = client.messages.create(**extraction(tmp_path / "rx.pdf", tool={"name": "rx", "input_schema": schema}))
    answer = message.content[0].input
    assert answer["patient"] == {"name": truth["patient_name"], "age": str(truth["patient_age"]),
                                 "gender": {"F": "female", "M": "male"}[truth["patient_sex"]]}
    assert answer["doctor"] == truth["prescriber"] and answer["dx"] == truth["diagnosis"]
    assert answer["drugs"][0]["name"] == truth["medications"][0]["drug"]
    assert answer["drugs"][0]["dosage"] == truth["medications"][0]["dose"]
    assert answer["insurance_number"] is None  # not on the prescription: null, not made up
    plain = client.messages.create(model=MODEL, max_tokens=1024, messages=[{"role": "user", "content": [
        pdf_block(tmp_path / "rx.pdf"), {"type": "text", "text": "Extract the prescription as JSON."}]}])
    assert plain.stop_reason == "end_turn" and truth["patient_name"] in plain.content[0].text
    cut = client.messages.create(**{**extraction(tmp_path / "rx.pdf"), "max_tokens": 20})
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 20


def test_image_only_pdf_is_answered_with_nulls_and_an_illegible_note(client, tmp_path):
    write_image_only_pdf(tmp_path / "scan.pdf", 3)
    message = client.messages.create(**extraction(tmp_path / "scan.pdf"))
    assert message.stop_reason == "tool_use"
    answer = message.content[0].input
    assert answer.pop("notes") == ILLEGIBLE and set(answer.values()) == {None}
    assert 1_500 < message.usage.input_tokens < 3_000  # the page image is still paid for


def test_corrupt_too_many_pages_and_too_large_pdfs_are_rejected_like_the_api(client, emulator, tmp_path):
    write_corrupt_pdf(tmp_path / "corrupt.pdf")
    with pytest.raises(anthropic.BadRequestError) as corrupt:
        client.messages.create(**extraction(tmp_path / "corrupt.pdf"))
    assert corrupt.value.body["error"] == {
        "type": "invalid_request_error",
        "message": "messages.0.content.0.pdf.source.base64.data: The PDF specified was not valid."}
    write_large_pdf(tmp_path / "long.pdf", megabytes=0, pages=101)
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 100 PDF pages may be provided"):
        client.messages.create(**extraction(tmp_path / "long.pdf"))
    write_large_pdf(tmp_path / "big.pdf", megabytes=50)
    assert (tmp_path / "big.pdf").stat().st_size > 50 * 1024 * 1024
    with pytest.raises(anthropic.RequestTooLargeError) as too_large:
        client.messages.create(**extraction(tmp_path / "big.pdf"))
    assert too_large.value.body["error"]["type"] == "request_too_large"
    assert emulator.stats("anthropic")["statuses"] == {"400": 2, "413": 1}


def test_long_cached_system_prompt_is_written_once_then_read(client, emulator, tmp_path):
    write_prescription_pdf(tmp_path / "rx.pdf", 5)
    system = [{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral"}}]
    first, second = (client.messages.create(**extraction(tmp_path / "rx.pdf", system=system)) for _ in range(2))
    written = first.usage.cache_creation_input_tokens
    assert written >= 1_024 and first.usage.cache_read_input_tokens == 0
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == written
    assert second.usage.cache_read_input_tokens == written and second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens > 1_500  # the document comes after the breakpoint
    short = [{"type": "text", "text": "You read prescriptions.", "cache_control": {"type": "ephemeral"}}]
    unwritten = client.messages.create(**extraction(tmp_path / "rx.pdf", system=short))
    assert unwritten.usage.cache_creation_input_tokens == 0 and unwritten.usage.cache_read_input_tokens == 0
    assert {k: emulator.stats("anthropic")[k] for k in ("cache_writes", "cache_reads")} == {"cache_writes": 1,
                                                                                          "cache_reads": 1}
    emulator.reset()  # a reset forgets the cache
    emulator.configure("anthropic", api_key=KEY)
    again = client.messages.create(**extraction(tmp_path / "rx.pdf", system=system))
    assert again.usage.cache_creation_input_tokens == written
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        client.messages.create(**extraction(tmp_path / "rx.pdf", system=system * 5))


def wait_until_ended(client, batch_id, timeout=30):
    deadline = time.monotonic() + timeout
    while (batch := client.messages.batches.retrieve(batch_id)).processing_status != "ended":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return batch


def test_batch_of_prescriptions_with_errored_and_expired_results(client, emulator, tmp_path):
    emulator.configure("anthropic", batch_seconds=1, batch_error_rate=0.2, batch_expire_rate=0.1, seed=7)
    truths, requests = {}, []
    for n in range(19):
        truths[f"rx-{n}"] = write_prescription_pdf(tmp_path / f"rx{n}.pdf", 100 + n)
        requests.append({"custom_id": f"rx-{n}", "params": extraction(tmp_path / f"rx{n}.pdf")})
    batch = client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 19 and batch.results_url is None and batch.ended_at is None
    ended = wait_until_ended(client, batch.id)
    assert ended.results_url == f"{emulator.url}/v1/messages/batches/{batch.id}/results"
    assert ended.ended_at >= ended.created_at and ended.request_counts.processing == 0
    results = {line.custom_id: line.result for line in client.messages.batches.results(batch.id)}
    assert set(results) == set(truths)
    kinds = [result.type for result in results.values()]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        kind: getattr(ended.request_counts, kind) for kind in set(kinds)}
    assert kinds.count("errored") >= 2 and kinds.count("expired") >= 1 and kinds.count("succeeded") >= 5
    for custom_id, result in results.items():
        if result.type == "succeeded":
            assert result.message.content[0].input == truths[custom_id]
            assert result.message.usage.input_tokens > 1_500 and result.message.usage.service_tier == "batch"
            assert result.message.usage.cache_read_input_tokens == 0
        elif result.type == "errored":
            assert result.error.error.type in ("api_error", "overloaded_error")

    emulator.configure("anthropic", batch_error_rate=0, batch_expire_rate=0)  # no draw decides the corrupt PDF's case
    write_corrupt_pdf(tmp_path / "corrupt.pdf")
    corrupt = client.messages.batches.create(requests=[{"custom_id": "corrupt",
                                                        "params": extraction(tmp_path / "corrupt.pdf")}])
    wait_until_ended(client, corrupt.id)
    [line] = client.messages.batches.results(corrupt.id)
    assert line.custom_id == "corrupt" and line.result.type == "errored"
    assert line.result.error.error.type == "invalid_request_error"
    assert "The PDF specified was not valid" in line.result.error.error.message
    stats = emulator.stats("anthropic")
    assert (stats["batches_created"], stats["batch_requests"], stats["batch_results"]) == (2, 20, 20)


def test_batches_list_newest_first_with_pagination_cancel_and_delete(client, emulator):
    emulator.configure("anthropic", batch_seconds=30, seed=1)
    params = {"model": MODEL, "max_tokens": 50, "messages": [{"role": "user", "content": "One line for Acme Corp."}]}
    ids = [client.messages.batches.create(requests=[{"custom_id": f"r{i}", "params": params} for i in range(5)]).id
           for _ in range(5)][::-1]
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == ids[:2] and first.has_more and first.last_id == ids[1]
    assert [b.id for b in client.messages.batches.list(limit=2, after_id=ids[1]).data] == ids[2:4]
    assert [b.id for b in client.messages.batches.list(limit=2, before_id=ids[3]).data] == ids[1:3]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids  # the SDK follows the pages
    with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):
        client.messages.batches.results(ids[0])
    canceling = client.messages.batches.cancel(ids[0])
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    ended = wait_until_ended(client, ids[0])
    assert ended.request_counts.canceled + ended.request_counts.succeeded == 5 and ended.request_counts.canceled
    results = list(client.messages.batches.results(ids[0]))
    assert sorted(line.custom_id for line in results) == [f"r{i}" for i in range(5)]
    assert sum(line.result.type == "canceled" for line in results) == ended.request_counts.canceled
    with pytest.raises(anthropic.BadRequestError, match="can no longer be canceled"):
        client.messages.batches.cancel(ids[0])
    assert client.messages.batches.delete(ids[0]).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(ids[0])
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(api_key="wrong", base_url=emulator.url, max_retries=0).messages.batches.list()
