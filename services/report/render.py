"""The HTML report of one model, built from plain data (events and registry manifests).

Pure: :func:`render_report` takes a :class:`ReportData` and returns one self-contained
HTML page (inline CSS, SVG and one inline script, no external resources; a Content
Security Policy forbids loading anything and runs that script alone, by its hash).
Every name and value that comes from the data is escaped (or, in the explorer's data
block, JSON-escaped and put in the page as text), so a feature called ``<script>…``
shows up as text.

Sections: summary; the window explorer (a window selector, drifted windows first, that
drives a sortable per-feature table and that window's histograms, see
:mod:`services.report.explorer`); PSI / KS / drifted share and prediction drift per
window over one event-time axis, with the retrain requests and promotions placed on it
(wall-clock times in their tooltips), the top features by PSI drawn and the rest on
demand; the retrain → candidate → verdict chain; shadow verdicts (each with its metric)
and the paired-loss curves of candidates still in shadow; the lineage of versions.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.registry.manifest import Manifest
from services.report.explorer import data_block, explorer_html, explorer_payload
from services.report.fmt import (
    fmt_metric,
    fmt_num,
    fmt_p,
    fmt_share,
    fmt_sig,
    fmt_time,
    full_id,
)
from services.report.script import SCRIPT, SCRIPT_HASH
from services.report.svg import (
    Marker,
    Rule,
    Series,
    bar_chart,
    color_for,
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
TOP_FEATURES = 8
"""Features drawn in the PSI and KS charts at first (highest PSI over the windows); the
rest sit in further charts behind a disclosure, as many per chart."""
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


def _epoch(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _short(text: str | None, n: int = 12) -> str:
    return full_id(text, n)


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


def _prediction_card(reports: Sequence[DriftReport]) -> str:
    entries = [r.prediction for r in reports if r.prediction is not None]
    if not entries:
        return "off"
    return f"{sum(p.drifted for p in entries):,} of {len(entries):,} windows drifted"


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
        ("prediction drift", _prediction_card(reports)),
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


def _distributions(payload: dict[str, Any] | None) -> str:
    title = "Window explorer: per-feature drift and distributions"
    if payload is None:
        return _section("distributions", title,
                        _empty("No drift reports for this model in the selected range."))
    return _section(
        "distributions", title, explorer_html(payload),
        "Pick a window (drifted windows first): the table lists every feature's test, "
        "statistic, p-value, PSI and thresholds with reference vs current summary "
        "statistics, and the histograms show that window against the reference.",
    )


def event_time_of(reports: Sequence[DriftReport], wall: datetime) -> float:
    """Where a wall-clock moment (a promotion) sits on the event-time axis: at the end
    of the last window reported before it (its report's ``created_at``), or at the
    first window's start when it came before every report."""
    ordered = sorted(reports, key=lambda r: _epoch(r.created_at))
    i = bisect_right([_epoch(r.created_at) for r in ordered], _epoch(wall))
    if i == 0:
        return _epoch(ordered[0].window.start_time)
    return _epoch(ordered[i - 1].window.end_time)


def _markers(data: ReportData) -> list[Marker]:
    """Retrain requests at the end of the window range they answer (event time);
    promotions after the last window reported before them. Wall times in tooltips."""
    out = [
        Marker(
            _epoch(r.window_end), "retrain",
            f"retrain request {r.request_id} ({r.reason}), base v{r.base_version}: windows "
            f"{fmt_time(r.window_start)} → {fmt_time(r.window_end)} (event time); requested "
            f"{fmt_time(r.requested_at)} UTC (wall clock)",
            RETRAIN_COLOR,
        )
        for r in data.retrain_requests
    ]
    if data.drift_reports:
        out += [
            Marker(
                event_time_of(data.drift_reports, p.promoted_at), f"v{p.new_champion}",
                f"{p.cause}: champion v{p.previous_champion} → v{p.new_champion} at "
                f"{fmt_time(p.promoted_at)} UTC (wall clock), drawn after the last window "
                "reported before it",
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
    return f.tvd, "TVD"


def _point_title(name: str, what: str, value: float, r: DriftReport, drifted: bool) -> str:
    return (f"{name} {what} {fmt_num(value)} · window ending {fmt_time(r.window.end_time)} "
            f"(event time), reported {fmt_time(r.created_at)} UTC"
            + (" · drifted" if drifted else ""))


def ranked_features(reports: Sequence[DriftReport]) -> list[str]:
    """Feature names by their highest PSI over the windows, highest first."""
    best: dict[str, float] = {}
    for r in reports:
        for f in r.features:
            best[f.name] = max(best.get(f.name, float("-inf")), f.psi)
    return sorted(best, key=lambda n: (-best[n], n))


def _feature_series(
    reports: Sequence[DriftReport], stat: str, names: Sequence[str], offset: int = 0
) -> tuple[list[Series], list[tuple[str, str, str]]]:
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
                    titles.append(_point_title(name, what, value, r, f.drifted))
        if pts:
            color, dash = color_for(offset + i)
            series.append(Series(name, pts, color, dash, titles))
            keys.append((name, color, dash))
    return series, keys


def _stat_charts(data: ReportData, stat: str, markers: Sequence[Marker]) -> str:
    """The top features' chart of ``stat`` with its legend, the others in groups of the
    same size behind a disclosure."""
    t = data.thresholds
    names = ranked_features(data.drift_reports)
    if stat == "psi":
        slug, what, rule, y_max = "psi", "PSI", Rule(t.psi, f"PSI {fmt_num(t.psi, 2)}"), None
    else:
        slug, what = "ks", "KS statistic / TVD"
        rule, y_max = Rule(t.ks_statistic, f"effect {fmt_num(t.ks_statistic, 3)}"), 1.0

    def chart(chart_id: str, group: Sequence[str], offset: int) -> str:
        series, keys = _feature_series(data.drift_reports, stat, group, offset)
        return line_chart(chart_id, f"{what} per feature over windows", series,
                          time_axis=True, rules=[rule], markers=markers, y_max=y_max,
                          x_label="window end (event time, UTC)",
                          width=TIMELINE_WIDTH) + legend(keys)

    top = names[:TOP_FEATURES]
    out = chart(f"chart-{slug}", top, 0)
    rest = names[TOP_FEATURES:]
    if rest:
        groups = "".join(
            chart(f"chart-{slug}-more-{k // TOP_FEATURES}", rest[k : k + TOP_FEATURES],
                  TOP_FEATURES + k)
            for k in range(0, len(rest), TOP_FEATURES)
        )
        out += (f'<details class="more"><summary>the other {len(rest)} features '
                f"(lower PSI)</summary>{groups}</details>")
    return out


def _prediction_chart(data: ReportData, markers: Sequence[Marker]) -> str:
    with_entry = [r for r in data.drift_reports if r.prediction is not None]
    if not with_entry:
        return ('<h3>Prediction drift</h3><p class="empty">No prediction-drift entries in '
                "these reports (enable it per model with <code>drift.prediction: true</code>)."
                "</p>")
    t = data.thresholds
    name = with_entry[-1].prediction.name  # type: ignore[union-attr]
    psi = [(r, r.prediction) for r in with_entry]
    series = [
        Series(f"{name} PSI", [(_epoch(r.window.end_time), p.psi) for r, p in psi],
               "#2c3e50", point_titles=[_point_title(name, "PSI", p.psi, r, p.drifted)
                                        for r, p in psi]),
    ]
    effect = [(r, p, p.ks_statistic if p.ks_statistic is not None else p.tvd) for r, p in psi]
    series.append(Series(
        f"{name} {'KS statistic' if psi[-1][1].kind == 'numeric' else 'TVD'}",
        [(_epoch(r.window.end_time), e) for r, _, e in effect if e is not None],
        "#16a085", "6 3",
        [_point_title(name, "effect", e, r, p.drifted) for r, p, e in effect if e is not None],
    ))
    return (
        "<h3>Prediction drift: the champion's predictions vs its predictions on its "
        "reference snapshot</h3>"
        + line_chart("chart-prediction", "prediction drift over windows", series,
                     time_axis=True, rules=[Rule(t.psi, f"PSI {fmt_num(t.psi, 2)}")],
                     markers=markers, x_label="window end (event time, UTC)",
                     width=TIMELINE_WIDTH)
        + legend([(s.name, s.color, s.dash) for s in series])
    )


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
    share = Series(
        "drifted share",
        [(_epoch(r.window.end_time), r.drifted_share) for r in reports],
        "#34495e",
        point_titles=[_point_title("drifted share", "", r.drifted_share, r, r.drifted)
                      for r in reports],
    )
    n = len(ranked_features(reports))
    top = f"top {min(TOP_FEATURES, n)} of {n} features by PSI"
    body = [
        marker_key,
        f"<h3>PSI per feature ({top})</h3>",
        _stat_charts(data, "psi", markers),
        f"<h3>KS statistic per feature, categorical: total variation distance ({top})</h3>",
        _stat_charts(data, "effect", markers),
        "<h3>Share of drifted features</h3>",
        line_chart("chart-share", "Drifted share per window", [share], time_axis=True,
                   rules=[Rule(t.drifted_share, f"share {fmt_share(t.drifted_share)}")],
                   markers=markers, y_max=1.0, x_label="window end (event time, UTC)",
                   width=TIMELINE_WIDTH),
        _prediction_chart(data, markers),
    ]
    shown = reports[-MAX_TABLE_WINDOWS:]
    rows = [
        [
            fmt_time(r.window.start_time), fmt_time(r.window.end_time),
            fmt_num(r.window.n_events), fmt_share(r.drifted_share),
            _badge("drifted", "bad") if r.drifted else _badge("ok", "ok"),
            ", ".join(esc(f.name) for f in r.features if f.drifted) or "—",
            fmt_num(max((f.psi for f in r.features), default=None)),
            (fmt_num(r.prediction.psi) + (" " + _badge("drifted", "bad")
                                           if r.prediction.drifted else ""))
            if r.prediction is not None else "—",
            f"v{r.champion_version}" if r.champion_version is not None else "—",
            fmt_time(r.created_at),
        ]
        for r in reversed(shown)
    ]
    caption = (
        f"<p class=\"muted\">Latest {len(shown)} of {len(reports)} windows, newest first.</p>"
    )
    body.append("<h3>Windows</h3>" + caption + _table(
        ["start (event time)", "end (event time)", "events", "drifted share", "verdict",
         "drifted features", "max PSI", "prediction PSI", "champion", "reported (UTC)"],
        rows, "windows"))
    return _section("drift-timeline", "Drift over windows", "".join(body),
                    "Statistics of each closed window against the champion's training "
                    "snapshot, on one event-time axis (windows at their end; retrain "
                    "requests at the end of the windows they answer; promotions after the "
                    "last window reported before them; wall-clock times in the tooltips). "
                    "Dashed red lines are the policy thresholds.")


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
        return [f"{who} {fmt_sig(y)} after {int(x):,} pairs" for x, y in pts]

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
            value_label=fmt_sig,
        ))
        rows = [
            [
                fmt_time(v.decided_at), f"v{v.candidate}", f"v{v.champion}", fmt_num(v.samples),
                esc(v.metric), fmt_sig(v.champion_metric), fmt_sig(v.candidate_metric),
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
        f"{esc(k)}={fmt_metric(k, v)}"
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
code.id{display:inline-block;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;
vertical-align:bottom;cursor:copy}
.scroll{overflow-x:auto;max-width:100%}
.picker select{font:inherit;padding:3px 6px;max-width:100%}
table.features-table th{cursor:pointer;white-space:nowrap}
table.features-table th[aria-sort=descending]::after{content:" ▼"}
table.features-table th[aria-sort=ascending]::after{content:" ▲"}
table.features-table td{white-space:nowrap;font-variant-numeric:tabular-nums}
tr.drifted td{background:#fff5f5}tr.prediction td:first-child{font-weight:700}
details.more{margin:6px 0 12px}details.more summary{cursor:pointer;color:#2563eb}
#histograms-more{margin:8px 0;font:inherit;padding:3px 10px;cursor:pointer}
.notes{color:#92400e}
footer{padding:14px 28px;color:var(--muted);border-top:1px solid var(--line)}
"""

CSP = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src '{SCRIPT_HASH}'"
"""Nothing may load; the page's own script (by hash) is the only one that runs."""


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
    t = data.thresholds
    payload = explorer_payload(data.drift_reports, t.psi, t.ks_statistic, t.ks_alpha) if (
        data.drift_reports) else None
    body = "".join((
        _summary(data), _distributions(payload), _timeline(data), _retrain(data),
        _shadow(data), _lineage(data),
    ))
    scripts = (data_block(payload) + f"<script>{SCRIPT}</script>") if payload else ""
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
        "service's state. Times are UTC.</footer>"
        f"{scripts}</body></html>\n"
    )
