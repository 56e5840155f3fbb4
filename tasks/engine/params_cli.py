"""Command-line options made from a flow's typed signature (names, help, defaults, choices), and
the given values validated by the same types: a bad value is one line naming the option."""
from __future__ import annotations

import argparse
import enum
import inspect
import json
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tasks.engine.params import Cli, Help


class ParameterError(ValueError):
    """A value given for a parameter is not allowed; the message names the option and the value."""


def read_settings(path: str | os.PathLike) -> Any:
    """A JSON or YAML settings file (by suffix) as Python values; a ParameterError naming the file
    when it is not valid."""
    text = Path(path).read_text(encoding="utf-8")
    kind = "YAML" if str(path).endswith((".yaml", ".yml")) else "JSON"
    try:
        return (yaml.safe_load(text) or {}) if kind == "YAML" else json.loads(text)
    except (ValueError, yaml.YAMLError) as error:
        raise ParameterError(f"{path}: not valid {kind}: {' '.join(str(error).split())}") from None


@dataclass(frozen=True)
class Option:
    """One command-line option and the parameter (or endpoint field) it fills."""

    path: tuple[str, ...]  # ("concurrency",) or ("llm", "base_url")
    name: str  # as the user typed it: --llm-base-url, or the positional's name


def _unwrap(hint: Any) -> tuple[Any, list[Any]]:
    """(the type without Annotated and None, the Annotated metadata)."""
    metadata: list[Any] = []
    if typing.get_origin(hint) is Annotated:
        hint, *metadata = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        kept = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(kept) == 1:
            inner, more = _unwrap(kept[0])
            return inner, more + metadata
    return hint, metadata


def _last(metadata: list[Any], kind: type) -> Any:
    found = [item for item in metadata if isinstance(item, kind)]
    return found[-1] if found else None


def _help(metadata: list[Any], default: Any) -> str:
    text = getattr(_last(metadata, Help), "text", "")
    if default not in (None, inspect.Parameter.empty, False, [], ()):
        text += f" (default: {default.value if isinstance(default, enum.Enum) else default})"
    return text.replace("%", "%%")


def _kind(base: Any) -> dict[str, Any]:
    """argparse keywords for a value of this type (validation itself is pydantic's)."""
    if base is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(base) is list:
        return {"action": "append"}
    if typing.get_origin(base) is Literal:
        return {"choices": typing.get_args(base)}
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return {"choices": [member.value for member in base]}
    return {}


def _hints(fn: Callable) -> dict[str, Any]:
    return typing.get_type_hints(fn, include_extras=True)


def add_flow_options(parser: argparse.ArgumentParser, fn: Callable) -> list[Option]:
    """An option per parameter of `fn` (an endpoint model gives one per field: --llm-base-url ...)."""
    options, hints = [], _hints(fn)
    for name, parameter in inspect.signature(fn).parameters.items():
        base, metadata = _unwrap(hints[name])
        cli = _last(metadata, Cli) or Cli()
        flag = "--" + name.replace("_", "-")
        if isinstance(base, type) and issubclass(base, BaseModel):
            field_hints = _hints(base)
            for field in base.model_fields:
                field_base, field_meta = _unwrap(field_hints[field])
                field_flag = f"{flag}-{field.replace('_', '-')}"
                parser.add_argument(field_flag, dest=f"{name}.{field}", default=None, metavar=field.upper(),
                                    **_kind(field_base),
                                    help=_help(field_meta, getattr(parameter.default, field, None)))
                options.append(Option((name, field), field_flag))
        elif cli.positional:
            metavar = cli.metavar or name
            parser.add_argument(name, metavar=metavar, help=_help(metadata, parameter.default), **_kind(base))
            options.append(Option((name,), metavar))
        else:
            flags = cli.flags or (flag,)
            required = parameter.default is inspect.Parameter.empty
            parser.add_argument(*flags, dest=name, default=None, required=required, metavar=cli.metavar,
                                help=_help(metadata, parameter.default), **_kind(base))
            options.append(Option((name,), flags[-1]))
    return options


def flow_arguments(fn: Callable, args: argparse.Namespace, options: list[Option]) -> dict[str, Any]:
    """The given options as `fn`'s keyword arguments, validated by its parameter types."""
    given: dict[str, Any] = {}
    for option in options:
        value = getattr(args, ".".join(option.path))
        if value is None:
            continue
        value = None if value == "" else value  # an empty value: none (no limit, the provider's default ...)
        if len(option.path) == 2:
            given.setdefault(option.path[0], {})[option.path[1]] = value
        else:
            given[option.path[0]] = value
    return validate_arguments(fn, given, {option.path: option.name for option in options})


def validate_arguments(fn: Callable, given: dict[str, Any], names: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """`given` checked and converted by `fn`'s parameter types; a ParameterError naming every bad value."""
    hints, fields = _hints(fn), {}
    for name, parameter in inspect.signature(fn).parameters.items():
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (hints[name], default)
    model = create_model(f"{fn.__name__}_parameters", __config__=ConfigDict(arbitrary_types_allowed=True), **fields)
    try:
        checked = model.model_validate(given)
    except ValidationError as error:
        raise ParameterError(problems(error, names)) from None
    return {name: getattr(checked, name) for name in given}


def problems(error: ValidationError, names: dict[tuple[str, ...], str] | None = None) -> str:
    """One line for all of a validation's problems: `where 'value': what is allowed; ...`."""
    return "; ".join(_problem(problem, names or {}) for problem in error.errors())


def _problem(problem: dict[str, Any], names: dict[tuple[str, ...], str]) -> str:
    loc = tuple(str(part) for part in problem["loc"])
    where = names.get(loc[:2]) or names.get(loc[:1]) or ".".join(loc)
    message = problem["msg"].removeprefix("Value error, ")
    if problem["type"] == "missing":
        return f"{where}: required"
    if problem["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    return f"{where} {problem['input']!r}: {message}"
