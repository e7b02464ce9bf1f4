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
    if source.is_dir():
        raise ValueError(f"{source} is not {what}: it is a directory")
    try:
        return json.loads(source.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source} is not {what}: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{source} is not {what}: nested too deeply") from error


def read_format_json(path: str | os.PathLike, expected_format: str, what: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose "format" is ``expected_format``; ValueError naming the file otherwise.

    ``what`` says what the file should be, for the message: "<path> is not <what> (format '...' expected)".
    """
    source = Path(path)
    payload = read_json(source)
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise ValueError(f"{source} is not {what} (format {expected_format!r} expected)")
    return payload
