"""The report renderer on synthetic data: sections, escaping (markup and the explorer's
JSON data block), number formats, no outside resources and only the page's own script,
thresholds and markers on one event-time axis, top-N feature charts, prediction drift,
lineage tree, empty states, task-generic shadow and lineage sections."""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime

import msgspec
import pytest
from samples.report_data import sample_data, sample_reports

from services.report.explorer import data_block
from services.report.render import (
    CSP,
    SECTION_IDS,
    ReportData,
    Thresholds,
    fmt_metric,
    fmt_num,
    fmt_p,
    fmt_share,
    fmt_sig,
    fmt_time,
    render_report,
)
from services.report.script import SCRIPT, SCRIPT_HASH
from streams.contracts import FeatureDrift

XSS = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(2)>'


def _markup(html: str) -> str:
    """The page without its data block and script (checked on their own)."""
    html = re.sub(r'<script type="application/json" id="report-data">.*?</script>', "", html,
                  flags=re.S)
    return html.replace(f"<script>{SCRIPT}</script>", "")


def _payload(html: str) -> dict:
    match = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                      html, re.S)
    assert match, "no data block"
    return json.loads(match.group(1))


def _chart(html: str, chart_id: str) -> str:
    match = re.search(rf'<svg id="{chart_id}"[^>]*>.*?</svg>', html, re.S)
    assert match, f"no chart {chart_id}"
    return match.group(0)


def test_every_section_and_chart_is_there() -> None:
    data = sample_data()
    html = render_report(data)
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in html
    for chart in ["chart-psi", "chart-ks", "chart-share", "chart-prediction", "chart-verdicts",
                  "chart-shadow-run-0"]:
        assert 'class="chart empty"' not in _chart(html, chart)
    # the explorer: a selector with every window, drifted ones first, and its data
    payload = _payload(html)
    labels = [w["label"] for w in payload["windows"]]
    assert len(labels) == len(data.drift_reports) == 12
    drifted = [w["drifted"] for w in payload["windows"]]
    assert drifted == sorted(drifted, reverse=True) and sum(drifted) == 6
    assert html.count("<option ") == 12 and 'id="window-select"' in html
    country = next(h for h in payload["windows"][0]["hist"] if h["name"] == "country")
    assert country["bins"][:2] == ["DE", "FR"] and len(country["ref"]) == 7


def test_self_contained_with_only_its_own_script() -> None:
    html = render_report(sample_data(extra_features=[XSS]))
    assert "http://" not in html and "https://" not in html
    # one data block and the page's script; the policy runs that script alone
    assert html.count("<script") == 2
    assert html.count('<script type="application/json" id="report-data">') == 1
    assert html.count(f"<script>{SCRIPT}</script>") == 1
    assert "<link" not in html and "src=" not in _markup(html).replace("src=x", "")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert "default-src 'none'" in CSP and f"script-src '{SCRIPT_HASH}'" in CSP
    assert "innerHTML" not in SCRIPT and "fetch(" not in SCRIPT and "eval(" not in SCRIPT


def test_data_block_cannot_be_closed_by_a_value() -> None:
    block = data_block({"name": "</script><script>alert(1)</script>", "q": "a&b>c"})
    inner = block.removeprefix('<script type="application/json" id="report-data">')
    inner = inner.removesuffix("</script>")
    assert "<" not in inner and ">" not in inner and "&" not in inner
    assert json.loads(inner)["name"] == "</script><script>alert(1)</script>"


@pytest.mark.parametrize("name", [XSS, ATTR, "a&b<c>'d\""])
def test_feature_names_are_escaped_everywhere(name: str) -> None:
    html = render_report(sample_data(extra_features=[name]))
    markup = _markup(html)
    assert name not in markup
    escaped = (name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
               .replace('"', "&quot;").replace("'", "&#x27;"))
    # PSI/KS legends, series and point tooltips, windows table
    assert markup.count(escaped) >= 5
    assert "<img" not in markup and "onerror=alert" not in markup.replace(escaped, "")
    # the data block holds the name as JSON text, which the script sets as textContent
    assert any(row["cells"][0]["t"] == name for row in _payload(html)["windows"][0]["rows"])


