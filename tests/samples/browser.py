"""A real headless Chromium driven over the DevTools protocol, and the checks every
driftloop report page must pass in it (shared by the report, demo and example tests).

:func:`check_page` loads a report from ``file://`` and checks: no console errors, no
exceptions, no dialogs and no request other than the file itself; the window selector
changes the per-feature table and the histograms, clicking a column sorts the table and
the other histograms come on demand; the PSI chart's time axis spans the windows, with
the retrain and promotion markers among them (``expect_markers``) and no two marker
labels overlapping; every section and chart is laid out with a real size; only the
page's data block and script exist; and the screenshot is not blank, inside the PSI
chart too (decoded here from the PNG bytes, stdlib + numpy).

Each page's full-page screenshot is written where the caller says (the path is printed;
run with ``-s`` to see it); ``DRIFTLOOP_REPORT_SCREENSHOT=/path.png`` keeps a copy per
page as ``/path-<name>.png``.

Chromium comes from the system (Debian: ``apt-get install chromium``); without it the
test is skipped, or fails when ``DRIFTLOOP_REQUIRE_BROWSER=1``.
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.report.render import SECTION_IDS

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


@contextmanager
def chromium(tmp_path: Path) -> Iterator[DevTools]:
    """A headless Chromium (profile and log under ``tmp_path``); each page gets a target."""
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
              visible: r.width > 0, empty: s.classList.contains("empty"),
              marks: s.querySelectorAll("polyline, rect, circle").length};
  }),
  scripts: [...document.scripts].map(s => s.type || "classic"),
  images: document.images.length,
  featureNames: [...document.querySelectorAll(".fname, #feature-table tbody td:first-child")]
      .map(e => e.textContent),
  text: document.body.innerText,
})"""

TABLE = """JSON.stringify({
  info: document.getElementById("window-info").textContent,
  window: document.getElementById("window-select").value,
  rows: [...document.querySelectorAll("#feature-table tbody tr")].map(
      tr => [...tr.cells].map(td => td.textContent)),
  cards: [...document.querySelectorAll("#window-histograms .feature .fname")].map(
      e => e.textContent),
})"""

AXIS = """JSON.stringify([...document.querySelectorAll("#chart-psi")].map(svg => ({
  dots: [...svg.querySelectorAll("g.series circle")].map(c => {
      const r = c.getBoundingClientRect(); return r.x + r.width / 2; }),
  marks: [...svg.querySelectorAll("g.marker line")].map(l => l.getBoundingClientRect().x),
  width: svg.getBoundingClientRect().width,
  labels: [...svg.querySelectorAll("g.marker text")].map(t => {
      const r = t.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; }),
}))[0])"""


