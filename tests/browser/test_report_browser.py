"""The HTML report in a real browser: headless Chromium renders it, a script sorts and wipes.

Chromium is driven over the Chrome DevTools protocol with the `websockets` package (no browser
download). Skipped with the reason when Chromium or websockets is missing; `.ci/run` installs
Chromium where apt is available.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusecli.report import ReportImage, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
websockets = pytest.importorskip("websockets", reason="the test extra's websockets is missing")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium)"
)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]


def _report(root: Path) -> Path:
    rng = np.random.default_rng(0)
    images = []
    values: dict[str, dict[str, dict[str, float]]] = {"average": {}, "laplacian": {}}
    for index in range(3):
        stem = f"scene{index}"
        paths = {}
        for label in ("a", "b", *values):
            path = root / label / f"{stem}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).save(path)
            paths[label] = path
        images.append(
            ReportImage(stem, (("a", paths["a"]), ("b", paths["b"])), {m: paths[m] for m in values})
        )
        values["average"][stem] = {"SSIM": 0.9 - index / 10, "Nabf": 0.2}
        values["laplacian"][stem] = {"SSIM": 0.5 + index / 10, "Nabf": 0.1}
    return write_report(root / "report.html", images, values, {"SSIM": True, "Nabf": False})


def test_a_screenshot_of_the_report_is_not_blank(tmp_path: Path) -> None:
    report = _report(tmp_path)
    shot = tmp_path / "shot.png"
    subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         f"--screenshot={shot}", "--window-size=1200,1400", report.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (1400, 1200)
    assert pixels.std() > 10  # text, charts and thumbnails, not an empty page
    assert (pixels < 128).mean() > 0.01


class _DevTools:
    """A minimal Chrome DevTools protocol client for one page."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def call(self, method: str, **params) -> dict:
        message_id = next(self.ids)
        await self.socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.socket.recv())
            if reply.get("id") == message_id:
                assert "error" not in reply, reply
                return reply["result"]

    async def evaluate(self, expression: str) -> object:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")


def _page_socket_url(port: int) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as reply:
        pages = [t for t in json.load(reply) if t["type"] == "page"]
    return pages[0]["webSocketDebuggerUrl"]


async def _interact(url: str) -> dict:
    async with websockets.connect(url, max_size=None) as socket:
        tools = _DevTools(socket)
        # The page target can still show about:blank (readyState "complete") while Chromium
        # loads the report on a busy machine: wait for the report itself, up to a minute.
        loaded = "document.readyState === 'complete' && !!document.getElementById('metrics')"
        for _ in range(600):
            if await tools.evaluate(loaded):
                break
            await asyncio.sleep(0.1)
        state: dict = {}
        state["sections"] = await tools.evaluate(
            "['averages','metrics','images','viewer'].filter(id => document.getElementById(id))"
        )
        state["best"] = await tools.evaluate("document.querySelectorAll('td.best').length")
        # Sort by SSIM (column 2) twice: descending first, then ascending.
        column = (
            "Array.from(document.querySelectorAll('#metrics tbody tr'))"
            ".map(r => r.cells[2].dataset.value)"
        )
        await tools.evaluate("document.querySelector('th[data-col=\"2\"]').click()")
        state["descending"] = await tools.evaluate(column)
        await tools.evaluate("document.querySelector('th[data-col=\"2\"]').click()")
        state["ascending"] = await tools.evaluate(column)
        # Open the second image's viewer, move the wipe slider and zoom.
        await tools.evaluate("document.querySelectorAll('button.open')[1].click()")
        await tools.evaluate(
            "const s = document.getElementById('wipe'); s.value = 20;"
            "s.dispatchEvent(new Event('input'));"
            "document.getElementById('stage').dispatchEvent(new WheelEvent('wheel',"
            "{deltaY: -100, clientX: 10, clientY: 10, bubbles: true, cancelable: true}))"
        )
        state["viewer"] = await tools.evaluate(
            "({open: document.getElementById('viewer').classList.contains('open'),"
            " title: document.getElementById('viewer-title').textContent,"
            " clip: document.getElementById('top-layer').style.clipPath,"
            " line: document.getElementById('wipe-line').style.left,"
            " top: document.getElementById('top-layer').getAttribute('src'),"
            " bottom: document.getElementById('bottom-layer').getAttribute('src'),"
            " zoomTop: document.getElementById('top-layer').style.transform,"
            " zoomBottom: document.getElementById('bottom-layer').style.transform})"
        )
        return state


def test_sorting_and_the_wipe_slider_work_in_chromium(tmp_path: Path) -> None:
    report = _report(tmp_path)
    profile = tmp_path / "profile"
    browser = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         report.as_uri()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        state = asyncio.run(_interact(_page_socket_url(port)))
    finally:
        browser.terminate()
        browser.wait(timeout=30)
    assert state["sections"] == ["averages", "metrics", "images", "viewer"]
    # Best per image and metric (3 images x 2 metrics; scene2's SSIM is a tie, both marked)
    # and per metric among the means (2).
    assert state["best"] == 9
    descending = [float(v) for v in state["descending"]]
    assert descending == sorted(descending, reverse=True)
    assert state["ascending"] == list(reversed(state["descending"]))
    viewer = state["viewer"]
    assert viewer["open"] and viewer["title"] == "scene1"
    assert viewer["clip"] == "inset(0px 80% 0px 0px)" and viewer["line"] == "20%"
    assert viewer["top"] == "a/scene1.png" and viewer["bottom"] == "laplacian/scene1.png"
    assert "scale(1.25)" in viewer["zoomTop"] and viewer["zoomTop"] == viewer["zoomBottom"]
