"""The report renderer on synthetic data: sections, escaping, number formats, no outside
resources, thresholds and markers drawn, lineage tree, empty states."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import msgspec
import pytest
from samples.report_data import sample_data, sample_reports

from services.report.render import (
    CSP,
    SECTION_IDS,
    ReportData,
    Thresholds,
    fmt_num,
    fmt_p,
    fmt_share,
    fmt_time,
    render_report,
)
from streams.contracts import FeatureDrift

XSS = "<script>alert(1)</script>"
ATTR = '"><img src=x onerror=alert(2)>'


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
    n_features = len(data.drift_reports[-1].features)
    for chart in [*(f"chart-dist-{i}" for i in range(n_features)), "chart-psi", "chart-ks",
                  "chart-share", "chart-verdicts", "chart-shadow-run-0"]:
        assert 'class="chart empty"' not in _chart(html, chart)
    # reference and window bars of every histogram bin, for numeric and categorical features
    dist = _chart(html, "chart-dist-3")  # country (categorical)
    assert dist.count("<rect") == 2 * 7 and ">DE<" in dist and "other" in dist


def test_self_contained_without_scripts() -> None:
    html = render_report(sample_data(extra_features=[XSS]))
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.replace("&lt;script", "")
    assert "<link" not in html and "src=" not in html.replace("src=x", "")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html
    assert "default-src 'none'" in CSP


@pytest.mark.parametrize("name", [XSS, ATTR, "a&b<c>'d\""])
def test_feature_names_are_escaped_everywhere(name: str) -> None:
    html = render_report(sample_data(extra_features=[name]))
    assert name not in html
    escaped = (name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
               .replace('"', "&quot;").replace("'", "&#x27;"))
    # feature card, bar chart title, PSI/KS legends and point tooltips, windows table
    assert html.count(escaped) >= 5
    assert "<img" not in html and "onerror=alert" not in html.replace(escaped, "")


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
                                  ks_pvalue=1.23456e-9, missing_share=0.0123456)
    data = dataclasses.replace(sample_data(), drift_reports=[
        msgspec.structs.replace(report, features=[feature, *report.features[1:]])])
    html = render_report(data)
    assert "PSI <b>0.123</b>" in html and "KS <b>0.099</b>" in html
    assert "(p 1.2e-09)" in html and "missing 1.2%" in html
    assert "0.123456789" not in html and "0.0987654" not in html
    assert "0.4871" in html and "0.4123" in html and "15.4%" in html  # the verdict
    assert "4,000" in html  # pairs


def test_formatters() -> None:
    assert fmt_num(None) == "—" and fmt_num(float("nan")) == "NaN"
    assert fmt_num(float("inf")) == "∞" and fmt_num(12345) == "12,345"
    assert fmt_num(0.5) == "0.500" and fmt_num(0.00012) == "1.20e-04" and fmt_num(0.0) == "0.000"
    assert fmt_num(2.5e7) == "2.50e+07"
    assert fmt_p(0.5) == "0.5000" and fmt_p(3e-12) == "3.0e-12" and fmt_p(None) == "—"
    assert fmt_share(0.3) == "30.0%" and fmt_share(None) == "—"
    assert fmt_time(datetime(2026, 4, 1, 12, 0, 5, tzinfo=UTC)) == "2026-04-01 12:00:05"
    assert fmt_time("2026-04-01T14:00:05+02:00") == "2026-04-01 12:00:05"
    assert fmt_time("not a time<") == "not a time&lt;"


def test_thresholds_and_retrain_markers_are_drawn() -> None:
    data = dataclasses.replace(
        sample_data(), thresholds=Thresholds(psi=0.25, ks_statistic=0.15, drifted_share=0.4))
    html = render_report(data)
    psi, ks, share = (_chart(html, c) for c in ("chart-psi", "chart-ks", "chart-share"))
    assert 'class="threshold"' in psi and "PSI 0.25" in psi
    assert "KS 0.15" in ks and "share 40.0%" in share
    for chart in (psi, ks, share):
        assert chart.count('class="marker"') == 2  # one retrain request, one promotion
        assert "retrain request retrain-7f3a9c0e5b1d4e2f (covariate)" in chart
        assert "shadow: champion v1 → v2" in chart
    # one PSI line and one effect line (KS; categorical: TVD) per feature
    assert psi.count("<polyline") == 5 and ks.count("<polyline") == 5
    assert "income KS statistic 0.2" in ks and "country TVD " in ks


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
    for text in ("snap-v2", "val_loss=0.4100", "2026-04-01 12:09:01", "retrain-7f3a"):
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
    assert "no histogram in this report" in html
    assert 'id="chart-ks" class="chart empty"' in html  # no KS or TVD values at all


def test_categorical_features_show_tvd_and_chi_square() -> None:
    html = render_report(sample_data())
    country = html.split('<span class="fname">country</span>')[1].split("</p>")[0]
    assert "TVD <b>0." in country and "χ² p" in country and "KS" not in country
