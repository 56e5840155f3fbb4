"""`batchflows` command line: run a workload with a progress bar, or the demo."""
from __future__ import annotations

import argparse
import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path


def _absolute(value: str | None) -> str | None:
    return value and str(Path(value).resolve())


def _given(args, *names: str) -> dict:
    """The named options the user gave (the flow's defaults apply to the others)."""
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _card_recommendations(args) -> dict:
    from flows.card_recommendations import card_recommendations

    return card_recommendations(
        input_path=_absolute(args.input), output_path=_absolute(args.output),
        config_path=_absolute(args.config), limit=args.limit, runner=args.runner,
        concurrency=args.concurrency, chunk_size=args.chunk_size, workers=args.workers,
    )


def _personalised_emails(args) -> dict:
    from flows.personalised_emails import personalised_emails

    options = _given(args, "provider", "model", "write", "limit", "runner", "workers", "concurrency", "chunk_size",
                     "llm_base_url", "llm_key_env", "requests_per_minute", "tokens_per_minute", "max_tokens",
                     "temperature", "search_base_url", "search_key_env", "searches_per_second", "leads_per_request")
    figures = personalised_emails(_absolute(args.input), _absolute(args.output),
                                  prompt_file=_absolute(args.prompt_file), system_file=_absolute(args.system_file),
                                  prices_file=_absolute(args.prices), **options)
    research = figures["research"]
    print(f"research: {research['keys']:,} companies, {research['cache_hits']:,} from the cache, "
          f"{research['looked_up'] + research['lookups_failed']:,} searched")
    _print_cost(figures)
    return figures


def _print_cost(figures: dict) -> None:
    """Tokens and $ of an LLM run, with the projection to the whole input after a --limit run."""
    if "cost_usd" in figures:
        projected = f"; projected for all {figures['input_rows']:,} rows: ${figures['projected_cost_usd']:,.2f}" \
            if "projected_cost_usd" in figures else ""
        print(f"LLM: {figures['input_tokens']:,} tokens in, {figures['output_tokens']:,} out, "
              f"${figures['cost_usd']:,.4f}{projected}")


def _prescriptions(args) -> dict:
    from flows.prescription_extraction import prescription_extraction

    options = _given(args, "mode", "limit", "model", "recursive", "runner", "workers", "concurrency", "chunk_size",
                     "max_tokens", "drive_endpoint", "drive_credentials", "drive_requests_per_minute",
                     "anthropic_base_url", "anthropic_key_env", "requests_per_minute", "tokens_per_minute",
                     "poll_seconds")
    figures = prescription_extraction(args.folder_id, _absolute(args.output), files=_absolute(args.files),
                                      prices_file=_absolute(args.prices), **options)
    _print_cost(figures)
    print(f"failed files: {figures['failed_files']} (run them again with --files)")
    return figures


def _prescriptions_failed(args) -> dict:
    from flows.prescription_extraction import failed_files

    target = failed_files(_absolute(args.output), _absolute(args.to), args.include_partial)
    print(f"{target}: {sum(1 for _ in open(target, encoding='utf-8')) - 1:,} files")
    return {}


def _book_requests(args) -> dict:
    from flows.book_requests import book_requests

    options = _given(args, "default_region", "dedupe_threshold", "runner", "workers", "concurrency", "chunk_size",
                     "channel", "geocoding_base_url", "messaging_base_url")
    figures = book_requests(_absolute(args.input), _absolute(args.history), _absolute(args.output), send=args.send,
                            template_file=_absolute(args.template_file), dedupe_model=_absolute(args.dedupe_model),
                            **options)
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in figures["reasons"].items()) or "none"
    messages = ", ".join(f"{status} {count:,}" for status, count in figures["messages"].items()) or "none"
    print(f"{figures['accepted']:,} accepted, {figures['rejected']:,} rejected ({reasons}) of "
          f"{figures['requests']:,} requests; messages: {messages} -> {figures['output_dir']}")
    return figures