def test_values_from_events_and_manifests_are_escaped() -> None:
    data = sample_data()
    first = data.versions[0]
    evil = dataclasses.replace(first, metrics={XSS: 1.0}, lineage=dataclasses.replace(
        first.lineage, training_snapshot_id=ATTR))
    request = msgspec.structs.replace(data.retrain_requests[0], request_id=XSS)
    html = render_report(dataclasses.replace(
        data, versions=[evil, *data.versions[1:]], retrain_requests=[request], model="m-1",
        notes=[XSS],
    ))
    assert XSS not in html and ATTR not in html and "<img" not in html


def test_numbers_are_formatted() -> None:
    report = sample_reports(n_windows=1)[0]
    feature = msgspec.structs.replace(report.features[0], psi=0.123456789, ks_statistic=0.0987654,
                                  ks_pvalue=1.23456e-9, missing_share=0.0123456, drifted=True)
    data = dataclasses.replace(sample_data(), drift_reports=[
        msgspec.structs.replace(report, features=[feature, *report.features[1:]])])
    html = render_report(data)
    row = next(r for r in _payload(html)["windows"][0]["rows"]
               if r["cells"][0]["t"] == "age")
    text = [c["t"] for c in row["cells"]]
    assert text[1:8] == ["numeric", "KS", "D 0.099", "1.2e-09", "0.123",
                         "PSI ≥ 0.20 · p < 0.0020 with effect ≥ 0.100", "drifted"]
    assert row["cells"][5]["v"] == 0.123456789  # sorts on the value, shows the text
    # reference vs current: mean, std, quantiles, missing
    assert text[8] == "0" and text[10] == "1.414" and text[12].startswith("-2.33 · -0.953 · 0")
    assert text[14].endswith("%") and text[15].endswith("%")
    assert "0.123456789" not in _markup(html) and "0.0987654" not in _markup(html)
    assert "0.4871" in html and "0.4123" in html and "15.4%" in html  # the verdict
    assert "4,000" in html  # pairs


def test_lineage_metrics_are_formatted_by_kind() -> None:
    lineage = render_report(sample_data()).split('<section id="lineage">')[1]
    assert "replay_rows=9,570" in lineage and "best_step=620" in lineage  # counts
    assert "replay_share=69.4%" in lineage and "val_loss=0.41<" in lineage  # share, loss
    assert "val_auc=0.82" in lineage and "9570.0" not in lineage


def test_ids_are_whole_in_the_page() -> None:
    html = render_report(sample_data())
    retrain = html.split('<section id="retrain-events">')[1].split("</section>")[0]
    # shown cut by CSS, but the text (what a copy takes) and the tooltip are whole
    assert 'title="retrain-7f3a9c0e5b1d4e2f">retrain-7f3a9c0e5b1d4e2f</code>' in retrain


def test_formatters() -> None:
    assert fmt_num(None) == "—" and fmt_num(float("nan")) == "NaN"
    assert fmt_num(float("inf")) == "∞" and fmt_num(12345) == "12,345"
    assert fmt_num(0.5) == "0.500" and fmt_num(0.00012) == "1.20e-04" and fmt_num(0.0) == "0.000"
    assert fmt_num(2.5e7) == "2.50e+07"
    assert fmt_p(0.5) == "0.5000" and fmt_p(3e-12) == "3.0e-12" and fmt_p(None) == "—"
    assert fmt_p(0.0) == "≈0"
    assert fmt_share(0.3) == "30.0%" and fmt_share(None) == "—"
    assert fmt_time(datetime(2026, 4, 1, 12, 0, 5, tzinfo=UTC)) == "2026-04-01 12:00:05"
    assert fmt_time("2026-04-01T14:00:05+02:00") == "2026-04-01 12:00:05"
    assert fmt_time("not a time<") == "not a time&lt;"
    assert fmt_metric("replay_rows", 9570.0) == "9,570" and fmt_metric("lr", 0.001) == "0.001"
    assert fmt_metric("val_loss", 0.412345) == "0.4123" and fmt_metric("n", 3) == "3"
    assert fmt_metric("replay_share", 0.25) == "25.0%" and fmt_metric("x", "<b>") == "&lt;b&gt;"
    assert fmt_sig(12345.678) == "12,346" and fmt_sig(0.000123456) == "0.0001235"
    assert fmt_sig(14.613) == "14.61" and fmt_sig(None) == "—" and fmt_sig(3e12) == "3.000e+12"


