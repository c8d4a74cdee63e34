"""The HTML report of one model, built from plain data (events and registry manifests).

Pure: :func:`render_report` takes a :class:`ReportData` and returns one self-contained
HTML page (inline CSS and SVG, no scripts, no external resources; a Content Security
Policy forbids loading anything). Every name and value that comes from the data is
escaped, so a feature called ``<script>…`` shows up as text.

Sections: summary, reference vs current distributions (the latest drift report's
histograms), PSI / KS / drifted share per window with their thresholds and the retrain
requests and promotions marked on the time axis, the retrain → candidate → verdict chain,
shadow verdicts (champion vs candidate metric) and the paired-loss curves of candidates
still in shadow, and the lineage of registry versions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.registry.manifest import Manifest
from services.report.svg import (
    Marker,
    Rule,
    Series,
    bar_chart,
    color_for,
    empty_chart,
    esc,
    legend,
    line_chart,
)
from streams.contracts import (
    DriftReport,
    FeatureDrift,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)

REFERENCE_COLOR = "#8da0cb"
WINDOW_COLOR = "#fc8d62"
CHAMPION_COLOR = "#4e79a7"
CANDIDATE_COLOR = "#f28e2b"
RETRAIN_COLOR = "#8e44ad"
PROMOTION_COLOR = "#27ae60"
ROLLBACK_COLOR = "#d35400"
MAX_TABLE_WINDOWS = 60
TIMELINE_WIDTH = 1000
SECTION_IDS = ("summary", "distributions", "drift-timeline", "retrain-events", "shadow", "lineage")


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The drift policy numbers drawn on the charts (the collector fills them from the
    model's DriftPolicy; these defaults are DESIGN.md's)."""

    psi: float = 0.2
    ks_statistic: float = 0.1
    ks_alpha: float = 0.01
    drifted_share: float = 0.3


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, as plain data (events already filtered to one model)."""

    model: str
    generated_at: datetime
    drift_reports: Sequence[DriftReport] = ()
    retrain_requests: Sequence[RetrainRequest] = ()
    candidates: Sequence[ModelCandidate] = ()
    verdicts: Sequence[ShadowVerdict] = ()
    promotions: Sequence[ModelPromotion] = ()
    versions: Sequence[Manifest] = ()  # registry manifests, any order
    aliases: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # name -> record
    shadow_runs: Sequence[Mapping[str, Any]] = ()  # the shadow book's running candidates
    thresholds: Thresholds = field(default_factory=Thresholds)
    since: datetime | None = None
    notes: Sequence[str] = ()  # remarks about the data sources


# -- formatting ------------------------------------------------------------------------


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell: fixed decimals, scientific when tiny or huge."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def fmt_p(value: float | None) -> str:
    """A p-value: four decimals, scientific below 1e-4."""
    if value is None:
        return "—"
    return f"{value:.1e}" if 0 < value < 1e-4 else f"{value:.4f}"


def fmt_share(value: float | None) -> str:
    """A share as a percentage."""
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"


def fmt_time(value: datetime | str | None) -> str:
    """UTC time to the second (ISO strings are parsed; anything else is shown escaped)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return esc(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _short(text: str | None, n: int = 12) -> str:
    if not text:
        return "—"
    label = text if len(text) <= n else text[:n] + "…"
    return f'<span title="{esc(text)}"><code>{esc(label)}</code></span>'


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {esc(kind)}">{esc(text)}</span>'


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """A table; ``head`` is escaped, cells are already-safe HTML."""
    h = "".join(f"<th>{esc(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _section(section_id: str, title: str, body: str, intro: str = "") -> str:
    lead = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{section_id}"><h2>{esc(title)}</h2>{lead}{body}</section>'


def _empty(text: str) -> str:
    return f'<p class="empty">{esc(text)}</p>'


# -- sections --------------------------------------------------------------------------


def _champion(data: ReportData) -> int | None:
    record = data.aliases.get("champion")
    if record and record.get("version") is not None:
        return int(record["version"])
    if data.promotions:
        return data.promotions[-1].new_champion
    return None


def _summary(data: ReportData) -> str:
    reports = data.drift_reports
    drifted = sum(r.drifted for r in reports)
    promoted = sum(v.decision == "promote" for v in data.verdicts)
    champion = _champion(data)
    cards = [
        ("champion", f"v{champion}" if champion is not None else "—"),
        ("registry versions", fmt_num(len(data.versions))),
        ("drift windows", fmt_num(len(reports))),
        ("drifted windows", fmt_num(drifted)),
        ("retrain requests", fmt_num(len(data.retrain_requests))),
        ("verdicts (promoted)", f"{len(data.verdicts):,} ({promoted:,})"),
        ("last window end", fmt_time(reports[-1].window.end_time) if reports else "—"),
    ]
    body = '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{v}</div></div>'
        for k, v in cards
    ) + "</div>"
    t = data.thresholds
    body += (
        '<p class="policy">Drift policy drawn: PSI ≥ '
        f"{fmt_num(t.psi)}, or effect (KS statistic; categorical: TVD) ≥ "
        f"{fmt_num(t.ks_statistic)} with test p &lt; {fmt_num(t.ks_alpha)} / "
        "n<sub>features</sub>; window drifted when ≥ "
        f"{fmt_share(t.drifted_share)} of the features drifted (or a critical one).</p>"
    )
    if data.notes:
        body += '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in data.notes) + "</ul>"
    return _section("summary", "Summary", body)


def _feature_card(index: int, f: FeatureDrift) -> str:
    badges = [_badge(f.kind, "kind")]
    if f.drifted:
        badges.append(_badge("drifted", "bad"))
    if f.critical:
        badges.append(_badge("critical", "warn"))
    tvd = getattr(f, "tvd", None)
    if f.ks_statistic is not None:
        ks = f" · KS <b>{fmt_num(f.ks_statistic)}</b> (p {fmt_p(f.ks_pvalue)})"
    elif tvd is not None:
        ks = f" · TVD <b>{fmt_num(tvd)}</b> (χ² p {fmt_p(getattr(f, 'chi2_pvalue', None))})"
    else:
        ks = ""
    stats = f"PSI <b>{fmt_num(f.psi)}</b>{ks} · missing {fmt_share(f.missing_share)}"
    chart_id = f"chart-dist-{index}"
    if f.bins and f.reference_shares and f.window_shares:
        chart = bar_chart(
            chart_id,
            f"{f.name}: reference vs current window",
            list(f.bins),
            [
                ("reference", REFERENCE_COLOR, list(f.reference_shares)),
                ("current window", WINDOW_COLOR, list(f.window_shares)),
            ],
            value_label=fmt_share,
            max_width=540,
        )
    else:
        chart = empty_chart(chart_id, "no histogram in this report", 540)
    return (
        f'<div class="feature{" drifted" if f.drifted else ""}">'
        f'<h3><span class="fname">{esc(f.name)}</span> {" ".join(badges)}</h3>'
        f'<p class="stats">{stats}</p>{chart}</div>'
    )


def _distributions(data: ReportData) -> str:
    if not data.drift_reports:
        return _section("distributions", "Reference vs current distributions",
                        _empty("No drift reports for this model in the selected range."))
    latest = data.drift_reports[-1]
    w = latest.window
    intro = (
        f"Latest window {fmt_time(w.start_time)} → {fmt_time(w.end_time)} UTC, "
        f"{fmt_num(w.n_events)} events, reference snapshot "
        f"{_short(latest.reference_snapshot_id, 24)}, "
        f"drifted share {fmt_share(latest.drifted_share)} "
        + (_badge("window drifted", "bad") if latest.drifted else _badge("no drift", "ok"))
    )
    key = legend([("reference", REFERENCE_COLOR, ""), ("current window", WINDOW_COLOR, "")])
    cards = "".join(_feature_card(i, f) for i, f in enumerate(latest.features))
    return _section("distributions", "Reference vs current distributions",
                    key + f'<div class="features">{cards}</div>', intro)


def _markers(data: ReportData) -> list[Marker]:
    out = [
        Marker(
            _epoch(r.requested_at), "retrain",
            f"retrain request {r.request_id} ({r.reason}) at {fmt_time(r.requested_at)} UTC, "
            f"base v{r.base_version}",
            RETRAIN_COLOR,
        )
        for r in data.retrain_requests
    ]
    out += [
        Marker(
            _epoch(p.promoted_at), f"champion v{p.new_champion}",
            f"{p.cause}: champion v{p.previous_champion} → v{p.new_champion} at "
            f"{fmt_time(p.promoted_at)} UTC",
            ROLLBACK_COLOR if p.cause == "rollback" else PROMOTION_COLOR,
        )
        for p in data.promotions
    ]
    return out


def _stat(f: FeatureDrift, stat: str) -> tuple[float | None, str]:
    """``psi``, or ``effect``: the KS statistic (numeric) or the total variation
    distance (categorical), both held to the policy's effect floor."""
    if stat == "psi":
        return f.psi, "PSI"
    if f.ks_statistic is not None:
        return f.ks_statistic, "KS statistic"
    return getattr(f, "tvd", None), "TVD"


def _feature_series(
    reports: Sequence[DriftReport], stat: str
) -> tuple[list[Series], list[tuple[str, str, str]]]:
    names: list[str] = []
    for r in reports:
        for f in r.features:
            if f.name not in names:
                names.append(f.name)
    series, keys = [], []
    for i, name in enumerate(names):
        pts: list[tuple[float, float]] = []
        titles: list[str] = []
        for r in reports:
            for f in r.features:
                if f.name != name:
                    continue
                value, what = _stat(f, stat)
                if value is not None:
                    pts.append((_epoch(r.window.end_time), float(value)))
                    titles.append(
                        f"{name} {what} {fmt_num(value)} at "
                        f"{fmt_time(r.window.end_time)} UTC" + (" (drifted)" if f.drifted else "")
                    )
        if pts:
            color, dash = color_for(i)
            series.append(Series(name, pts, color, dash, titles))
            keys.append((name, color, dash))
    return series, keys


def _timeline(data: ReportData) -> str:
    reports = data.drift_reports
    if not reports:
        return _section("drift-timeline", "Drift over windows",
                        _empty("No drift reports for this model in the selected range."))
    t = data.thresholds
    markers = _markers(data)
    marker_key = legend(
        [("retrain request", RETRAIN_COLOR, "4 3"), ("promotion", PROMOTION_COLOR, "4 3"),
         ("rollback", ROLLBACK_COLOR, "4 3"), ("threshold", "#c0392b", "6 4")]
    )
    psi_series, psi_keys = _feature_series(reports, "psi")
    ks_series, ks_keys = _feature_series(reports, "effect")
    share = Series(
        "drifted share",
        [(_epoch(r.window.end_time), r.drifted_share) for r in reports],
        "#34495e",
        point_titles=[
            f"{fmt_share(r.drifted_share)} drifted at {fmt_time(r.window.end_time)} UTC"
            for r in reports
        ],
    )
    body = [
        marker_key,
        "<h3>PSI per feature</h3>",
        line_chart("chart-psi", "PSI per feature over windows", psi_series, time_axis=True,
                   rules=[Rule(t.psi, f"PSI {fmt_num(t.psi, 2)}")], markers=markers,
                   x_label="window end (UTC)", width=TIMELINE_WIDTH),
        legend(psi_keys),
        "<h3>KS statistic per feature (categorical: total variation distance)</h3>",
        line_chart("chart-ks", "KS statistic / TVD per feature over windows", ks_series,
                   time_axis=True, rules=[Rule(t.ks_statistic, f"KS {fmt_num(t.ks_statistic, 2)}")],
                   markers=markers, y_max=1.0, x_label="window end (UTC)", width=TIMELINE_WIDTH),
        legend(ks_keys),
        "<h3>Share of drifted features</h3>",
        line_chart("chart-share", "Drifted share per window", [share], time_axis=True,
                   rules=[Rule(t.drifted_share, f"share {fmt_share(t.drifted_share)}")],
                   markers=markers, y_max=1.0, x_label="window end (UTC)", width=TIMELINE_WIDTH),
    ]
    shown = reports[-MAX_TABLE_WINDOWS:]
    rows = [
        [
            fmt_time(r.window.start_time), fmt_time(r.window.end_time),
            fmt_num(r.window.n_events), fmt_share(r.drifted_share),
            _badge("drifted", "bad") if r.drifted else _badge("ok", "ok"),
            ", ".join(esc(f.name) for f in r.features if f.drifted) or "—",
            fmt_num(max((f.psi for f in r.features), default=None)),
            f"v{r.champion_version}" if r.champion_version is not None else "—",
        ]
        for r in reversed(shown)
    ]
    caption = (
        f"<p class=\"muted\">Latest {len(shown)} of {len(reports)} windows, newest first.</p>"
    )
    body.append("<h3>Windows</h3>" + caption + _table(
        ["start (UTC)", "end (UTC)", "events", "drifted share", "verdict", "drifted features",
         "max PSI", "champion"], rows, "windows"))
    return _section("drift-timeline", "Drift over windows", "".join(body),
                    "Statistics of each closed window against the champion's training "
                    "snapshot; dashed red lines are the policy thresholds.")


def _version_of_request(data: ReportData, request_id: str) -> int | None:
    for m in data.versions:
        if m.request_id == request_id:
            return m.version
    for c in data.candidates:
        if c.request_id == request_id:
            return c.version
    return None


def _retrain(data: ReportData) -> str:
    if not data.retrain_requests:
        return _section("retrain-events", "Retrain requests",
                        _empty("No retrain requests for this model in the selected range."))
    verdict_of = {v.candidate: v for v in data.verdicts}
    promoted = {p.new_champion for p in data.promotions if p.cause != "rollback"}
    rows = []
    for r in reversed(data.retrain_requests):
        version = _version_of_request(data, r.request_id)
        verdict = verdict_of.get(version) if version is not None else None
        if verdict is None:
            outcome = "—" if version is None else "in shadow"
        else:
            outcome = _badge(verdict.decision, "ok" if verdict.decision == "promote" else "bad")
        if version is not None and version in promoted:
            outcome += " " + _badge("champion", "ok")
        rows.append([
            fmt_time(r.requested_at), esc(r.reason),
            f"v{r.base_version}" if r.base_version is not None else "—",
            f"{fmt_time(r.window_start)} → {fmt_time(r.window_end)}",
            fmt_num(len(r.drift_report_ids)), _short(r.request_id),
            f"v{version}" if version is not None else "—", outcome,
        ])
    return _section(
        "retrain-events", "Retrain requests",
        _table(["requested (UTC)", "reason", "base", "window (UTC)", "drift reports",
                "request id", "candidate", "outcome"], rows, "retrain"),
        "Each request (also marked on the drift charts), the version trained for it and "
        "what the shadow evaluation decided.",
    )


def _run_curve(index: int, run: Mapping[str, Any]) -> str:
    points = [*run.get("snapshots", [])]
    current = run.get("moments") or {}
    if current.get("n") and (not points or current["n"] > points[-1].get("n", 0)):
        points.append(current)
    champ = [(float(p["n"]), float(p["mean_champion"])) for p in points if p.get("n")]
    cand = [(float(p["n"]), float(p["mean_candidate"])) for p in points if p.get("n")]
    version, champion = run.get("version"), run.get("champion")
    title = f"candidate v{version} vs champion v{champion}: mean paired loss"

    def titles(who: str, pts: list[tuple[float, float]]) -> list[str]:
        return [f"{who} {fmt_num(y, 4)} after {int(x):,} pairs" for x, y in pts]

    chart = line_chart(
        f"chart-shadow-run-{index}", title,
        [Series(f"champion v{champion}", champ, CHAMPION_COLOR,
                point_titles=titles("champion", champ)),
         Series(f"candidate v{version}", cand, CANDIDATE_COLOR,
                point_titles=titles("candidate", cand))],
        time_axis=False, zero_based=False, x_label="labelled pairs", width=620,
        height=220,
    )
    n = current.get("n", 0)
    return (
        f"<h3>{esc(title)}</h3><p class=\"muted\">started {fmt_time(run.get('started_at'))} UTC, "
        f"{fmt_num(int(n))} pairs so far, request {_short(run.get('request_id'))}</p>{chart}"
    )


def _shadow(data: ReportData) -> str:
    parts = []
    if data.verdicts:
        cats = [f"v{v.candidate} vs v{v.champion}" for v in data.verdicts]
        parts.append(legend([("champion", CHAMPION_COLOR, ""), ("candidate", CANDIDATE_COLOR, "")]))
        parts.append(bar_chart(
            "chart-verdicts", "Shadow verdicts: champion vs candidate metric", cats,
            [("champion", CHAMPION_COLOR, [v.champion_metric for v in data.verdicts]),
             ("candidate", CANDIDATE_COLOR, [v.candidate_metric for v in data.verdicts])],
            value_label=lambda x: fmt_num(x, 4),
        ))
        rows = [
            [
                fmt_time(v.decided_at), f"v{v.candidate}", f"v{v.champion}", fmt_num(v.samples),
                esc(v.metric), fmt_num(v.champion_metric, 4), fmt_num(v.candidate_metric, 4),
                fmt_share(v.test.relative_improvement), fmt_p(v.test.p_value),
                _badge(v.decision, "ok" if v.decision == "promote" else "bad"), esc(v.reason),
            ]
            for v in reversed(data.verdicts)
        ]
        parts.append(_table(
            ["decided (UTC)", "candidate", "champion", "pairs", "metric", "champion",
             "candidate", "improvement", "p-value", "decision", "reason"], rows, "verdicts"))
    else:
        parts.append(_empty("No shadow verdicts for this model in the selected range."))
    parts.append("<h3>Candidates in shadow now</h3>")
    if data.shadow_runs:
        parts.extend(_run_curve(i, run) for i, run in enumerate(data.shadow_runs))
    else:
        parts.append(_empty(
            "No candidate is in shadow now (per-look loss curves exist only while a "
            "candidate runs: the shadow service keeps its paired statistics at each "
            "planned look in its state file until the verdict)."
        ))
    if data.promotions:
        rows = [
            [fmt_time(p.promoted_at), f"v{p.new_champion}",
             f"v{p.previous_champion}" if p.previous_champion is not None else "—",
             _badge(p.cause, "warn" if p.cause == "rollback" else "ok")]
            for p in reversed(data.promotions)
        ]
        parts.append("<h3>Promotions</h3>" + _table(
            ["promoted (UTC)", "new champion", "previous", "cause"], rows, "promotions"))
    return _section("shadow", "Shadow evaluation", "".join(parts),
                    "Champion and candidate scored on the same labelled events; the metric "
                    "is the mean paired loss (lower is better).")


def _metrics(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return "—"
    return "<br>".join(
        f"{esc(k)}={fmt_num(v, 4) if isinstance(v, int | float) else esc(v)}"
        for k, v in sorted(metrics.items())
    )


def _alias_badges(version: int, aliases: Mapping[str, Mapping[str, Any]]) -> str:
    names = sorted(a for a, rec in aliases.items() if rec.get("version") == version)
    return " ".join(_badge(a, "ok" if a == "champion" else "kind") for a in names)


def _tree(versions: Sequence[Manifest], aliases: Mapping[str, Mapping[str, Any]]) -> str:
    known = {m.version for m in versions}
    children: dict[int | None, list[Manifest]] = {}
    for m in sorted(versions, key=lambda m: m.version):
        parent = m.lineage.parent_version
        children.setdefault(parent if parent in known else None, []).append(m)
    seen: set[int] = set()

    def node(m: Manifest) -> str:
        v = m.version
        if v in seen:
            return ""
        seen.add(v)
        lin = m.lineage
        label = (
            f'<span class="node">v{v}</span> {_alias_badges(v, aliases)} '
            f'<span class="muted">{esc(lin.reason or "initial")} · snapshot '
            f'{_short(lin.training_snapshot_id, 20)}</span>'
        )
        kids = "".join(node(c) for c in children.get(v, []))
        return f"<li>{label}{f'<ul>{kids}</ul>' if kids else ''}</li>"

    return '<ul class="tree">' + "".join(node(m) for m in children.get(None, [])) + "</ul>"


def _lineage(data: ReportData) -> str:
    if not data.versions:
        return _section("lineage", "Lineage of versions",
                        _empty("The registry has no versions of this model."))
    rows = []
    for m in sorted(data.versions, key=lambda m: m.version, reverse=True):
        lin = m.lineage
        v = m.version
        parent = lin.parent_version
        rows.append([
            f"<b>v{v}</b>", f"v{parent}" if parent is not None else "—",
            _short(lin.request_id), esc(lin.reason or "—"),
            _short(lin.training_snapshot_id, 20), _short(lin.parent_snapshot_id, 20),
            _metrics(m.metrics), fmt_time(m.created_at),
            _alias_badges(v, data.aliases) or "—",
        ])
    alias_rows = [
        [esc(name), f"v{rec.get('version')}",
         f"v{rec['previous']}" if rec.get("previous") is not None else "—",
         fmt_time(rec.get("updated_at"))]
        for name, rec in sorted(data.aliases.items())
    ]
    body = (
        "<h3>Tree</h3>" + _tree(data.versions, data.aliases) + "<h3>Versions</h3>"
        + _table(["version", "parent", "request id", "reason", "training snapshot",
                  "parent snapshot", "metrics", "created (UTC)", "aliases"], rows, "lineage")
    )
    if alias_rows:
        body += "<h3>Aliases</h3>" + _table(
            ["alias", "version", "previous", "updated (UTC)"], alias_rows, "aliases")
    return _section("lineage", "Lineage of versions", body,
                    "Registry manifests: each version's parent, the request and snapshot it "
                    "was trained from, and its validation metrics.")


CSS = """
:root{--fg:#1f2933;--muted:#6b7280;--line:#e5e7eb;--bg:#fff;--panel:#f8fafc}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Liberation Sans",
Arial,sans-serif;color:var(--fg);background:var(--bg)}
header{padding:18px 28px;background:#1f2933;color:#fff}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#cbd5e1}
nav{padding:8px 28px;background:var(--panel);border-bottom:1px solid var(--line)}
nav a{margin-right:16px;color:#2563eb;text-decoration:none}
main{padding:0 28px 40px;max-width:1240px}
section{margin-top:26px}
h2{font-size:18px;border-bottom:2px solid var(--line);padding-bottom:4px}
h3{font-size:14px;margin:18px 0 6px}
.intro,.muted,.policy{color:var(--muted)}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid var(--line);border-radius:6px;padding:8px 14px;min-width:130px;
background:var(--panel)}
.card .k{color:var(--muted);font-size:12px}.card .v{font-size:20px;font-weight:600}
.features{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:14px}
.feature{border:1px solid var(--line);border-radius:6px;padding:6px 12px 10px}
.feature.drifted{border-color:#f5b7b1;background:#fffafa}
.feature h3{margin:4px 0}.fname{font-family:ui-monospace,Menlo,Consolas,monospace}
.stats{margin:2px 0 6px;color:var(--muted)}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:11px;font-weight:600;
background:#e5e7eb;color:#374151;vertical-align:middle}
.badge.bad{background:#fde2e1;color:#b42318}.badge.ok{background:#dcfce7;color:#166534}
.badge.warn{background:#fef3c7;color:#92400e}.badge.kind{background:#e0e7ff;color:#3730a3}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 9px;text-align:left;vertical-align:top}
th{background:var(--panel);font-weight:600}
code{font-size:12px}
svg.chart{display:block;max-width:100%;height:auto;margin:4px 0}
ul.legend{list-style:none;padding:0;margin:4px 0;display:flex;flex-wrap:wrap;gap:4px 14px}
ul.legend li{display:flex;align-items:center;gap:5px;font-size:12px}
ul.tree,ul.tree ul{list-style:none;padding-left:20px;margin:0}
ul.tree{padding-left:0}
ul.tree li{position:relative;padding:2px 0 2px 14px;border-left:1px solid #cbd5e1}
ul.tree li::before{content:"";position:absolute;left:0;top:12px;width:10px;
border-top:1px solid #cbd5e1}
.node{font-weight:700}
.empty{color:var(--muted);font-style:italic}
.notes{color:#92400e}
footer{padding:14px 28px;color:var(--muted);border-top:1px solid var(--line)}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render_report(data: ReportData) -> str:
    """The complete, self-contained HTML page of ``data``."""
    since = f" · events since {fmt_time(data.since)} UTC" if data.since else ""
    nav = "".join(
        f'<a href="#{sid}">{esc(title)}</a>'
        for sid, title in zip(
            SECTION_IDS,
            ("Summary", "Distributions", "Drift over windows", "Retrain requests", "Shadow",
             "Lineage"),
            strict=True,
        )
    )
    body = "".join((
        _summary(data), _distributions(data), _timeline(data), _retrain(data), _shadow(data),
        _lineage(data),
    ))
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>driftloop report: {esc(data.model)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>driftloop report: <span class=\"model\">{esc(data.model)}</span></h1>"
        f"<p>generated {fmt_time(data.generated_at)} UTC{since}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        "<footer>Sources: the drift.reports, retrain.requests, models.candidates, "
        "models.verdicts and models.promotions topics, the model registry and the shadow "
        "service's state. Times are UTC.</footer></body></html>\n"
    )
