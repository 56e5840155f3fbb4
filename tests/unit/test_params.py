"""Typed parameters -> command-line options and one-line validation errors (no Prefect server)."""
from __future__ import annotations

import argparse
from typing import Annotated, Literal

import pytest

from tasks.apis.endpoints import SerperEndpoint
from tasks.engine.params import Cli, Concurrency, Help, InputFile, Limit, OutputFile, Runner
from tasks.engine.params_cli import ParameterError, add_flow_options, flow_arguments


def job(input_path: InputFile, output_path: OutputFile,
        mode: Annotated[Literal["fast", "careful"], Help("how to go")] = "fast",
        limit: Limit = None, runner: Runner = "thread", concurrency: Concurrency = 50,
        tags: Annotated[list[str] | None, Help("labels"), Cli(("--tag",))] = None,
        dry: Annotated[bool, Help("do nothing")] = False,
        search: SerperEndpoint = SerperEndpoint()) -> None:
    """A flow-like function."""


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser(exit_on_error=False)
    options = add_flow_options(parser, job)
    return flow_arguments(job, parser.parse_args(argv), options)


def test_options_come_from_the_signature_with_help_defaults_and_choices():
    parser = argparse.ArgumentParser()
    add_flow_options(parser, job)
    text = parser.format_help()
    for expected in ("  input ", "-o OUTPUT_PATH, --output OUTPUT_PATH", "--mode {fast,careful}", "how to go",
                     "(default: fast)", "--tag TAG", "--dry, --no-dry", "--search-base-url BASE_URL",
                     "(default: https://google.serper.dev)", "--search-requests-per-minute REQUESTS_PER_MINUTE"):
        assert expected in text


def test_given_values_are_converted_and_an_endpoint_keeps_its_other_defaults():
    given = parse("in.csv", "-o", "out.parquet", "--concurrency", "7", "--tag", "a", "--tag", "b", "--dry",
                  "--search-requests-per-minute", "60", "--runner", "tcp://scheduler:8786")
    assert given["concurrency"] == 7 and given["tags"] == ["a", "b"] and given["dry"] is True
    assert given["runner"] == "tcp://scheduler:8786"
    assert given["search"] == SerperEndpoint(requests_per_minute=60)
    assert given["search"].base_url == "https://google.serper.dev" and given["search"].per_second == 1
    assert "limit" not in given  # not given: the function's default applies
    assert parse("in.csv", "-o", "out.csv", "--search-requests-per-minute", "")["search"].requests_per_minute is None


@pytest.mark.parametrize("argv, message", [
    (("in.csv", "-o", "out.csv", "--concurrency", "fifty"),
     "--concurrency 'fifty': Input should be a valid integer, unable to parse string as an integer"),
    (("in.csv", "-o", "out.csv", "--limit", "0"), "--limit '0': Input should be greater than or equal to 1"),
    (("in.doc", "-o", "out.csv"), "input 'in.doc': the file type must be one of"),
    (("in.csv", "-o", "out.csv", "--runner", "tcp://nohost"),
     "--runner 'tcp://nohost': thread, dask, or tcp://host:port of a Dask scheduler"),
    (("in.csv", "-o", "out.csv", "--search-base-url", "ftp://x"),
     "--search-base-url 'ftp://x': a base URL needs http:// or https:// and a host"),
    (("in.csv", "-o", "out.csv", "--search-requests-per-minute", "-1", "--concurrency", "0"),
     "--concurrency '0': Input should be greater than or equal to 1; --search-requests-per-minute '-1': Input "
     "should be greater than 0"),
])
def test_a_bad_value_is_one_line_naming_the_option_and_the_value(argv, message):
    with pytest.raises(ParameterError) as raised:
        parse(*argv)
    assert str(raised.value).startswith(message)
    assert "\n" not in str(raised.value)
