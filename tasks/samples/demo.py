"""`batchflows demo [WORKLOAD]`: a sample run of one workload, end to end, in one directory.

The input is generated (with a few bad rows or files, to show how failures look); the API workloads run
as sample runs (`emulate=True`: local emulators started for the run, tasks/samples/emulated.py) and file
metadata, which calls no API, walks a generated tree of sample files. The directory holds the inputs,
the outputs and the work dir (journals, caches): deleting it removes everything the demo wrote. (A
sample run's emulators listen on a new port each time, and answers are journaled per API URL, so a
rerun sends every request again.)
"""
from __future__ import annotations

import enum
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

BAD_USERS = "u_bad_spend,lots,dining,700,Austin\n,120.5,fuel,650,Boston\nu00000003,10,fuel,700,Denver\n"
BAD_LEAD = "not-an-email,Ana,Acme Logistics 0,acmelogistics0.com,CEO\n"
CARD_CONFIG = {"api": {"timeout": 10}, "processing": {"concurrency": 100, "rate_limit_per_minute": 6000,
                                                       "chunk_size": 250}}


class Workload(enum.StrEnum):
    """The workloads, by their command name."""

    CARDS = "card-recommendations"
    EMAILS = "personalised-emails"
    BOOKS = "book-requests"
    PRESCRIPTIONS = "prescriptions"
    FILES = "file-metadata"


@dataclass(frozen=True)
class Size:
    """How much input a demo generates by default, and of what."""

    default: int
    unit: str


SIZES = {Workload.CARDS: Size(3000, "users"), Workload.EMAILS: Size(60, "leads"),
         Workload.BOOKS: Size(200, "requests"), Workload.PRESCRIPTIONS: Size(12, "PDFs"),
         Workload.FILES: Size(36, "files")}


@dataclass(frozen=True)
class Plan:
    """A demo's generated inputs, the outputs its flow writes and the flow's parameters."""

    inputs: dict[str, Path]
    outputs: dict[str, Path]
    params: dict[str, Any]


@dataclass(frozen=True)
class DemoRun:
    """A finished demo: where everything is, and the flow's figures."""

    workload: Workload
    directory: Path
    plan: Plan
    figures: dict[str, Any]

    @property
    def outputs(self) -> dict[str, Path]:
        """The flow's outputs, with the failed-files list a prescriptions run writes next to its output."""
        failed = self.figures.get("failed_files")
        return {**self.plan.outputs, **({"failed files": Path(failed)} if failed else {})}

    def lines(self) -> list[str]:
        """What to print: the inputs, the outputs, what the emulators received (and the book-requests
        tally, which the rows' summary line does not cover)."""
        from tasks.samples.emulated import describe_traffic

        lines = [f"demo {self.workload} in {self.directory} (work dir {self.directory / 'work'})"]
        lines += [f"  input  {name}: {path}" for name, path in self.plan.inputs.items()]
        lines += [f"  output {name}: {path}" for name, path in self.outputs.items()]
        if "emulator_traffic" in self.figures:
            lines.append(f"emulators received: {describe_traffic(self.figures['emulator_traffic'])}")
        if self.workload is Workload.BOOKS:
            messages = ", ".join(f"{status} {n:,}" for status, n in self.figures["messages"].items()) or "none"
            lines.append(f"{self.figures['accepted']:,} accepted, {self.figures['rejected']:,} rejected of "
                         f"{self.figures['requests']:,} requests; messages: {messages}")
        return lines