def _choose(window: int) -> str:
    return (f'(() => {{ const s = document.getElementById("window-select"); '
            f's.value = "{window}"; s.dispatchEvent(new Event("change")); return 1; }})()')


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def check_page(browser: DevTools, page: Path, shot_path: Path, data: Any = None, *,
               expect_markers: bool | None = None) -> None:
    """Every check above on the report at ``page``; ``data`` is the sample it was rendered
    from (None: a report of a real run); markers are required when ``expect_markers``
    (default: when ``data`` is given)."""
    if expect_markers is None:
        expect_markers = data is not None
    target = browser.call("Target.createTarget", url="about:blank")["targetId"]
    session = browser.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.call(f"{domain}.enable", session)
    browser.events.clear()
    browser.call("Page.navigate", session, url=page.as_uri())
    browser.wait_for("Page.loadEventFired")

    def evaluate(expression: str) -> Any:
        result = browser.call("Runtime.evaluate", session, expression=expression,
                              returnByValue=True)
        assert "exceptionDetails" not in result, result
        value = result["result"].get("value")
        return json.loads(value) if isinstance(value, str) else value

    facts = evaluate(PAGE_FACTS)

    # the window selector drives the table and the histograms
    first = evaluate(TABLE)
    options = evaluate('document.getElementById("window-select").options.length')
    assert options >= 2 and first["rows"] and first["cards"]
    psi_col = 5
    psis = [float(r[psi_col]) for r in first["rows"] if r[psi_col] != "—"]
    assert psis == sorted(psis, reverse=True)  # sorted by PSI at first
    evaluate(_choose(options - 1))
    last = evaluate(TABLE)
    assert last["window"] == str(options - 1) and last["info"] != first["info"]
    assert last["rows"] != first["rows"]
    assert {r[0] for r in last["rows"]} == {r[0] for r in first["rows"]}  # same features
    if data is not None:
        assert "DRIFTED" in first["info"] and "no drift" in last["info"]
    evaluate('document.querySelector("#feature-table th[data-col=\\"0\\"]").click()')
    by_name = [r[0] for r in evaluate(TABLE)["rows"]]
    assert by_name == sorted(by_name, key=str.lower, reverse=True)
    evaluate(_choose(0))
    more = evaluate('(() => { const b = document.getElementById("histograms-more"); '
                    'if (b.hidden) return -1; b.click(); return 1; })()')
    cards = evaluate(TABLE)["cards"]
    if more == 1:
        assert len(cards) == len(first["rows"]) > len(first["cards"]) == 8

    # the time axis spans the windows, the markers sit among them, labels do not overlap
    axis = evaluate(AXIS)
    dots, marks = axis["dots"], axis["marks"]
    assert max(dots) - min(dots) > 0.5 * axis["width"], axis
    if expect_markers:
        # a marker is drawn at a window's end, where that window's dot is centred
        assert marks and all(min(dots) - 1 <= m <= max(dots) + 1 for m in marks), axis
    labels = axis["labels"]
    assert not any(_overlap(a, b) for i, a in enumerate(labels) for b in labels[i + 1:])

    size = browser.call("Page.getLayoutMetrics", session)["cssContentSize"]
    shot = browser.call(
        "Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
        clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    )
    png = base64.b64decode(shot["data"])
    shot_path.write_bytes(png)
    print(f"report screenshot: {shot_path}")
    if keep := os.environ.get("DRIFTLOOP_REPORT_SCREENSHOT"):
        keep_path = Path(keep)
        keep_path = keep_path.with_name(f"{keep_path.stem}-{shot_path.stem}{keep_path.suffix}")
        keep_path.write_bytes(png)
        print(f"report screenshot kept: {keep_path}")

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
    charts = {c["id"]: c for c in facts["charts"] if c["visible"]}
    expected = {"chart-psi", "chart-ks", "chart-share"}
    if data is not None:
        expected |= {"chart-prediction", "chart-verdicts", "chart-shadow-run-0"}
        expected |= {f"hist-{i}" for i in range(len(first["cards"]))}
    assert expected <= set(charts)
    for chart_id in expected:
        chart = charts[chart_id]
        assert not chart["empty"], chart["id"]
        assert chart["w"] > 200 and chart["h"] > 100, chart
        assert chart["marks"] >= 2, chart

    # hostile names are text: no element was injected, the title was not changed
    assert facts["scripts"] == ["application/json", "classic"] and facts["images"] == 0
    if data is not None:
        assert facts["title"] == f"driftloop report: {data.model}"
    if data is not None and data.model == "churn":  # the case with hostile names
        assert set(HOSTILE) <= set(facts["featureNames"])
        assert "<script>alert(1)</script>" in facts["text"]

    # the screenshot is a picture of the page, with ink inside the PSI chart (decoded
    # from smaller shots of the first screen and of the chart: pure-Python PNG filters
    # over a whole long page take tens of seconds)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000

    def clip(x: float, y: float, w: float, h: float) -> np.ndarray:
        data = base64.b64decode(browser.call(
            "Page.captureScreenshot", session, format="png", captureBeyondViewport=True,
            clip={"x": x, "y": y, "width": w, "height": h, "scale": 1})["data"])
        return decode_png(data)[..., :3].astype(np.float64)

    top = clip(0, 0, min(size["width"], 1280), 900)
    assert top.shape[1] >= 1000
    assert top.std() > 20
    assert (top.min(axis=2) < 200).mean() > 0.02  # not a white page
    psi = charts["chart-psi"]
    box = clip(psi["x"], psi["y"], psi["w"], psi["h"])
    colours = {tuple(p) for p in box.reshape(-1, 3)[::7].astype(int)}
    assert len(colours) > 20, "the PSI chart area is (nearly) one colour"