def _xs(svg: str, pattern: str) -> list[float]:
    return [float(x) for x in re.findall(pattern, svg)]


def test_windows_and_markers_share_one_event_time_axis() -> None:
    """Promotions and requests happen a day after the events (a replay): the markers
    still sit among the windows, not a day to the right of them."""
    data = dataclasses.replace(
        sample_data(), thresholds=Thresholds(psi=0.25, ks_statistic=0.15, drifted_share=0.4))
    html = render_report(data)
    psi, ks, share = (_chart(html, c) for c in ("chart-psi", "chart-ks", "chart-share"))
    assert 'class="threshold"' in psi and "PSI 0.25" in psi
    assert "effect 0.150" in ks and "share 40.0%" in share
    for chart in (psi, ks, share):
        assert chart.count('class="marker"') == 2  # one retrain request, one promotion
        assert "retrain request retrain-7f3a9c0e5b1d4e2f (covariate)" in chart
        assert "shadow: champion v1 → v2" in chart and "(wall clock)" in chart
        dots = _xs(chart.split('class="series"')[1], r'<circle cx="([\d.]+)"')
        marks = _xs(chart, r'<g class="marker"><title>[^<]*</title><line x1="([\d.]+)"')
        assert len(dots) == 12 and len(marks) == 2
        spread = max(dots) - min(dots)
        assert spread > 600  # twelve windows spread over the plot, not one vertical line
        # the request at window 7's end, the promotion after window 9 (reported before it)
        step = spread / 11
        assert sorted(round((m - min(dots)) / step, 2) for m in marks) == [7.0, 9.0]
    # one PSI line and one effect line (KS; categorical: TVD) per feature
    assert psi.count("<polyline") == 5 and ks.count("<polyline") == 5
    assert "income KS statistic 0.2" in ks and "country TVD " in ks
    assert "(event time), reported 2026-04-02 " in psi  # wall time in the tooltips


def test_marker_labels_close_together_stack() -> None:
    from services.report.svg import Marker, marker_rows

    marks = [Marker(x, "v2", "", "#000") for x in (0.0, 1.0, 2.0, 100.0)]
    assert marker_rows(marks, px_per_x=1.0) == [0, 1, 2, 0]
    assert marker_rows(marks, px_per_x=50.0) == [0, 0, 0, 0]


def test_many_features_show_the_top_by_psi_and_the_rest_on_demand() -> None:
    extra = [f"f{i:02d}" for i in range(20)]
    html = render_report(sample_data(extra_features=extra))
    psi = _chart(html, "chart-psi")
    assert psi.count("<polyline") == 8
    top = html.split('id="chart-psi"')[1].split('<ul class="legend">')[1].split("</ul>")[0]
    assert top.count("<li>") == 8 and "income" in top and "age" not in top
    more = html.split('<details class="more"><summary>the other 17 features')[1]
    assert 'id="chart-psi-more-0"' in more and 'id="chart-psi-more-2"' in more
    assert html.count("<polyline") >= 2 * 25  # every feature drawn somewhere, PSI and KS


def test_prediction_drift_is_charted_and_tabled() -> None:
    for task, name in (("binary", "prediction"), ("multiclass", "predicted_class")):
        html = render_report(sample_data(task=task))
        chart = _chart(html, "chart-prediction")
        assert chart.count("<polyline") == 2 and f"{name} PSI" in chart
        first = _payload(html)["windows"][0]
        assert first["rows"][0]["cells"][0]["t"] == name
        assert first["rows"][0]["cells"][1]["t"].startswith("prediction")
        assert first["hist"][0]["name"] == name
        assert "6 of 12 windows drifted" in html  # the summary card