def run_demo(workload: Workload, flow: Callable[..., dict[str, Any]], directory: str | Path | None = None,
             size: int | None = None, runner: str = "thread", workers: int | None = None) -> DemoRun:
    """Generate `size` units of the workload's input in `directory` (default: a new temporary one) and
    run `flow` (the workload's Prefect flow) on it there."""
    from tasks.samples.emulated import set_environment

    size = SIZES[workload].default if size is None else size
    if size < 1:
        raise ValueError(f"a demo needs at least 1 of its {SIZES[workload].unit}, not {size}")
    folder = Path(directory or tempfile.mkdtemp(prefix=f"batchflows-demo-{workload}-")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    plan = PLANS[workload](folder, size)
    with set_environment({"BATCHFLOWS_WORK_DIR": str(folder / "work")}):
        figures = flow(**plan.params, runner=runner, workers=workers)
    return DemoRun(workload, folder, plan, figures)


def _cards(folder: Path, size: int) -> Plan:
    """Users (three bad rows at the end: a spend that is not a number, no user_id, a repeated user_id)
    and a config of the processing settings; the sample run points its API part at the emulator."""
    from tasks.samples.tables import write_users

    users, config, output = folder / "users.csv", folder / "config.json", folder / "recommendations.xlsx"
    write_users(users, size)
    with open(users, "a", encoding="utf-8") as handle:
        handle.write(BAD_USERS)
    config.write_text(json.dumps(CARD_CONFIG, indent=2))
    return Plan({"users": users, "config": config}, {"recommendations": output},
                {"input_path": str(users), "output_path": str(output), "config_path": str(config), "emulate": True})


def _emails(folder: Path, size: int) -> Plan:
    """Leads (one more at the end whose email is not an address), at the rates the emulators allow."""
    from tasks.samples.emulated import write_sample_leads

    leads, output = folder / "leads.csv", folder / "emails.csv"
    write_sample_leads(leads, size)
    with open(leads, "a", encoding="utf-8") as handle:
        handle.write(BAD_LEAD)
    return Plan({"leads": leads}, {"emails": output},
                {"input_path": str(leads), "output_path": str(output), "llm": {"requests_per_minute": 600},
                 "search": {"requests_per_minute": 1200}, "emulate": True})


def _books(folder: Path, size: int) -> Plan:
    """A history of 2,000 past requests and `size` new ones; the confirmations are sent (to the emulator)."""
    from tasks.samples.emulated import write_sample_books

    requests, history, output = folder / "requests.csv", folder / "history.csv", folder / "book-requests"
    write_sample_books(requests, history, size)
    return Plan({"requests": requests, "history": history},
                {**{name: output / f"{name}.csv" for name in ("accepted", "rejected", "duplicates", "messages")},
                 "duplicate model": output / "dedupe_model.json"},
                {"input_path": str(requests), "history_path": str(history), "output_dir": str(output),
                 "send": True, "emulate": True})


def _prescriptions(folder: Path, size: int) -> Plan:
    """A folder of PDFs served as a Drive folder: prescriptions, then (with room for them) a scan
    without a text layer and a file that is not a readable PDF."""
    from emulators.prescriptions import write_corrupt_pdf, write_image_only_pdf
    from tasks.samples.emulated import write_sample_pdfs

    pdfs, output = folder / "prescriptions", folder / "prescriptions.jsonl"
    extras = 2 if size > 2 else 0
    write_sample_pdfs(pdfs, size - extras)
    if extras:
        write_image_only_pdf(pdfs / "scan-without-text.pdf", 1)
        write_corrupt_pdf(pdfs / "corrupt.pdf")
    return Plan({"PDF folder": pdfs}, {"extractions": output},
                {"folder_id": str(pdfs), "output_path": str(output),
                 "anthropic": {"requests_per_minute": 600}, "emulate": True})


def _files(folder: Path, size: int) -> Plan:
    """A tree of sample files in the formats the flow reads, one of random bytes and one cut short."""
    from tasks.samples.files import write_sample_tree

    tree, output = folder / "files", folder / "file-metadata.csv"
    write_sample_tree(tree, size)
    return Plan({"tree": tree}, {"metadata": output}, {"root": str(tree), "output_path": str(output)})


PLANS: dict[Workload, Callable[[Path, int], Plan]] = {
    Workload.CARDS: _cards, Workload.EMAILS: _emails, Workload.BOOKS: _books,
    Workload.PRESCRIPTIONS: _prescriptions, Workload.FILES: _files,
}
