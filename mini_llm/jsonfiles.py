"""Reading the JSON files mini_llm writes (run configs, results): each is one object tagged with a "format"."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_json(path: str | os.PathLike, what: str = "valid JSON") -> Any:
    """The JSON value in ``path``; ValueError "<path> is not <what>: ..." for a directory, undecodable bytes, invalid
    or absurdly nested JSON (FileNotFoundError if it is missing)."""
    source = Path(path)
    text = read_text(source, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{source} is not {what}: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{source} is not {what}: nested too deeply") from error


def read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of the file path (FileNotFoundError if it is missing); ValueError "<path> is not <what>: ..."
    for a directory or bytes that are not UTF-8 (a damaged file)."""
    source = Path(path)
    if source.is_dir():
        raise ValueError(f"{source} is not {what}: it is a directory")
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist")
    try:
        return source.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{source} is not {what}: {error}") from error


def read_format_json(path: str | os.PathLike, expected_format: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose "format" is ``expected_format``; ValueError naming the file otherwise.

    ``what`` says what the file should be, for the message: "<path> is not <what> (format '...' expected)".
    """
    source = Path(path)
    payload = read_json(source)
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise ValueError(f"{source} is not {what} (format {expected_format!r} expected)")
    return payload


# A schema maps each key of a JSON object to what its value must be: a type (float accepts integers; bool is never
# an int or a float; None stands for null), a tuple of such choices, a nested schema (a dict), or a one-item list
# [item] for a list whose every item is `item`. A key ending in "?" may be absent. Keys not named are not checked.
Schema = dict[str, Any]


def check_schema(value: Any, schema: Schema | type | tuple | list, source: str | os.PathLike, where: str = "") -> None:
    """ValueError "<source>: entry <where> must be ..." when value does not follow schema (see Schema above)."""
    if isinstance(schema, dict):
        _expect(isinstance(value, dict), source, where, "an object")
        for key, item_schema in schema.items():
            name = key.removesuffix("?")
            if name in value:
                check_schema(value[name], item_schema, source, f"{where}.{name}" if where else name)
            elif not key.endswith("?"):
                raise ValueError(f"{source}: entry {where + '.' if where else ''}{name} is missing")
    elif isinstance(schema, list):
        _expect(isinstance(value, list), source, where, "a list")
        for index, item in enumerate(value):
            check_schema(item, schema[0], source, f"{where}[{index}]")
    else:
        choices = schema if isinstance(schema, tuple) else (schema,)
        _expect(any(_is_a(value, choice) for choice in choices), source, where, " or ".join(map(_name, choices)))


def _is_a(value: Any, kind: Any) -> bool:
    """isinstance for JSON values (bool is not a number, an integer is a float); a kind that is a schema: conforms."""
    if kind is None:
        return value is None
    if not isinstance(kind, type):
        try:
            check_schema(value, kind, "")
        except ValueError:
            return False
        return True
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _name(kind: Any) -> str:
    """How a schema choice reads in a message."""
    if kind is None:
        return "null"
    if isinstance(kind, list):
        return f"a list of {_name(kind[0])}"
    return "an object" if isinstance(kind, dict) else kind.__name__


def _expect(ok: bool, source: str | os.PathLike, where: str, what: str) -> None:
    """ValueError naming source and the entry unless ok."""
    if not ok:
        raise ValueError(f"{source}: entry {where or '(the whole file)'} must be {what}")
