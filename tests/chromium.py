"""Render an HTML page in headless Chromium (Debian package `chromium`, installed by .ci/run).

`render(page, folder)` loads a copy of the page with a small probe script added at its end; after
the load event the probe writes onto `<body>` how many images there are, how many loaded (decoded,
non-zero size) and whether `#verdict` is laid out visibly. Chromium then dumps the DOM and takes a
screenshot. Nothing else in the page is changed.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import pytest

_PROBE = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const loaded = images.filter(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  const verdict = document.getElementById('verdict');
  const box = verdict ? verdict.getBoundingClientRect() : {width: 0, height: 0};
  const shown = !!verdict && box.width > 0 && box.height > 0 &&
      getComputedStyle(verdict).visibility !== 'hidden' && getComputedStyle(verdict).display !== 'none';
  document.body.setAttribute('data-images', String(images.length));
  document.body.setAttribute('data-images-loaded', String(loaded.length));
  document.body.setAttribute('data-verdict-shown', String(shown));
  document.body.setAttribute('data-verdict-text', verdict ? verdict.textContent : '');
});
</script>"""

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--virtual-time-budget=10000",
)


@dataclass(frozen=True)
class Rendered:
    images: int
    images_loaded: int
    verdict_shown: bool
    verdict_text: str
    screenshot: Path


class _BodyAttributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.attributes: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.attributes = {k: v or "" for k, v in attrs}


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "`chromium` is not on PATH: install the Debian package `chromium` (.ci/run does)"
        )
    return path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def render(page: str, folder: Path) -> Rendered:
    probed = folder / "probed.html"
    probed.write_text(page.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _run(["--dump-dom", probed.as_uri()], folder / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _BodyAttributes()
    parser.feed(dom.stdout)
    attrs = parser.attributes
    screenshot = folder / "screenshot.png"
    plain = folder / "page.html"
    plain.write_text(page, encoding="utf-8")
    shot = _run(
        [f"--screenshot={screenshot}", "--window-size=1280,1000", plain.as_uri()],
        folder / "profile-shot",
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    return Rendered(
        images=int(attrs.get("data-images", "-1")),
        images_loaded=int(attrs.get("data-images-loaded", "-1")),
        verdict_shown=attrs.get("data-verdict-shown") == "true",
        verdict_text=attrs.get("data-verdict-text", ""),
        screenshot=screenshot,
    )


def colour_share(png: Path, rgb: tuple[int, int, int], tolerance: int = 12) -> float:
    """The share of the screenshot's pixels within `tolerance` of `rgb`."""
    import numpy as np
    from matplotlib import image

    pixels = image.imread(png)[:, :, :3] * 255.0
    close = np.all(np.abs(pixels - np.array(rgb)) <= tolerance, axis=2)
    return float(close.mean())
