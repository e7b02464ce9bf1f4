"""The validation rule of notebooks/README.md: pasted numbers exist in the notebooks, check cells are hidden."""

import json
import re
from functools import cache
from pathlib import Path

import pytest
from myst_nb.core.variables import format_plain_text

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book").glob("*.md"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# {glue:text}`/notebooks/name.ipynb::key:format` (myst-nb's role for pasting from another document)
GLUE_ROLE = re.compile(r"\{glue(?::(\w+))?\}`([^`]*)`")
GLUE_PREFIX = "application/papermill.record/"


@cache
def glued_values(notebook: Path) -> dict[str, str]:
    """key -> text/plain of every glue() output in a committed notebook."""
    values = {}
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is not None:
                data = output["data"]
                values[name] = data.get(GLUE_PREFIX + "text/plain", data.get("text/plain", ""))
    return values


def pasted_references() -> list[tuple[str, str, str, str]]:
    """(page, role, notebook path, key:format) of every glue role in the chapter pages."""
    found = []
    for page in PAGES:
        for role, target in GLUE_ROLE.findall(page.read_text(encoding="utf-8")):
            found.append((page.name, role or "any", *target.split("::", 1)))
    return found


@pytest.mark.parametrize(("page", "role", "notebook", "key_format"), pasted_references())
def test_pasted_number_exists_in_committed_notebook(page, role, notebook, key_format):
    assert notebook.startswith("/notebooks/"), f"{page}: paste from '/notebooks/<name>.ipynb::key:format'"
    path = ROOT / notebook.lstrip("/")
    assert path.is_file(), f"{page}: no notebook {notebook}"
    key, _, fmt_spec = key_format.partition(":")
    assert role == "text" and fmt_spec, f"{page}: use {{glue:text}} with a format spec for '{key}'"
    values = glued_values(path)
    assert key in values, f"{page}: {notebook} glues no '{key}'"
    format_plain_text(values[key], fmt_spec)  # raises on a format the value cannot take


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.stem)
def test_check_cells_are_hidden_and_keys_unique(notebook):
    keys = []
    for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] == "code" and source.startswith("# Check:"):
            assert "remove-cell" in tags, f"check cell not hidden from the book: {source.splitlines()[0]}"
        keys += re.findall(r"glue\(\s*[\"'](\w+)[\"']", source)
    assert len(keys) == len(set(keys)), f"a glue key is used twice in {notebook.name}"
    assert all(key.startswith(notebook.stem.split("_")[0] + "_") for key in keys), (
        f"glue keys in {notebook.name} start with its prefix '{notebook.stem.split('_')[0]}_'"
    )
