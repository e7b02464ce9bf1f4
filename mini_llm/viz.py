"""Plotting helpers: a CJK-capable font so Chinese titles and labels render."""

from __future__ import annotations

import importlib.resources
import importlib.util

CJK_FONT_PACKAGE = "mplfonts"
CJK_FONT_FILE = "NotoSansCJKsc-Regular.otf"  # Noto Sans CJK SC, SIL Open Font License


def cjk_font_path() -> str:
    """Path of the Simplified Chinese Noto Sans CJK font shipped by the mplfonts package."""
    if importlib.util.find_spec(CJK_FONT_PACKAGE) is None:
        raise ModuleNotFoundError(
            f"the CJK font comes from the PyPI package '{CJK_FONT_PACKAGE}', which is not installed; "
            f"install it with `pip install {CJK_FONT_PACKAGE}`"
        )
    font = importlib.resources.files(CJK_FONT_PACKAGE).joinpath("fonts", CJK_FONT_FILE)
    if not font.is_file():
        raise FileNotFoundError(f"{CJK_FONT_PACKAGE} does not ship {CJK_FONT_FILE}")
    return str(font)


def use_cjk_font() -> str:
    """Register Noto Sans CJK SC with matplotlib and make it the default font; return its family name."""
    from matplotlib import font_manager, rcParams

    path = cjk_font_path()
    font_manager.fontManager.addfont(path)
    name = font_manager.FontProperties(fname=path).get_name()
    rcParams["font.family"] = "sans-serif"
    # The CJK font first; DejaVu Sans as per-glyph fallback (e.g. for the minus sign).
    rcParams["font.sans-serif"] = [name, "DejaVu Sans"]
    return name
