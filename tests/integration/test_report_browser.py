"""The HTML report in a real headless Chromium, driven over the DevTools protocol.

Checks that the page loads from ``file://`` with no console errors, no exceptions, no
dialogs and no request other than the file itself; that every section and chart is in
the DOM and laid out with a real size; that hostile feature names stay text (no script
or image element appears, the title is untouched); and that the full-page screenshot is
not blank, inside the PSI chart too (decoded here from the PNG bytes, stdlib + numpy).

Chromium comes from the system (Debian: ``apt-get install chromium``); without it the
test is skipped, or fails when ``DRIFTLOOP_REQUIRE_BROWSER=1``. Set
``DRIFTLOOP_REPORT_SCREENSHOT=/path.png`` to keep the screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from samples.report_data import sample_data

from services.report.render import SECTION_IDS, render_report

pytestmark = pytest.mark.integration

HOSTILE = ("<script>alert(1)</script>", '"><img src=x onerror="document.title=1">')
REQUIRE = os.environ.get("DRIFTLOOP_REQUIRE_BROWSER") == "1"


def _chromium() -> str:
    for name in (os.environ.get("DRIFTLOOP_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (path := shutil.which(name)):
            return path
    message = "no Chromium on PATH (Debian: apt-get install chromium)"
    if REQUIRE:
        pytest.fail(f"{message}, and DRIFTLOOP_REQUIRE_BROWSER=1 requires it")
    pytest.skip(f"{message}; set DRIFTLOOP_REQUIRE_BROWSER=1 to make this a failure")


class DevTools:
    """A minimal DevTools-protocol client: one browser websocket, flat sessions."""

    def __init__(self, url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(url, max_size=None, open_timeout=15)
        self.events: list[dict[str, Any]] = []
        self._id = 0

    def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.recv(timeout=30))
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_for(self, method: str, timeout: float = 30.0) -> None:
        """Read events until ``method`` arrives; a JavaScript dialog fails at once."""
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            for e in self.events:
                if e.get("method") == "Page.javascriptDialogOpening":
                    pytest.fail(f"the page opened a JavaScript dialog: {e['params']}")
            self.events.append(json.loads(self.ws.recv(timeout=max(deadline - time.monotonic(),
                                                                   0.1))))

    def close(self) -> None:
        self.ws.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[DevTools]:
    profile = tmp_path / "profile"
    log = (tmp_path / "chromium.log").open("w")
    proc = subprocess.Popen(
        [_chromium(), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--no-default-browser-check", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log,
    )
    try:
        port_file = profile / "DevToolsActivePort"  # "<port>\n<browser ws path>" once up
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"Chromium did not start: {(tmp_path / 'chromium.log').read_text()}")
            time.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        client = DevTools(f"ws://127.0.0.1:{port}{path}")
        yield client
        try:
            client.call("Browser.close")
        finally:
            client.close()
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit, non-interlaced PNG as a ``(height, width, channels)`` uint8 array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and interlace == 0 and color in (0, 2, 4, 6), header
    bpp = {0: 1, 2: 3, 4: 2, 6: 4}[color]
    raw, stride = zlib.decompress(b"".join(chunks)), width * bpp
    out = np.zeros((height, stride), np.uint8)
    prev = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        if kind == 1:  # Sub: running sum per channel
            cur = np.frombuffer(bytes(line), np.uint8).reshape(-1, bpp).astype(np.int64)
            line = bytearray((cur.cumsum(axis=0) & 0xFF).astype(np.uint8).tobytes())
        elif kind == 2:  # Up
            up = np.frombuffer(bytes(line), np.uint8).astype(np.uint16) + np.frombuffer(
                bytes(prev), np.uint8)
            line = bytearray((up & 0xFF).astype(np.uint8).tobytes())
        elif kind == 3:  # Average
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 0xFF
        elif kind == 4:  # Paeth
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y] = np.frombuffer(bytes(line), np.uint8)
        prev = line
    return out.reshape(height, width, bpp)


PAGE_FACTS = """JSON.stringify({
  title: document.title,
  sections: [...document.querySelectorAll("main > section")].map(s => s.id),
  charts: [...document.querySelectorAll("svg.chart")].map(s => {
      const r = s.getBoundingClientRect();
      return {id: s.id, w: r.width, h: r.height, x: r.x + scrollX, y: r.y + scrollY,
              empty: s.classList.contains("empty"), marks: s.querySelectorAll(
                  "polyline, rect, circle").length};
  }),
  scripts: document.scripts.length,
  images: document.images.length,
  featureNames: [...document.querySelectorAll(".fname")].map(e => e.textContent),
  text: document.body.innerText,
})"""


def test_report_renders_in_chromium(browser: DevTools, tmp_path: Path) -> None:
    data = sample_data(extra_features=HOSTILE)
    page = tmp_path / "report.html"
    page.write_text(render_report(data), encoding="utf-8")

    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session)
    browser.events.clear()
    browser.call("Page.navigate", session, url=page.as_uri())
    browser.wait_for("Page.loadEventFired")
    facts = json.loads(browser.call(
        "Runtime.evaluate", session, expression=PAGE_FACTS, returnByValue=True
    )["result"]["value"])
    size = browser.call("Page.getLayoutMetrics", session)["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    if keep := os.environ.get("DRIFTLOOP_REPORT_SCREENSHOT"):
        Path(keep).write_bytes(png)

    # no errors, no dialogs, nothing fetched but the file itself
    by = {m: [e["params"] for e in browser.events if e.get("method") == m] for m in (
        "Runtime.exceptionThrown", "Runtime.consoleAPICalled", "Log.entryAdded",
        "Page.javascriptDialogOpening", "Network.requestWillBeSent")}
    assert by["Runtime.exceptionThrown"] == []
    assert by["Page.javascriptDialogOpening"] == []
    assert [c for c in by["Runtime.consoleAPICalled"] if c["type"] in ("error", "assert")] == []
    assert [e for e in by["Log.entryAdded"] if e["entry"]["level"] == "error"] == []
    assert {r["request"]["url"] for r in by["Network.requestWillBeSent"]} <= {page.as_uri()}

    # every section and chart, laid out with a real size
    assert facts["sections"] == list(SECTION_IDS)
    charts = {c["id"]: c for c in facts["charts"]}
    n_features = len(data.drift_reports[-1].features)
    expected = {f"chart-dist-{i}" for i in range(n_features)} | {
        "chart-psi", "chart-ks", "chart-share", "chart-verdicts", "chart-shadow-run-0"}
    assert set(charts) == expected
    for chart in charts.values():
        assert not chart["empty"], chart["id"]
        assert chart["w"] > 200 and chart["h"] > 100, chart
        assert chart["marks"] >= 2, chart

    # hostile names are text: no element was injected, the title was not changed
    assert facts["scripts"] == 0 and facts["images"] == 0
    assert facts["title"] == "driftloop report: churn"
    assert set(HOSTILE) <= set(facts["featureNames"])
    assert "<script>alert(1)</script>" in facts["text"]

    # the screenshot is a picture of the page, with ink inside the PSI chart
    pixels = decode_png(png)[..., :3].astype(np.float64)
    assert pixels.shape[0] >= size["height"] * 0.99 and pixels.shape[1] >= 1000
    assert pixels.std() > 20
    assert (pixels.min(axis=2) < 200).mean() > 0.02  # not a white page
    psi = charts["chart-psi"]
    box = pixels[int(psi["y"]) : int(psi["y"] + psi["h"]), int(psi["x"]) : int(psi["x"] + psi["w"])]
    colours = {tuple(p) for p in box.reshape(-1, 3)[::7].astype(int)}
    assert len(colours) > 20, "the PSI chart area is (nearly) one colour"
