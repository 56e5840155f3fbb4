"""Prescription fields from a PDF with Claude: the PDF as a document block, the fields as a JSON
schema enforced through a forced tool call, the answer validated with pydantic.

`success`: schema-valid with every required field; `partial`: schema-valid but required fields are
missing or illegible; `failed`: no valid answer (the reason says why). Shared by the realtime path
(one Messages call per file) and the Message Batches path (same request parameters).
"""
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

TOOL_NAME = "record_prescription"
REQUIRED = ("patient_name", "date", "prescriber", "medications")
SYSTEM = (
    "You extract data from scanned medical prescriptions. Read the document and call the tool "
    "record_prescription once with what it says. Copy names, drugs and strengths exactly as written. "
    "Write the date as YYYY-MM-DD. Use null for anything missing or illegible; never guess. One entry "
    "in medications per drug line. Put anything else written by the prescriber in notes."
)


class Medication(BaseModel):
    drug: str | None = None
    strength: str | None = None
    dose: str | None = None
    frequency: str | None = None
    duration: str | None = None


class Prescription(BaseModel):
    patient_name: str | None = None
    age: int | None = None
    sex: Literal["male", "female", "other"] | None = None
    date: str | None = None
    prescriber: str | None = None
    clinic: str | None = None
    medications: list[Medication] | None = None
    diagnosis: str | None = None
    notes: str | None = None


TOOL = {"name": TOOL_NAME, "description": "Record the fields read from one prescription.",
        "input_schema": Prescription.model_json_schema()}


def request_params(pdf: Path, max_tokens: int = 1500) -> dict[str, Any]:
    """The Messages parameters for one file (without model and system)."""
    data = base64.standard_b64encode(pdf.read_bytes()).decode()
    return {"max_tokens": max_tokens, "tools": [TOOL], "tool_choice": {"type": "tool", "name": TOOL_NAME},
            "messages": [{"role": "user", "content": [
                {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": data}},
                {"type": "text", "text": "Extract this prescription."}]}]}


def estimate_tokens(pdf: Path, max_tokens: int = 1500) -> int:
    """What a call counts against a tokens/min limit: ~2 000 tokens a page (text + page image)."""
    from pypdf import PdfReader

    try:
        pages = len(PdfReader(pdf).pages)
    except Exception:  # unreadable: the API will say so; count it as one page
        pages = 1
    return 2000 * max(1, pages) + 500 + max_tokens


def interpret(message) -> tuple[str, dict[str, Any] | None, str]:
    """(status, fields, error) from a Messages answer (an SDK object or its dict)."""
    content = message["content"] if isinstance(message, dict) else [block.model_dump() for block in message.content]
    stop = message["stop_reason"] if isinstance(message, dict) else message.stop_reason
    call = next((block for block in content if block.get("type") == "tool_use"), None)
    if call is None:
        return "failed", None, f"no structured answer (stop_reason {stop})"
    try:
        fields = Prescription.model_validate(call.get("input") or {}).model_dump()
    except ValidationError as error:
        return "failed", None, f"answer does not fit the schema: {error.errors()[0]['loc']}: {error.errors()[0]['msg']}"[:300]
    missing = [name for name in REQUIRED if not fields.get(name)]
    if fields["medications"] and not all(m.get("drug") for m in fields["medications"]):
        missing.append("medications.drug")
    if stop == "max_tokens":
        return "partial", fields, "answer cut short at max_tokens"
    return ("partial", fields, f"missing or illegible: {', '.join(missing)}") if missing else ("success", fields, "")