def test_retrain_chain_and_verdicts() -> None:
    html = render_report(sample_data())
    retrain = html.split('<section id="retrain-events">')[1].split("</section>")[0]
    assert "v2" in retrain and "promote" in retrain and "champion" in retrain
    shadow = html.split('<section id="shadow">')[1].split("</section>")[0]
    assert "better at look 2" in shadow and "log_loss" in shadow
    run = _chart(html, "chart-shadow-run-0")
    assert run.count("<polyline") == 2 and "after 730 pairs" in run


def test_lineage_tree_nests_children_under_parents() -> None:
    html = render_report(sample_data())
    tree = html.split('<ul class="tree">')[1]
    v1, v2, v3 = (tree.index(f'<span class="node">v{v}</span>') for v in (1, 2, 3))
    assert v1 < v2 < v3
    assert tree[v1:v2].count("<ul>") == 1 and tree[v2:v3].count("<ul>") == 1  # v1 > v2 > v3
    lineage = html.split('<section id="lineage">')[1]
    for text in ("snap-v2", "val_loss=0.41", "2026-04-02 12:09:01", "retrain-7f3a"):
        assert text in lineage
    assert lineage.count("badge ok\">champion") >= 2  # tree and table


def test_empty_data_renders_every_section_with_a_message() -> None:
    html = render_report(ReportData(model="nothing", generated_at=datetime.now(UTC)))
    for section in SECTION_IDS:
        assert f'<section id="{section}">' in html
    assert html.count('class="empty"') >= 5
    assert "No drift reports" in html and "no versions" in html


def test_reports_without_histograms_and_missing_ks() -> None:
    report = sample_reports(n_windows=1)[0]
    bare = FeatureDrift(name="x", kind="numeric", psi=0.1, missing_share=0.0, drifted=False)
    data = ReportData(model="m", generated_at=datetime.now(UTC),
                      drift_reports=[msgspec.structs.replace(report, features=[bare])])
    html = render_report(data)
    row = _payload(html)["windows"][0]["rows"][0]["cells"]
    assert [c["t"] for c in row[2:5]] == ["PSI only", "—", "—"]  # old reports: no KS
    assert [c["t"] for c in row[8:14]] == ["—"] * 6  # ... and no summaries
    assert 'id="chart-ks" class="chart empty"' in html  # no KS or TVD values at all
    assert "No prediction-drift entries" in html


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_other_tasks_show_their_metric(task: str) -> None:
    html = render_report(sample_data(task=task))
    shadow = html.split('<section id="shadow">')[1].split("</section>")[0]
    metric = {"regression": "squared_error", "multiclass": "cross_entropy"}[task]
    assert metric in shadow and "log_loss" not in html
    if task == "regression":
        assert "14.61" in shadow and "12.37" in shadow  # 4 significant digits


def test_categorical_features_show_tvd_and_chi_square() -> None:
    rows = _payload(render_report(sample_data()))["windows"][0]["rows"]
    country = next(r["cells"] for r in rows if r["cells"][0]["t"] == "country")
    assert country[1]["t"] == "categorical" and country[2]["t"] == "χ²"
    assert country[3]["t"].startswith("TVD 0.") and country[8]["t"] == "—"  # no mean


def test_window_menu_keeps_room_for_calm_windows() -> None:
    from services.report.explorer import window_order

    reports = sample_reports(n_windows=60, drift_from=5)  # 55 drifted, 5 calm
    order = window_order(reports, limit=20)
    assert len(order) == 20 and len(set(order)) == 20
    assert [reports[i].drifted for i in order] == [True] * 15 + [False] * 5
    assert order[15:] == [4, 3, 2, 1, 0]  # calm ones newest first
    shares = [reports[i].drifted_share for i in order[:15]]
    assert shares == sorted(shares, reverse=True)
    assert window_order(reports[:8], limit=20) == [7, 6, 5, 4, 3, 2, 1, 0]  # all fit
