"""`batchflows` command line: run a workload with a progress bar, or the demo."""
from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import sys
import tempfile
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
    """Generate users, start the emulators, run card recommendations, print where the output is."""
    from emulators import Emulator
    from flows.card_recommendations import card_recommendations
    from tasks.samples.tables import write_users

    out = Path(args.dir or tempfile.mkdtemp(prefix="batchflows-demo-")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    users = write_users(out / "users.csv", args.rows)
    with open(users, "a", encoding="utf-8") as handle:  # a few bad rows, to show row errors
        handle.write("u_bad_spend,lots,dining,700,Austin\n,120.5,fuel,650,Boston\nu00000003,10,fuel,700,Denver\n")
    config = {"api": {"api_key_env": "CARD_API_KEY", "timeout": 10},
              "processing": {"concurrency": 100, "rate_limit_per_minute": 6000, "chunk_size": 250}}
    os.environ.setdefault("CARD_API_KEY", "demo-key")
    os.environ.setdefault("BATCHFLOWS_WORK_DIR", str(out / "work"))
    settings = {"cards": {"latency": 0.05, "latency_dist": "uniform", "latency_spread": 0.04,
                          "error_rate": 0.02, "rate_limit": 100, "api_key": os.environ["CARD_API_KEY"]}}
    with Emulator(settings) as emulator:
        config["api"]["base_url"] = emulator.url
        (out / "config.json").write_text(json.dumps(config, indent=2))
        figures = card_recommendations(str(users), str(out / "recommendations.xlsx"), str(out / "config.json"),
                                       runner=args.runner)
        seen = emulator.stats("cards")
    print(f"\nemulator saw {seen['total']:,} requests, at most {seen['max_1s']} in any second (limit 100)")
    return figures


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

    demo = commands.add_parser("demo", help="run card recommendations on generated users against the emulators")
    demo.add_argument("--rows", type=int, default=3000)
    demo.add_argument("--dir", help="where to write the sample input and output (default: a new temp dir)")
    demo.set_defaults(run=_demo, limit=None, concurrency=None, chunk_size=None)

    for sub in (cards, emails, books, rx, demo):
        sub.add_argument("--runner", default="thread", help="thread (default), dask, or tcp://host:port of a Dask scheduler")
        sub.add_argument("--workers", type=int, help="chunks run at once (threads or Dask processes)")
    for sub in (cards, emails, books, rx):
        sub.add_argument("--concurrency", type=int, help="requests in flight for the whole run")
        sub.add_argument("--chunk-size", type=int, help="rows per Prefect task")
    for sub in (cards, emails, rx):
        sub.add_argument("--limit", type=int, help="process only the first N rows (a test-size run)")

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
    from tasks.engine.outcomes import FatalError, MachineryError
    from tasks.engine.progress import enable_terminal_bar
    from tasks.engine.server import prefect_backend
    from tasks.engine.tables import InputError

    if sys.stderr.isatty():
        enable_terminal_bar()
    try:
        with prefect_backend():  # PREFECT_API_URL, else the shared server of PREFECT_HOME (tasks/engine/server.py)
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
