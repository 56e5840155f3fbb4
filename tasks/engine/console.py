"""What the terminal shows of Prefect's logs when a run fails: one line per error, no traceback
(the Prefect UI and API logs keep the full traceback; `--debug` shows it here too)."""
from __future__ import annotations

import logging


class OneLineErrors(logging.Filter):
    """Drops the traceback of a record, keeping its message and the exception's own line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error, message = record.exc_info[1], record.getMessage()
            if str(error) not in message:
                record.msg, record.args = f"{message.rstrip(': ')}: {type(error).__name__}: {error}", ()
            record.exc_info = record.exc_text = None
        return True


def hide_tracebacks() -> None:
    """Install `OneLineErrors` on the console handlers of the logging configuration now in place."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for logger in [logging.getLogger(), *map(logging.getLogger, logging.root.manager.loggerDict)]:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and not any(
                    isinstance(f, OneLineErrors) for f in handler.filters):
                handler.addFilter(OneLineErrors())