def _file_metadata(args) -> dict:
    from flows.file_metadata import file_metadata

    options = _given(args, "include", "exclude", "timeout", "memory_mb", "runner", "workers", "concurrency", "chunk_size")
    figures = file_metadata(_absolute(args.root), _absolute(args.output), **options)
    memory = ", ".join(f"{worker} {mib['worker']:,.0f} MiB, parsers {mib['children']:,.0f} MiB"
                       for worker, mib in figures["peak_rss_mb"].items())
    print(f"{figures['requests']:,} files parsed in this run (unchanged files are known from earlier runs); "
          f"peak RSS: {memory or '-'}")
    return figures


def _demo(args) -> dict:
    """A sample run of one workload on generated input (tasks/samples/demo.py); prints where everything is."""
    from importlib import import_module

    from tasks.samples.demo import Workload, run_demo

    workload = Workload(args.workload)
    module = {Workload.CARDS: "card_recommendations", Workload.EMAILS: "personalised_emails",
              Workload.BOOKS: "book_requests", Workload.PRESCRIPTIONS: "prescription_extraction",
              Workload.FILES: "file_metadata"}[workload]  # flows/<module>.py defines the flow <module>
    demo = run_demo(workload, getattr(import_module(f"flows.{module}"), module), args.dir, args.rows,
                    args.runner, args.workers)
    print("\n".join(demo.lines()))
    return demo.figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="batchflows", description="Batch jobs against APIs on Prefect.")
    commands = parser.add_subparsers(dest="command", required=True)

    cards = commands.add_parser("card-recommendations", help="one recommendation API call per user")
    cards.add_argument("input", help="users file: .csv, .xlsx, .parquet or .jsonl with a user_id column")
    cards.add_argument("-o", "--output", required=True, help="output file: .csv, .xlsx, .parquet or .jsonl")
    cards.add_argument("--config", help="JSON or YAML config (api.base_url, api.api_key_env, processing...)")
    cards.set_defaults(run=_card_recommendations)

    emails = commands.add_parser("personalised-emails", help="research + one LLM-written line per lead")
    emails.add_argument("input", help="leads file with email, first_name, company and domain or website columns")
    emails.add_argument("-o", "--output", required=True, help="output file: .csv, .xlsx, .parquet or .jsonl")
    emails.add_argument("--provider", choices=("anthropic", "openai"), help="anthropic (default) or an "
                        "OpenAI-compatible API (Groq, OpenAI, vLLM) given by --llm-base-url")
    emails.add_argument("--model", help="model name (default: claude-haiku-5-5 / llama-3.3-70b-versatile)")
    emails.add_argument("--prompt-file", help="user prompt template with {column} placeholders "
                        "(plus {research_summary} and {domain})")
    emails.add_argument("--system-file", help="system prompt template")
    emails.add_argument("--write", choices=("line", "body"), help="an opening line (default) or an email body")
    emails.add_argument("--llm-base-url", help="LLM endpoint (default: the provider's)")
    emails.add_argument("--llm-key-env", help="env var with the LLM key (ANTHROPIC_API_KEY / OPENAI_API_KEY)")
    emails.add_argument("--requests-per-minute", type=float, help="LLM request limit (default 50)")
    emails.add_argument("--tokens-per-minute", type=float, help="LLM token limit (prompt + max_tokens per call)")
    emails.add_argument("--max-tokens", type=int, help="per completion (default 120 for a line, 400 for a body)")
    emails.add_argument("--temperature", type=float, help="default: the model's own")
    emails.add_argument("--leads-per-request", type=int, help="leads answered by one LLM call (default 1); "
                        "give --concurrency at least this times the calls you want in flight")
    emails.add_argument("--prices", help="JSON/YAML price table {model: {input, output}} in USD per million tokens")
    emails.add_argument("--search-base-url", help="Serper endpoint (default https://google.serper.dev)")
    emails.add_argument("--search-key-env", help="env var with the Serper key (default SERPER_API_KEY)")
    emails.add_argument("--searches-per-second", type=float, help="Serper request limit (default 5)")
    emails.set_defaults(run=_personalised_emails)

    books = commands.add_parser("book-requests", help="phones, addresses, duplicates, then one message per request")
    books.add_argument("input", help="request list (.csv/.xlsx) with name, phone, address (book, date, request_id)")
    books.add_argument("--history", required=True, help="past requests with request_id, name, address (phone)")
    books.add_argument("-o", "--output", required=True, help="output folder for accepted/rejected/duplicates/messages.csv")
    books.add_argument("--default-region", help="region for numbers without a country code (default US)")
    sending = books.add_mutually_exclusive_group()
    sending.add_argument("--send", action="store_true", help="send the confirmation messages")
    sending.add_argument("--dry-run", dest="send", action="store_false", help="render them only (the default)")
    books.add_argument("--dedupe-threshold", type=float, help="match probability 0-1 for a duplicate (default 0.9)")
    books.add_argument("--dedupe-model", help="duplicate model (Splink JSON) to reuse; trained and written there "
                                              "when absent (default OUTDIR/dedupe_model.json)")
    books.add_argument("--channel", choices=("sms", "email"), help="message channel (default sms)")
    books.add_argument("--template-file", help="message template with {name}, {book}, {formatted_address} ...")
    books.add_argument("--geocoding-base-url", help="default https://maps.googleapis.com (key: GOOGLE_MAPS_API_KEY)")
    books.add_argument("--messaging-base-url", help="the SMS/email provider (key: MESSAGING_API_KEY)")
    books.set_defaults(run=_book_requests)

    rx = commands.add_parser("prescriptions", help="a Drive folder of prescription PDFs -> fields read by Claude")
    rx.add_argument("--folder-id", required=True, help="the Drive folder's id")
    rx.add_argument("-o", "--output", required=True, help="JSON lines output; failed files also go to OUT.failed.csv")
    rx.add_argument("--mode", choices=("realtime", "batch"), help="a Messages call per file (default) or the "
                    "Message Batches API (half the price, results within 24 h)")
    rx.add_argument("--model", help="Claude model (default claude-sonnet-5)")
    rx.add_argument("--recursive", action="store_true", default=None, help="also the PDFs of sub-folders")
    rx.add_argument("--files", help="CSV with an id column (e.g. OUT.failed.csv): only these files")
    rx.add_argument("--max-tokens", type=int, help="per answer (default 1500)")
    rx.add_argument("--drive-endpoint", help="Drive API endpoint (default Google's; an emulator's .../drive/v3/)")
    rx.add_argument("--drive-credentials", help="service-account JSON file, 'default' (application-default "
                    "credentials) or 'anonymous' (default with --drive-endpoint)")
    rx.add_argument("--drive-requests-per-minute", type=float,
                    help="Drive request limit (default 12,000: Drive's per-user quota)")
    rx.add_argument("--anthropic-base-url", help="default https://api.anthropic.com")
    rx.add_argument("--anthropic-key-env", help="env var with the key (default ANTHROPIC_API_KEY)")
    rx.add_argument("--requests-per-minute", type=float, help="Claude request limit (default 50)")
    rx.add_argument("--tokens-per-minute", type=float, help="Claude input+output token limit")
    rx.add_argument("--prices", help="JSON/YAML price table {model: {input, output}} in USD per million tokens")
    rx.add_argument("--poll-seconds", type=float,
                    help="batch mode: how often a batch is polled (default 60, as Anthropic's guide)")
    rx.set_defaults(run=_prescriptions)

    failed = commands.add_parser("prescriptions-failed", help="export the failed files of a prescriptions output")
    failed.add_argument("output", help="a prescriptions output (.jsonl)")
    failed.add_argument("-o", "--to", help="CSV to write (default OUT.failed.csv)")
    failed.add_argument("--include-partial", action="store_true", help="also the partial ones")
    failed.set_defaults(run=_prescriptions_failed, runner="thread")

    meta = commands.add_parser("file-metadata", help="format, size, dimensions, duration, author ... of every file in a folder")
    meta.add_argument("root", help="folder to walk (or one file)")
    meta.add_argument("-o", "--output", required=True, help="output file: .parquet, .csv, .jsonl or .xlsx")
    meta.add_argument("--include", action="append", help="only files matching this pattern (e.g. '*.jpg'; "
                      "case-insensitive; on the path below ROOT if it has a /); repeatable")
    meta.add_argument("--exclude", action="append", help="skip files and folders matching this pattern; repeatable")
    meta.add_argument("--timeout", type=float, help="seconds per file before its parser is killed (default 10)")
    meta.add_argument("--memory-mb", type=int, help="address-space cap of a parser process (default 1024)")
    meta.add_argument("--runner", default="thread", help="thread (default), dask, or tcp://host:port of a Dask scheduler")
    meta.add_argument("--workers", type=int, help="chunks run at once (threads or Dask processes)")
    meta.add_argument("--concurrency", type=int, help="parser processes for the whole run (default: CPU count; "
                      "at least one per chunk running at once)")
    meta.add_argument("--chunk-size", type=int, help="files per Prefect task (default 1000)")
    meta.set_defaults(run=_file_metadata)

    from tasks.samples.demo import SIZES, Workload

    demo = commands.add_parser("demo", help="a sample run of a workload: generated input, the local emulators, "
                               "the output paths printed")
    demo.add_argument("workload", nargs="?", choices=[w.value for w in Workload], default=Workload.CARDS.value,
                      help="the workload to run (default %(default)s)")
    demo.add_argument("--rows", type=int, help="how much input to generate (default " + ", ".join(
        f"{size.default:,} {size.unit} for {workload}" for workload, size in SIZES.items()) + ")")
    demo.add_argument("--dir", help="where to write the inputs, outputs and work dir (default: a new temp dir)")
    demo.set_defaults(run=_demo, limit=None, concurrency=None, chunk_size=None)

    for sub in (cards, emails, books, rx, demo):
        sub.add_argument("--runner", default="thread", help="thread (default), dask, or tcp://host:port of a Dask scheduler")
        sub.add_argument("--workers", type=int, help="chunks run at once (threads or Dask processes)")
    for sub in (cards, emails, books, rx):
        sub.add_argument("--concurrency", type=int, help="requests in flight for the whole run")
        sub.add_argument("--chunk-size", type=int, help="rows per Prefect task")
    for sub in (cards, emails, rx):
        sub.add_argument("--limit", type=int, help="process only the first N rows (a test-size run)")

    args = parser.parse_args(argv)
    # SIGTERM (a cancelled deployment run, a CI timeout) unwinds like Ctrl+C: emulators and a
    # Prefect server started here are stopped, nothing is left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    from tasks.engine.outcomes import FatalError, MachineryError
    from tasks.engine.progress import enable_terminal_bar
    from tasks.engine.runners import is_dask, local_prefect_server
    from tasks.engine.tables import InputError

    if sys.stderr.isatty():
        enable_terminal_bar()
    needs_server = is_dask(args.runner) and not os.environ.get("PREFECT_API_URL")
    try:
        with local_prefect_server() if needs_server else nullcontext():
            figures = args.run(args)
    except (FatalError, MachineryError, InputError, ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"batchflows: error: {error}", file=sys.stderr)
        return 1
    if "failed" in figures:
        partial = "".join(f"{n:,} {status}, " for status, n in figures.get("statuses", {}).items()
                          if status not in ("ok", "failed"))  # partial, and a workload's own (unsupported ...)
        print(f"{figures['ok']:,} ok, {partial}{figures['failed']:,} failed (reasons in the 'error' column) of "
              f"{figures['rows']:,} rows in {figures['wall_seconds']} s -> {figures['output']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
