"""The window explorer: pick a window (drifted windows first) and see its per-feature
table and histograms.

The page carries, per selectable window, the table's cells (each a sort key and the
text shown, formatted here) and each feature's histogram, as one JSON data block that
the page's own script (:mod:`services.report.script`) turns into DOM nodes with
``textContent``, never markup, so names from the data stay text. The JSON is written
with ``<``, ``>`` and ``&`` escaped, so no value can close the data block.

The table is Evidently's data-drift table for one window: per feature its kind, test,
statistic and p-value, PSI, the thresholds, whether it drifted, and reference vs current
mean / std / quantiles / missing share. The champion's prediction-drift entry, when the
report has one, is its first row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from services.report.fmt import fmt_num, fmt_p, fmt_share, fmt_sig, fmt_time
from services.report.svg import esc, legend
from streams.contracts import DriftReport, FeatureDrift, Summary

MAX_WINDOWS = 40
"""Windows offered in the selector: every drifted one first (most drifted first), then
the newest undrifted ones, up to this many."""
TOP_HISTOGRAMS = 8
"""Histograms shown at first, highest PSI first; the rest on demand."""

COLUMNS: tuple[tuple[str, str], ...] = (
    ("feature", "feature name"),
    ("kind", "numeric, categorical, or the model's prediction"),
    ("test", "the significance test: KS (numeric) or chi-square (categorical)"),
    ("statistic", "KS statistic D (numeric) or total variation distance (categorical)"),
    ("p-value", "the test's p-value"),
    ("PSI", "population stability index over the reference's bins"),
    ("threshold", "drifted when PSI ≥ this, or p < level with effect ≥ the floor"),
    ("drifted", "the policy's verdict for this feature in this window"),
    ("ref mean", "reference mean"),
    ("cur mean", "current window mean"),
    ("ref std", "reference standard deviation"),
    ("cur std", "current window standard deviation"),
    ("ref p5 · p25 · p50 · p75 · p95", "reference quantiles"),
    ("cur p5 · p25 · p50 · p75 · p95", "current window quantiles"),
    ("ref missing", "reference missing share"),
    ("cur missing", "current window missing share"),
)
SORT_PSI = 5
REFERENCE_COLOR = "#8da0cb"  # the page's script draws the histograms in these colours
WINDOW_COLOR = "#fc8d62"


def window_order(reports: Sequence[DriftReport], limit: int = MAX_WINDOWS) -> list[int]:
    """Indices of the windows to offer: drifted ones first (highest drifted share, then
    newest), then undrifted ones newest first, at most ``limit``; when there are more,
    a quarter of the places are kept for the newest undrifted windows (so a model that
    drifted for long still shows what calm looks like, and how it is now)."""
    drifted = sorted((i for i, r in enumerate(reports) if r.drifted),
                     key=lambda i: (-reports[i].drifted_share, -i))
    calm = sorted((i for i, r in enumerate(reports) if not r.drifted), key=lambda i: -i)
    n_calm = min(len(calm), max(limit - len(drifted), limit // 4))
    return (drifted[: limit - n_calm] + calm[:n_calm])[:limit]


def _cell(value: float | str | None, text: str, title: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"v": value, "t": text}
    if title:
        out["title"] = title
    return out


def _quantiles(s: Summary | None) -> dict[str, Any]:
    if s is None or not s.quantiles:
        return _cell(None, "—")
    text = " · ".join(fmt_sig(q, 3) for q in s.quantiles)
    levels = ", ".join(f"p{round(lv * 100)}" for lv in s.levels)
    median = s.quantiles[len(s.quantiles) // 2]
    return _cell(median, text, f"{levels}: {text}")


def _summary_cells(f: FeatureDrift) -> list[dict[str, Any]]:
    ref, cur = f.reference_summary, f.window_summary

    def num(s: Summary | None, attr: str) -> dict[str, Any]:
        value = getattr(s, attr) if s is not None else None
        return _cell(value, fmt_sig(value))

    def missing(s: Summary | None, fallback: float | None) -> dict[str, Any]:
        value = s.missing_share if s is not None and s.missing_share is not None else fallback
        return _cell(value, fmt_share(value))

    return [num(ref, "mean"), num(cur, "mean"), num(ref, "std"), num(cur, "std"),
            _quantiles(ref), _quantiles(cur), missing(ref, None), missing(cur, f.missing_share)]


def feature_row(f: FeatureDrift, level: float, psi_threshold: float, effect_floor: float,
                prediction: bool = False) -> dict[str, Any]:
    """One table row: cells in :data:`COLUMNS` order, each ``{"v": sort key, "t": text}``."""
    if f.ks_statistic is not None:
        test, stat, p = "KS", _cell(f.ks_statistic, f"D {fmt_num(f.ks_statistic)}"), f.ks_pvalue
    elif f.tvd is not None:
        test, stat, p = "χ²", _cell(f.tvd, f"TVD {fmt_num(f.tvd)}"), f.chi2_pvalue
    else:
        test, stat, p = "PSI only", _cell(None, "—"), None
    kind = f"prediction ({f.kind})" if prediction else f.kind
    verdict = "drifted" if f.drifted else "no"
    if f.critical and f.drifted:
        verdict += " (critical)"
    threshold = (f"PSI ≥ {fmt_num(psi_threshold, 2)} · p < {fmt_p(level)} "
                 f"with effect ≥ {fmt_num(effect_floor, 3)}")
    return {
        "cls": " ".join(c for c in ("drifted" if f.drifted else "",
                                    "prediction" if prediction else "") if c),
        "cells": [
            _cell(f.name.lower(), f.name), _cell(kind, kind), _cell(test, test), stat,
            _cell(p, fmt_p(p)), _cell(f.psi, fmt_num(f.psi)),
            _cell(psi_threshold, threshold), _cell(int(f.drifted), verdict),
            *_summary_cells(f),
        ],
    }


def histogram(f: FeatureDrift, prediction: bool = False) -> dict[str, Any]:
    """One feature's histogram and headline for the page's script to draw."""
    stat = (f"KS D {fmt_num(f.ks_statistic)} (p {fmt_p(f.ks_pvalue)})"
            if f.ks_statistic is not None else
            f"TVD {fmt_num(f.tvd)} (χ² p {fmt_p(f.chi2_pvalue)})" if f.tvd is not None else "")
    return {
        "name": f.name, "kind": ("prediction · " if prediction else "") + f.kind,
        "drifted": f.drifted, "critical": f.critical, "psi": f.psi,
        "stats": " · ".join(x for x in (f"PSI {fmt_num(f.psi)}", stat,
                                        f"missing {fmt_share(f.missing_share)}") if x),
        "bins": list(f.bins), "ref": list(f.reference_shares), "cur": list(f.window_shares),
    }


def window_payload(r: DriftReport, psi_threshold: float, effect_floor: float,
                   alpha: float) -> dict[str, Any]:
    """Everything the explorer shows of one window."""
    level = alpha / max(len(r.features), 1)
    entries = [(f, False) for f in r.features]
    if r.prediction is not None:
        entries.insert(0, (r.prediction, True))
    w = r.window
    verdict = "DRIFTED" if r.drifted else "no drift"
    label = (f"{'● ' if r.drifted else ''}{fmt_time(w.end_time)} · {verdict} · "
             f"{fmt_share(r.drifted_share)} of features · {w.n_events:,} events")
    return {
        "id": r.event_id, "label": label, "drifted": r.drifted,
        "info": (f"Window {fmt_time(w.start_time)} → {fmt_time(w.end_time)} UTC (event "
                 f"time), reported {fmt_time(r.created_at)} UTC · {w.n_events:,} events · "
                 f"{fmt_share(r.drifted_share)} of features drifted · {verdict} · "
                 f"reference snapshot {r.reference_snapshot_id} · champion "
                 + (f"v{r.champion_version}" if r.champion_version is not None else "—")
                 + f" · report {r.event_id}"),
        "rows": [feature_row(f, level, psi_threshold, effect_floor, pred) for f, pred in entries],
        "hist": sorted((histogram(f, pred) for f, pred in entries),
                       key=lambda h: (not h["kind"].startswith("prediction"), -h["psi"])),
    }


def explorer_payload(reports: Sequence[DriftReport], psi_threshold: float,
                     effect_floor: float, alpha: float) -> dict[str, Any]:
    """The JSON the page's script reads: columns, default sort, windows in menu order."""
    order = window_order(reports)
    return {
        "columns": [name for name, _ in COLUMNS], "sort": SORT_PSI, "top": TOP_HISTOGRAMS,
        "windows": [window_payload(reports[i], psi_threshold, effect_floor, alpha)
                    for i in order],
        "total": len(reports),
    }


