"""Serve MathJax 3 and Mermaid from the built site itself, so math and diagrams render offline.

At build time the two npm packages are fetched once with ``npm pack`` (the npm registry) into the
ignored folder ``_web_assets/`` and copied into the site as ``_vendor/`` through ``html_extra_path``
(not a ``_static/`` folder, whose every .js file jupyter-book would load on every page).
Only when npm cannot fetch them do the pages fall back to the CDN defaults of Sphinx and
sphinxcontrib-mermaid.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)

MATHJAX_PACKAGE = "mathjax@3.2.2"
MERMAID_PACKAGE = "mermaid@11.12.1"
ASSETS_DIR = "_web_assets"  # relative to the book's source directory, ignored by git
VENDOR = "_vendor"  # folder of the built site that holds the copies
MATHJAX_ENTRY = f"{VENDOR}/mathjax/tex-chtml.js"
MERMAID_ENTRY = f"{VENDOR}/mermaid/mermaid.esm.min.mjs"


def _npm_pack(package: str, workdir: Path) -> Path:
    """Download one package tarball from the npm registry and unpack it; return its package/ folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "pack", package, "--silent", "--pack-destination", str(workdir)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm pack {package} failed: {result.stderr.strip()[-500:]}")
    tarball = workdir / result.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        archive.extractall(workdir, filter="data")
    return workdir / "package"


def _copy(source: Path, target: Path, suffixes: tuple[str, ...]) -> None:
    for path in source.rglob("*"):
        if path.is_file() and path.suffix in suffixes:
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, destination)


def fetch_assets(site_root: Path) -> None:
    """Put MathJax (es5 build) and Mermaid (ESM build) under site_root/_vendor/."""
    staging = site_root.with_name(site_root.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        mathjax = _npm_pack(MATHJAX_PACKAGE, Path(tmp) / "mathjax")
        _copy(mathjax / "es5", staging / VENDOR / "mathjax", (".js", ".woff", ".json"))
        mermaid = _npm_pack(MERMAID_PACKAGE, Path(tmp) / "mermaid") / "dist"
        shutil.copy2(mermaid / "mermaid.esm.min.mjs", _mkdir(staging / VENDOR / "mermaid") / "mermaid.esm.min.mjs")
        chunks = Path("chunks") / "mermaid.esm.min"
        _copy(mermaid / chunks, staging / VENDOR / "mermaid" / chunks, (".mjs",))
    site_root.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(site_root, ignore_errors=True)
    staging.rename(site_root)


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_offline_assets(app: Sphinx, config: Config) -> None:
    """Point Sphinx's MathJax and sphinxcontrib-mermaid at the local copies, fetching them if needed."""
    site_root = Path(app.srcdir) / ASSETS_DIR / "site"
    if not (site_root / MATHJAX_ENTRY).is_file() or not (site_root / MERMAID_ENTRY).is_file():
        try:
            fetch_assets(site_root)
        except (RuntimeError, OSError, subprocess.SubprocessError, tarfile.TarError) as error:
            logger.info(f"[offline_web_assets] cannot fetch MathJax/Mermaid ({error}); "
                        "pages will load them from the CDN")
            return
    config.html_extra_path = [*config.html_extra_path, str(site_root)]
    # Both settings are resolved relative to _static/; the browser normalises the "../".
    config.mathjax_path = f"../{MATHJAX_ENTRY}"
    config.mermaid_use_local = f"../{MERMAID_ENTRY}"
    logger.info(f"[offline_web_assets] MathJax and Mermaid served from {VENDOR}/")


def setup(app: Sphinx) -> dict:
    """Register the config-inited hook (after sphinxcontrib.mermaid has added its settings)."""
    app.setup_extension("sphinx.ext.mathjax")
    app.setup_extension("sphinxcontrib.mermaid")
    app.connect("config-inited", use_offline_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
