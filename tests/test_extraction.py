"""tasks/apis/extraction.py through the real anthropic SDK against the emulator: fields, statuses, cost."""
import asyncio

import pytest

from emulators.prescriptions import write_corrupt_pdf, write_image_only_pdf, write_prescription_pdf
from tasks.engine.ratelimit import FileLimits
from tasks.apis.extraction import SYSTEM, estimate_tokens, interpret, request_params
from tasks.engine.outcomes import RowError
from tasks.apis.llm import DEFAULT_PRICES, LlmSpec
from tasks.engine.secrets import Secret

KEY = "sk-ant-extract-Pq61"


def extract_all(emulator, work, pdfs):
    spec = LlmSpec("anthropic", "claude-sonnet-5", Secret(KEY), emulator.url, price=DEFAULT_PRICES["claude-sonnet-5"],
                   requests_per_minute=6000)

    async def one(client, pdf):
        try:
            message = await client.message(request_params(pdf), estimate_tokens(pdf), SYSTEM)
        except RowError as error:
            return "failed", None, str(error), None
        return (*interpret(message), client.cost(message.usage))

    async def go():
        client = spec.client(4, FileLimits(work))
        async with client:
            results = await asyncio.gather(*(one(client, pdf) for pdf in pdfs))
        client.close()
        return results

    return asyncio.run(go())


@pytest.fixture
def claude(emulator):
    emulator.configure("anthropic", api_key=KEY)
    return emulator


def test_fields_match_the_document_and_usage_is_priced(claude, tmp_path):
    truths, pdfs = [], []
    for seed in range(6):
        pdfs.append(tmp_path / f"rx{seed}.pdf")
        truths.append(write_prescription_pdf(pdfs[-1], seed))
    for (status, fields, error, cost), truth in zip(extract_all(claude, tmp_path, pdfs), truths):
        assert status == "success" and error == "" and cost > 0
        assert fields["patient_name"] == truth["patient_name"] and fields["date"] == truth["date"]
        assert fields["prescriber"] == truth["prescriber"] and fields["age"] == truth["patient_age"]
        assert [m["drug"] for m in fields["medications"]] == [m["drug"] for m in truth["medications"]]
        assert [m["strength"] for m in fields["medications"]] == [m["strength"] for m in truth["medications"]]


def test_an_illegible_scan_is_partial_and_a_corrupt_file_fails(claude, tmp_path):
    write_image_only_pdf(tmp_path / "scan.pdf", 1)
    write_corrupt_pdf(tmp_path / "broken.pdf")
    (tmp_path / "empty.pdf").write_bytes(b"")
    scan, broken, empty = extract_all(claude, tmp_path, [tmp_path / "scan.pdf", tmp_path / "broken.pdf",
                                                          tmp_path / "empty.pdf"])
    assert scan[0] == "partial" and "missing or illegible: patient_name, date, prescriber, medications" in scan[2]
    assert broken[0] == "failed" and "HTTP 400" in broken[2] and "The PDF specified was not valid" in broken[2]
    assert empty[0] == "failed" and "HTTP 400" in empty[2]
