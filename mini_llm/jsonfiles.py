"""The JSON files mini_llm writes (run records, results): each is one object tagged with a "format".

``format_json`` is the one way to write their text (a final newline; indented, with the long lists named in
``one_line`` kept on one line each; ``mini_llm.train.rundir.write_json`` writes it atomically) and
``read_format_json`` the one reader (the format tag checked, and a schema if given).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection
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


def read_format_json(
    path: str | os.PathLike, expected_format: str, what: str, schema: Schema | None = None
) -> dict[str, Any]:
    """The JSON object in ``path`` whose "format" is ``expected_format``; ValueError naming the file otherwise.

    ``what`` says what the file should be, for the message: "<path> is not <what> (format '...' expected)". With a
    ``schema`` the object is also checked against it (``check_schema``).
    """
    source = Path(path)
    payload = read_json(source)
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise ValueError(f"{source} is not {what} (format {expected_format!r} expected)")
    if schema is not None:
        check_schema(payload, schema, path)
    return payload


def format_json(value: Any, indent: int | None = 1, one_line: Collection[str] = ()) -> str:
    """JSON text of value with a final newline, non-ASCII characters kept: ``json.dumps(value, indent=indent)``,
    except that the value of every object entry whose key is in ``one_line`` (long lists of numbers) is written on
    one line without spaces. ``indent=None`` writes everything on one line (json's default separators)."""
    if indent is None:
        return json.dumps(value, ensure_ascii=False) + "\n"
    return _indented(value, indent, frozenset(one_line), 1) + "\n"


def _indented(value: Any, indent: int, one_line: frozenset[str], depth: int) -> str:
    """value as json.dumps(indent=indent) writes it at nesting depth ``depth``, one_line entries compact."""
    if isinstance(value, dict) and value:
        items = [
            json.dumps(key if isinstance(key, str) else json.dumps(key), ensure_ascii=False) + ": "
            + (json.dumps(item, ensure_ascii=False, separators=(",", ":")) if key in one_line
               else _indented(item, indent, one_line, depth + 1))
            for key, item in value.items()
        ]
        brackets = "{}"
    elif isinstance(value, list | tuple) and value:
        items = [_indented(item, indent, one_line, depth + 1) for item in value]
        brackets = "[]"
    else:
        return json.dumps(value, ensure_ascii=False)
    inner, outer = "\n" + " " * (indent * depth), "\n" + " " * (indent * (depth - 1))
    return brackets[0] + inner + ("," + inner).join(items) + outer + brackets[1]


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
