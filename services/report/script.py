"""The report page's one script: the window explorer (selector → table and histograms,
sortable columns, more histograms on demand).

It reads the JSON data block written by :mod:`services.report.explorer` and builds
nodes with ``createElement`` / ``textContent`` only (no ``innerHTML``), so no value
from the data can become markup. It loads nothing. The page's Content Security Policy
allows exactly this script, by its sha256 (:data:`SCRIPT_HASH`).
"""

from __future__ import annotations

import base64
import hashlib

SCRIPT = r"""
(function () {
  "use strict";
  var block = document.getElementById("report-data");
  var select = document.getElementById("window-select");
  var legendSvg = document.querySelector("#distributions svg");
  if (!block || !select || !legendSvg) { return; }
  var SVG = legendSvg.namespaceURI;  // the SVG namespace, as the page's own SVG has it
  var data = JSON.parse(block.textContent);
  var table = document.getElementById("feature-table");
  var grid = document.getElementById("window-histograms");
  var more = document.getElementById("histograms-more");
  var info = document.getElementById("window-info");
  var state = {win: 0, col: data.sort, desc: true, all: false};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined && text !== null) { e.textContent = text; }
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  function pct(x) { return (x * 100).toFixed(1) + "%"; }

  function chart(h, i) {
    var n = h.bins.length, W = 540, H = 210, L = 46, R = 10, T = 10, B = 70;
    var vals = h.ref.concat(h.cur).filter(isFinite);
    var top = Math.max.apply(null, vals.concat([1e-9])) * 1.1;
    var s = sv("svg", {id: "hist-" + i, "class": "chart", role: "img", width: W, height: H,
                       viewBox: "0 0 " + W + " " + H, "font-size": "11"});
    s.appendChild(sv("title", {}, h.name + ": reference vs current window"));
    var y = function (v) { return H - B - (H - B - T) * v / top; };
    [0, top / 2 / 1.1, top / 1.1].forEach(function (t) {
      s.appendChild(sv("line", {x1: L, x2: W - R, y1: y(t), y2: y(t), stroke: "#e6e8eb"}));
      s.appendChild(sv("text", {x: L - 5, y: y(t) + 4, "text-anchor": "end",
                                fill: "#6b7280"}, pct(t)));
    });
    var gw = (W - L - R) / Math.max(n, 1), bw = Math.min(18, (gw - 6) / 2);
    h.bins.forEach(function (bin, j) {
      [["reference", "#8da0cb", h.ref[j]], ["current window", "#fc8d62", h.cur[j]]]
        .forEach(function (b, k) {
          if (!isFinite(b[2])) { return; }
          var r = sv("rect", {x: L + j * gw + (gw - 2 * bw) / 2 + k * bw, y: y(b[2]),
                              width: Math.max(bw - 1, 1), height: H - B - y(b[2]),
                              fill: b[1]});
          r.appendChild(sv("title", {}, bin + ": " + b[0] + " " + pct(b[2])));
          s.appendChild(r);
        });
      var cx = L + (j + 0.5) * gw, ty = H - B + 13;
      var t = sv("text", {x: cx, y: ty, "text-anchor": "end", fill: "#6b7280",
                          transform: "rotate(-35 " + cx + " " + ty + ")"},
                 bin.length > 16 ? bin.slice(0, 15) + "…" : bin);
      t.appendChild(sv("title", {}, bin));
      s.appendChild(t);
    });
    s.appendChild(sv("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#6b7280"}));
    return s;
  }

  function card(h, i) {
    var c = el("div", "feature" + (h.drifted ? " drifted" : ""));
    var head = el("h3");
    head.appendChild(el("span", "fname", h.name));
    head.appendChild(el("span", "badge kind", h.kind));
    if (h.drifted) { head.appendChild(el("span", "badge bad", "drifted")); }
    if (h.critical) { head.appendChild(el("span", "badge warn", "critical")); }
    c.appendChild(head);
    c.appendChild(el("p", "stats", h.stats));
    c.appendChild(chart(h, i));
    return c;
  }

  function compare(a, b) {
    var x = a.cells[state.col].v, y = b.cells[state.col].v;
    if (x === y) { return 0; }
    if (x === null) { return 1; }
    if (y === null) { return -1; }
    return (x < y ? -1 : 1) * (state.desc ? -1 : 1);
  }

  function render() {
    var w = data.windows[state.win];
    info.textContent = w.info;
    var body = table.tBodies[0];
    body.textContent = "";
    w.rows.slice().sort(compare).forEach(function (row) {
      var tr = el("tr", row.cls);
      row.cells.forEach(function (cell) {
        var td = el("td", null, cell.t);
        if (cell.title) { td.title = cell.title; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.setAttribute("aria-sort", i === state.col ? (state.desc ? "descending" : "ascending")
                                                    : "none");
    });
    grid.textContent = "";
    var shown = state.all ? w.hist : w.hist.slice(0, data.top);
    shown.forEach(function (h, i) { grid.appendChild(card(h, i)); });
    var rest = w.hist.length - data.top;
    more.hidden = rest <= 0;
    more.textContent = state.all ? "show the top " + data.top + " by PSI only"
                                 : "show the other " + rest + " features";
  }

  select.addEventListener("change", function () {
    state.win = Number(select.value);
    render();
  });
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
    var sortBy = function () {
      state.desc = state.col === i ? !state.desc : true;
      state.col = i;
      render();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter") { sortBy(); } });
  });
  more.addEventListener("click", function () { state.all = !state.all; render(); });
  render();
})();
"""

SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
"""The CSP source that allows :data:`SCRIPT` and nothing else."""