def data_block(payload: dict[str, Any], block_id: str = "report-data") -> str:
    """``payload`` as an inert JSON data block (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(payload, ensure_ascii=False, allow_nan=False, default=str)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="{esc(block_id)}">{text}</script>'


def explorer_html(payload: dict[str, Any]) -> str:
    """The explorer's static part: selector, window line, table head, chart area (the
    script fills them from the data block)."""
    windows = payload["windows"]
    options = "".join(
        f'<option value="{i}"{" selected" if i == 0 else ""}>{esc(w["label"])}</option>'
        for i, w in enumerate(windows)
    )
    shown = (f"{len(windows)} of {payload['total']} windows, drifted ones first"
             if len(windows) < payload["total"] else "drifted windows first")
    head = "".join(
        f'<th data-col="{i}" title="{esc(tip)}" tabindex="0">{esc(name)}</th>'
        for i, (name, tip) in enumerate(COLUMNS)
    )
    return (
        f'<label class="picker">Window ({esc(shown)}): <select id="window-select">'
        f"{options}</select></label>"
        '<p id="window-info" class="muted"></p>'
        '<h3>Per-feature drift in this window <span class="muted">(click a column to '
        "sort)</span></h3>"
        '<div class="scroll"><table id="feature-table" class="features-table"><thead><tr>'
        f"{head}</tr></thead><tbody></tbody></table></div>"
        "<h3>Reference vs current distributions in this window</h3>"
        + legend([("reference", REFERENCE_COLOR, ""), ("current window", WINDOW_COLOR, "")]) +
        '<div id="window-histograms" class="features"></div>'
        '<button id="histograms-more" type="button"></button>'
        "<noscript><p class=\"empty\">The window explorer needs the page's own script "
        "(inline, no network).</p></noscript>"
    )
