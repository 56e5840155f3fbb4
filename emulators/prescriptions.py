"""Scanned-prescription PDFs: a sample generator with ground truth, and the emulated model's reader.

`write_prescription_pdf(path, seed)` writes a one-page prescription with a text layer (layouts, date
and age/sex styles vary with the seed) and returns the fields a perfect extraction gives;
`write_image_only_pdf` is a scan without a text layer, `write_corrupt_pdf` is not a readable PDF and
`write_large_pdf` makes a big (many pages and/or a high-resolution scan) one quickly. `read_pdf` and
`extract` are the deterministic "model": the PDF's text layer, then the fields read from it.
"""
from __future__ import annotations

import io
import logging
import math
import random
import re
import zlib
from datetime import date, datetime, timedelta
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import PdfReadError

logging.getLogger("pypdf").setLevel(logging.ERROR)  # a broken PDF is answered with a 400, not logged

FIELDS = ("patient_name", "patient_age", "patient_sex", "date", "prescriber", "clinic", "diagnosis",
          "medications", "notes")
MED_FIELDS = ("drug", "strength", "dose", "frequency", "duration")
ALIASES = {  # other names a tool's schema may give the fields (normalised: lower case, no separators)
    "name": ("patient_name", "drug"), "patient": ("patient_name",), "age": ("patient_age",),
    "sex": ("patient_sex",), "gender": ("patient_sex",), "prescriptiondate": ("date",), "dateissued": ("date",),
    "doctor": ("prescriber",), "physician": ("prescriber",), "prescribedby": ("prescriber",),
    "doctorname": ("prescriber",), "clinicname": ("clinic",), "facility": ("clinic",), "hospital": ("clinic",),
    "dx": ("diagnosis",), "medicines": ("medications",), "drugs": ("medications",), "items": ("medications",),
    "medication": ("drug",), "medicine": ("drug",), "drugname": ("drug",), "dosage": ("dose",),
    "instructions": ("notes",), "advice": ("notes",), "remarks": ("notes",),
}
ILLEGIBLE = "Illegible: the document has no readable text (a scan without a text layer)."
FIRST = ["Maria", "James", "Aisha", "Wei", "Olga", "Rahul", "Fatima", "Lucas", "Grace", "Kenji", "Amara", "Tomas"]
LAST = ["Lopez", "Okafor", "Novak", "Chen", "Haddad", "Smith", "Kowalski", "Patel", "Moreau", "Silva", "Berg"]
DOCTORS = ["Dr. Anika Sharma", "Dr. Peter Lindqvist", "Dr. Helen O'Brien", "Dr. Samuel Adeyemi", "Dr. Mei Tanaka"]
CLINICS = ["Riverside Family Clinic", "Northgate Medical Centre", "St. Anne's Health Practice", "Harbour View Surgery"]
CONDITIONS = {
    "Type 2 diabetes mellitus": [("Metformin", "500 mg", "1 tablet", "twice daily", "90 days"),
                                 ("Empagliflozin", "10 mg", "1 tablet", "once daily", "90 days")],
    "Essential hypertension": [("Amlodipine", "5 mg", "1 tablet", "once daily", "30 days"),
                               ("Losartan", "50 mg", "1 tablet", "once daily", "30 days")],
    "Community-acquired pneumonia": [("Amoxicillin", "875 mg", "1 tablet", "every 12 hours", "7 days"),
                                     ("Azithromycin", "500 mg", "1 tablet", "once daily", "3 days")],
    "Asthma": [("Salbutamol inhaler", "100 mcg", "2 puffs", "as needed", "30 days"),
               ("Budesonide inhaler", "200 mcg", "1 puff", "twice daily", "30 days")],
    "Gastro-oesophageal reflux disease": [("Omeprazole", "20 mg", "1 capsule", "once daily before breakfast",
                                           "28 days")],
    "Urinary tract infection": [("Nitrofurantoin", "100 mg", "1 capsule", "twice daily", "5 days")],
    "Hypercholesterolaemia": [("Atorvastatin", "20 mg", "1 tablet", "at night", "90 days")],
}
PAIN = ("Paracetamol", "500 mg", "2 tablets", "every 6 hours as needed", "5 days")
NOTES = ["Review in 2 weeks.", "Take with food.", "Avoid alcohol while on treatment.",
         "Recheck blood pressure in 1 month."]
