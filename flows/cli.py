"""`batchflows` command line: run a workload with a progress bar, or the demo."""
from __future__ import annotations

import argparse
import atexit
import gc
import importlib
import os
import sys
from dataclasses import dataclass
from typing import Callable

from tasks.engine.params_cli import Option, add_flow_options, flow_arguments


@dataclass(frozen=True)
class Command:
    """A workload's subcommand: its flow (imported only when that command runs) and what it prints."""

    flow: str  # module:function
    help: str
    report: Callable[[dict], None] = lambda figures: None

    def load(self):
        module, name = self.flow.split(":")
        return getattr(importlib.import_module(module), name)


def _report_emails(figures: dict) -> None:
    research = figures["research"]
    print(f"research: {research['keys']:,} companies, {research['cache_hits']:,} from the cache, "
          f"{research['looked_up'] + research['lookups_failed']:,} searched")
    _print_cost(figures)


def _print_cost(figures: dict) -> None:
    """Tokens and $ of an LLM run, with the projection to the whole input after a --limit run."""
    if "cost_usd" in figures:
        projected = f"; projected for all {figures['input_rows']:,} rows: ${figures['projected_cost_usd']:,.2f}" \
            if "projected_cost_usd" in figures else ""
        print(f"LLM: {figures['input_tokens']:,} tokens in, {figures['output_tokens']:,} out, "
              f"${figures['cost_usd']:,.4f}{projected}")


def _report_prescriptions(figures: dict) -> None:
    _print_cost(figures)
    print(f"failed files: {figures['failed_files']} (run them again with --files)")


def _prescriptions_failed(args) -> dict:
    from flows.prescription_extraction import failed_files

    target = failed_files(os.path.abspath(args.output), args.to and os.path.abspath(args.to), args.include_partial)
    print(f"{target}: {sum(1 for _ in open(target, encoding='utf-8')) - 1:,} files")
    return {}


def _report_books(figures: dict) -> None:
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in figures["reasons"].items()) or "none"
    messages = ", ".join(f"{status} {count:,}" for status, count in figures["messages"].items()) or "none"
    print(f"{figures['accepted']:,} accepted, {figures['rejected']:,} rejected ({reasons}) of "
          f"{figures['requests']:,} requests; messages: {messages} -> {figures['output_dir']}")


def _report_files(figures: dict) -> None:
    memory = ", ".join(f"{worker} {mib['worker']:,.0f} MiB, parsers {mib['children']:,.0f} MiB"
                       for worker, mib in figures["peak_rss_mb"].items())
    print(f"{figures['requests']:,} files parsed in this run (unchanged files are known from earlier runs); "
          f"peak RSS: {memory or '-'}")


COMMANDS = {
    "card-recommendations": Command("flows.card_recommendations:card_recommendations",
                                    "one recommendation API call per user"),
    "personalised-emails": Command("flows.personalised_emails:personalised_emails",
                                   "research + one LLM-written line per lead", _report_emails),
    "book-requests": Command("flows.book_requests:book_requests",
                             "phones, addresses, duplicates, then one message per request", _report_books),
    "prescriptions": Command("flows.prescription_extraction:prescription_extraction",
                             "a Drive folder of prescription PDFs -> fields read by Claude", _report_prescriptions),
    "file-metadata": Command("flows.file_metadata:file_metadata",
                             "format, size, dimensions, duration, author ... of every file in a folder", _report_files),
}


def _run_workload(command: Command, fn: Callable, options: list[Option]) -> Callable:
    def run(args) -> dict:
        figures = command.load()(**flow_arguments(fn, args, options))
        command.report(figures)
        return figures
    return run


def _demo(args) -> dict:
    """A sample run of one workload on generated input (tasks/samples/demo.py); prints where everything is."""
    from tasks.samples.demo import Workload, run_demo

    workload = Workload(args.workload)  # named as its command
    demo = run_demo(workload, COMMANDS[workload.value].load(), args.dir, args.rows, args.runner, args.workers)
    print("\n".join(demo.lines()))
    return demo.figures


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="batchflows", description="Batch jobs against APIs on Prefect.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks (and Prefect's own) on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    chosen = next((word for word in argv if not word.startswith("-")), None)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        if name == chosen:  # only the flow that runs is imported (and its options built)
            fn = command.load().fn
            sub.set_defaults(run=_run_workload(command, fn, add_flow_options(sub, fn)))

    failed = commands.add_parser("prescriptions-failed", help="export the failed files of a prescriptions output")
    failed.add_argument("output", help="a prescriptions output (.jsonl)")
    failed.add_argument("-o", "--to", help="CSV to write (default: next to the output, <stem>.failed.csv)")
    failed.add_argument("--include-partial", action="store_true", help="also the partial ones")
    failed.set_defaults(run=_prescriptions_failed)

    from tasks.samples.demo import SIZES, Workload

    demo = commands.add_parser("demo", help="a sample run of a workload: generated input, the local emulators, "
                               "the output paths printed")
    demo.add_argument("workload", nargs="?", choices=[w.value for w in Workload], default=Workload.CARDS.value,
                      help="the workload to run (default %(default)s)")
    demo.add_argument("--rows", type=int, help="how much input to generate (default " + ", ".join(
        f"{size.default:,} {size.unit} for {workload}" for workload, size in SIZES.items()) + ")")
    demo.add_argument("--dir", help="where to write the inputs, outputs and work dir (default: a new temp dir)")
    demo.add_argument("--runner", default="thread", help="thread (default), dask, or tcp://host:port of a Dask scheduler")
    demo.add_argument("--workers", type=int, help="chunks run at once (threads or Dask processes)")
    demo.set_defaults(run=_demo)

    server = commands.add_parser("server", help="status of the Prefect server the runs share (when PREFECT_API_URL "
                                 "is not set), or stop it")
    server.add_argument("action", choices=("status", "stop"))

    args = parser.parse_args(argv)
    if args.command == "server":
        from tasks.engine.server import server_command

        return server_command(args.action)
    from tasks.engine.interrupt import interruptible

    atexit.register(gc.freeze)  # runs last: the interpreter's teardown then skips a 0.4 s collection of Prefect's objects
    with interruptible() as interruption:  # Ctrl-C, SIGTERM: one line; the run is marked Crashed and resumes
        try:
            return _run(args)
        except BaseException:  # KeyboardInterrupt, or Prefect's TerminationSignal during a flow run
            if interruption.signum is None:
                raise
            return interruption.exit_code


def _run(args) -> int:
    from tasks.engine.console import hide_tracebacks
    from tasks.engine.outcomes import FatalError, MachineryError
    from tasks.engine.progress import enable_terminal_bar
    from tasks.engine.server import prefect_backend
    from tasks.engine.tables import InputError

    if sys.stderr.isatty():
        enable_terminal_bar()
    if not args.debug:
        hide_tracebacks()
    try:
        with prefect_backend():  # PREFECT_API_URL, else the shared server of PREFECT_HOME (tasks/engine/server.py)
            figures = args.run(args)
    except (FatalError, MachineryError, InputError, ValueError, FileNotFoundError, RuntimeError) as error:
        if args.debug:
            raise
        print(f"batchflows: error: {error}", file=sys.stderr)
        return 1
    if "statuses" in figures:  # every status as the output says it (success, unsupported, timeout ...)
        counts = ", ".join(f"{n:,} {status}" for status, n in figures["statuses"].items())
        print(f"{counts} (reasons in the 'error' column) of {figures['rows']:,} rows in {figures['wall_seconds']} s "
              f"-> {figures['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
