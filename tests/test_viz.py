"""use_cjk_font: Chinese labels render without missing-glyph warnings."""

import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mini_llm.viz import cjk_font_path, use_cjk_font  # noqa: E402


def _draw_chinese_figure() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [-1, 0, 1])
        ax.set_title("人民日报 n 元语法困惑度")
        ax.set_xlabel("年份（年）")
        ax.set_ylabel("参数量（个）")
        fig.canvas.draw()
        plt.close(fig)
    return [str(w.message) for w in caught if "missing from" in str(w.message) or "Glyph" in str(w.message)]


def test_without_cjk_font_glyphs_are_missing():
    with matplotlib.rc_context({"font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"]}):
        assert _draw_chinese_figure(), "DejaVu Sans alone should lack CJK glyphs (the check below would be vacuous)"


def test_with_cjk_font_no_glyph_is_missing():
    with matplotlib.rc_context():
        name = use_cjk_font()
        assert name == "Noto Sans CJK SC"
        assert cjk_font_path().endswith("NotoSansCJKsc-Regular.otf")
        assert _draw_chinese_figure() == []