DATE_STYLES = ["%Y-%m-%d", "%d/%m/%Y", "%d %b %Y", "%B %d, %Y"]
A4 = (595, 842)


def write_prescription_pdf(path: str | Path, seed: int) -> dict:
    """A one-page prescription with a text layer; returns the ground-truth fields."""
    truth, lines = _sample(seed)
    Path(path).write_bytes(_pdf([_text_page(lines)]))
    return truth


def write_image_only_pdf(path: str | Path, seed: int) -> None:
    """A scanned page: one grey image and no text layer, as a scanner without OCR writes it."""
    noise = random.Random(seed).randbytes(300 * 420)
    pixels = bytes(255 - (b & 0x3F) for b in noise)  # paper-white with grain
    Path(path).write_bytes(_pdf([_image_page(300, 420, zlib.compress(pixels), b"/Filter /FlateDecode ")]))


def write_corrupt_pdf(path: str | Path, seed: int = 0) -> None:
    """A PDF header followed by garbage: what a broken upload or a truncated download looks like."""
    Path(path).write_bytes(b"%PDF-1.7\n" + random.Random(seed).randbytes(4096))


def write_large_pdf(path: str | Path, megabytes: float = 50, pages: int = 1, seed: int = 0) -> dict:
    """The prescription of `seed`, `pages - 1` continuation sheets and a high-resolution scan of about
    `megabytes` (incompressible, so the file is that big); returns the ground truth. No encoding: fast."""
    truth, lines = _sample(seed)
    sheets = [_text_page([f"Continuation sheet {n} of {pages}"]) for n in range(2, pages + 1)]
    side = math.ceil((megabytes * 1024 * 1024) ** 0.5)
    scan = [_image_page(side, side, random.Random(seed).randbytes(side * side))] if side else []
    Path(path).write_bytes(_pdf([_text_page(lines)] + sheets + scan))
    return truth


