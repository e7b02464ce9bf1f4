"""Browser check of the built site (run `make book` first, then `make check-site`).

Serves _build/html on 127.0.0.1, opens pages in headless Chromium (Debian's chromium and
chromium-driver) and asserts that Chinese text, MathJax-rendered formulas, Mermaid diagrams
rendered to SVG and figure images are really on the page, served without any CDN.
Screenshots go to _build/screenshots/.
"""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "html"
SCREENSHOTS = ROOT / "_build" / "screenshots"
CJK = re.compile(r"[\u4e00-\u9fff]")
TIMEOUT_S = 60


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def site_url() -> Iterator[str]:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site at {SITE}: run `make book` first")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(SITE)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or chromedriver is None:
        pytest.skip("Chromium is not installed and could not be installed: `make check-site` installs "
                    "Debian's chromium and chromium-driver with apt-get, which needs root")
    options = Options()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,2400", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    yield driver
    driver.quit()


def open_page(browser: webdriver.Chrome, url: str) -> str:
    """Load a page, wait until its scripts are done, return its visible text."""
    browser.get(url)
    WebDriverWait(browser, TIMEOUT_S).until(lambda b: b.execute_script("return document.readyState") == "complete")
    return browser.find_element(By.TAG_NAME, "body").text


def assert_chinese_text(text: str, heading: str) -> None:
    assert heading in text
    assert len(CJK.findall(text)) > 300, "the page should be mostly Chinese text"


def assert_math_rendered(browser: webdriver.Chrome) -> None:
    count = browser.execute_script("return document.querySelectorAll('div.math, span.math').length")
    assert count > 0, "the page should contain formulas"
    WebDriverWait(browser, TIMEOUT_S).until(
        lambda b: b.execute_script(
            "return [...document.querySelectorAll('div.math, span.math')]"
            ".every(e => e.querySelector('mjx-container') !== null)"),
        message="MathJax did not render every formula")
    raw_tex = browser.execute_script(
        "return [...document.querySelectorAll('div.math, span.math')]"
        ".filter(e => /\\\\(frac|sum|prod|mid)/.test(e.innerText)).length")
    assert raw_tex == 0, "raw TeX is visible"


def assert_mermaid_rendered(browser: webdriver.Chrome) -> None:
    WebDriverWait(browser, TIMEOUT_S).until(
        lambda b: b.execute_script(
            "const d = [...document.querySelectorAll('pre.mermaid, div.mermaid')];"
            "return d.length > 0 && d.every(e => e.querySelector('svg g.node') !== null)"),
        message="Mermaid did not render every diagram to SVG")


def assert_no_cdn(browser: webdriver.Chrome) -> None:
    sources = browser.execute_script(
        "return [...document.scripts].map(s => s.src + ' ' + s.textContent.slice(0, 2000))")
    assert not [s for s in sources if "cdn.jsdelivr" in s or "cdnjs" in s], "scripts must be served by the site"


def screenshot(browser: webdriver.Chrome, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


@pytest.mark.parametrize("page, heading", [("book/intro", "前言"), ("book/ch01_background", "背景介绍")])
def test_chapter_page(browser, site_url, page, heading):
    text = open_page(browser, f"{site_url}/{page}.html")
    assert_chinese_text(text, heading)
    assert_math_rendered(browser)
    assert_mermaid_rendered(browser)
    assert_no_cdn(browser)
    screenshot(browser, page.split("/")[-1])


def test_chapter_1_notebook_page(browser, site_url):
    text = open_page(browser, f"{site_url}/notebooks/ch01_ngram.html")
    assert_chinese_text(text, "困惑度")
    assert_math_rendered(browser)
    loaded_figures = browser.execute_script(
        "return [...document.querySelectorAll('.cell_output img')]"
        ".filter(i => i.complete && i.naturalWidth > 300).length")
    assert loaded_figures >= 2, "the notebook's figures should be on the page"
    screenshot(browser, "ch01_ngram")


def test_search_finds_chinese_words(browser, site_url):
    open_page(browser, f"{site_url}/search.html?q=困惑度")
    WebDriverWait(browser, TIMEOUT_S).until(
        lambda b: b.execute_script("return document.querySelectorAll('ul.search li').length > 0"),
        message="the site search found no page for 困惑度")
    hits = browser.execute_script("return [...document.querySelectorAll('ul.search li a')].map(a => a.href)")
    assert any("ch01" in href for href in hits)