def read_pdf(data: bytes) -> list[tuple[str, float, float]]:
    """(text, width, height in points) of every page; ValueError when the bytes are not a readable PDF."""
    if not data.startswith(b"%PDF-"):
        raise ValueError("not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        return [((page.extract_text() or "").strip(), float(page.mediabox.width), float(page.mediabox.height))
                for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(str(error)) from None


def extract(text: str) -> dict:
    """The prescription fields read from a text layer; what cannot be read is None."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return {**dict.fromkeys(FIELDS), "notes": ILLEGIBLE}
    found = {"clinic": lines[0] if not re.search(r"\d|:", lines[0]) else None}
    found["patient_name"] = _after(r"(?:Patient(?: name)?|Name)", text)
    age = re.search(r"Age\s*/\s*Sex:\s*(\d+)\s*/\s*([MF])|Age:\s*(\d+)\s+Sex:\s*([MF])|\b(\d+) y, ([MF])\b", text)
    found["patient_age"] = int(next(g for g in age.groups()[::2] if g)) if age else None
    found["patient_sex"] = next(g for g in age.groups()[1::2] if g) if age else None
    found["date"] = _iso_date(_after(r"Date", text))
    doctor = re.search(r"(Dr\. [A-Z][\w'.-]*(?: [A-Z][\w'.-]*)+)", text)
    found["prescriber"] = doctor.group(1) if doctor else None
    found["diagnosis"] = _after(r"(?:Diagnosis|Dx)", text)
    found["notes"] = _after(r"(?:Notes|Advice)", text)
    found["medications"] = [_medication(line) for line in _rx_lines(lines)] or None
    return {name: found.get(name) for name in FIELDS}


def _after(label: str, text: str) -> str | None:
    match = re.search(rf"^{label}:[ \t]*(.+?)[ \t]*$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def _iso_date(value: str | None) -> str | None:
    for style in DATE_STYLES:
        try:
            return datetime.strptime(value or "", style).date().isoformat()
        except ValueError:
            continue
    return None


def _rx_lines(lines: list[str]) -> list[str]:
    start = next((i + 1 for i, line in enumerate(lines) if line.upper() in ("RX", "R/")), len(lines))
    block = []
    for line in lines[start:]:
        if re.match(r"(?:Notes|Advice|Prescriber|Signature)\b|Dr\. ", line):
            break
        if not line.startswith("Drug |"):
            block.append(line)
    return block


def _medication(line: str) -> dict:
    parts = re.split(r" \| | - ", re.sub(r"^\d+[.)]\s*", "", line))
    if len(parts) == 4:  # "Drug 500 mg - dose - frequency - duration"
        drug = re.match(r"(.+?) (\d[\d.]* ?(?:mg|mcg|g|ml|IU|%))$", parts[0])
        parts = list(drug.groups()) + parts[1:] if drug else [parts[0], None] + parts[1:]
    return dict(zip(MED_FIELDS, parts + [None] * (5 - len(parts))))


def _sample(seed: int) -> tuple[dict, list[str]]:
    """The ground truth of one prescription and its printed lines (layout styles drawn from `seed`)."""
    rng = random.Random(seed)
    diagnosis = rng.choice(sorted(CONDITIONS))
    meds = rng.sample(CONDITIONS[diagnosis], rng.randint(1, len(CONDITIONS[diagnosis])))
    meds += [PAIN] if rng.random() < 0.3 else []
    truth = {"patient_name": f"{rng.choice(FIRST)} {rng.choice(LAST)}", "patient_age": rng.randint(4, 92),
             "patient_sex": rng.choice("FM"), "date": (date(2026, 1, 1) + timedelta(rng.randrange(365))).isoformat(),
             "prescriber": rng.choice(DOCTORS), "clinic": rng.choice(CLINICS),
             "diagnosis": diagnosis if rng.random() < 0.85 else None,
             "medications": [dict(zip(MED_FIELDS, med)) for med in meds],
             "notes": rng.choice(NOTES) if rng.random() < 0.7 else None}
    when = datetime.fromisoformat(truth["date"]).strftime(rng.choice(DATE_STYLES))
    age, sex = truth["patient_age"], truth["patient_sex"]
    lines = [truth["clinic"], f"{rng.randint(2, 180)} {rng.choice(['High Street', 'Mill Lane', 'Park Road'])}"
             f" - Tel 0{rng.randint(1000, 9999)} {rng.randint(100000, 999999)}", "", "PRESCRIPTION", "",
             f"{rng.choice(['Patient', 'Patient name', 'Name'])}: {truth['patient_name']}",
             rng.choice([f"Age/Sex: {age}/{sex}", f"Age: {age}   Sex: {sex}", f"{age} y, {sex}"]), f"Date: {when}"]
    if diagnosis := truth["diagnosis"]:
        lines.append(f"{rng.choice(['Diagnosis', 'Dx'])}: {diagnosis}")
    table = rng.random() < 0.5
    lines += ["", "Rx"] + (["Drug | Strength | Dose | Frequency | Duration"] if table else [])
    for n, med in enumerate(truth["medications"], 1):
        lines.append(" | ".join(med.values()) if table else
                     f"{n}. {med['drug']} {med['strength']} - {med['dose']} - {med['frequency']} - {med['duration']}")
    if truth["notes"]:
        lines += ["", f"{rng.choice(['Notes', 'Advice'])}: {truth['notes']}"]
    lines += ["", "", f"{truth['prescriber']}, MD   Reg. No. {rng.randint(10000, 99999)}", "Signature: ________"]
    return truth, lines


def _text_page(lines: list[str]) -> tuple[bytes, bytes | None]:
    escape = str.maketrans({"\\": "\\\\", "(": "\\(", ")": "\\)"})
    shows = b"".join(b"(%s) Tj T*\n" % line.translate(escape).encode("latin-1") for line in lines)
    return b"BT /F1 11 Tf 14 TL 56 780 Td\n" + shows + b"ET", None


def _image_page(width: int, height: int, pixels: bytes, filters: bytes = b"") -> tuple[bytes, bytes]:
    image = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
             b"/BitsPerComponent 8 %s/Length %d >>\nstream\n" % (width, height, filters, len(pixels)))
    return b"q %d 0 0 %d 0 0 cm /Im0 Do Q" % A4, image + pixels + b"\nendstream"


def _pdf(pages: list[tuple[bytes, bytes | None]]) -> bytes:
    """A minimal valid PDF: catalog, page tree, Helvetica, one content stream (and image) per page."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"]
    kids = []
    for content, image in pages:
        number = len(objects) + 1
        xobject = b" /XObject << /Im0 %d 0 R >>" % (number + 2) if image else b""
        objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Contents %d 0 R "
                    b"/Resources << /Font << /F1 3 0 R >>%s >> >>" % (*A4, number + 1, xobject),
                    b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content)] + ([image] if image else [])
        kids.append(b"%d 0 R" % number)
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), len(kids))
    out, offsets = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
