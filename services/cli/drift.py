"""``driftloop drift check``: the drift monitor's core, policy and trigger on a parquet file.

Two modes. ``--model M``: features from M's FeatureService, reference from its
champion's training snapshot, M's ``drift`` settings. ``--reference FILE``: features
from ``--features`` or every column that is not an id, a time or a label (printed),
the default drift settings (or ``--model``'s). Options override single numbers.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from services.cli.context import UserError, cli_context, fail, guarded

app = typer.Typer(help="Drift checks: PSI and KS against a reference, with the drift policy.")
console = Console(width=140)
err = Console(stderr=True, soft_wrap=True)


@app.callback()
def _drift() -> None:
    """Drift detection."""


def _file_id(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return f"file:{path.name}:{h.hexdigest()[:16]}"


def _read_parquet(path: Path, what: str) -> Any:
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{what} file not found: {path}")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow's errors vary by what is wrong with the file
        raise UserError(f"{what} {path} is not a readable parquet file "
                        f"({str(exc).splitlines()[0]})") from exc



@app.command()
@guarded
def check(
    ctx: typer.Context,
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet file to check.")],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m",
                     help="Model: its FeatureService, its champion's reference, its policy."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference parquet file instead of the champion's snapshot."),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option("--features", "-f", help="Feature column (repeatable; with --reference)."),
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Column that is not a feature (repeatable).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per window: report and trigger.")
    ] = False,
    window_size: Annotated[int, typer.Option(help="Rows per window (0: whole file).")] = 0,
    time_column: Annotated[
        str, typer.Option(help="Event-time column: window order and bounds.")
    ] = "event_timestamp",
    psi_threshold: Annotated[float | None, typer.Option(help="PSI at which a feature drifted.")
                             ] = None,
    ks_alpha: Annotated[float | None, typer.Option(help="Family-wise test level.")] = None,
    no_bonferroni: Annotated[
        bool, typer.Option("--no-bonferroni", help="Do not divide ks_alpha by the tests.")
    ] = False,
    ks_min_statistic: Annotated[float | None, typer.Option(help="Effect-size floor.")] = None,
    drifted_share: Annotated[
        float | None, typer.Option(help="Share of drifted features for a drifted window.")
    ] = None,
    critical: Annotated[
        list[str] | None, typer.Option(help="Critical feature (repeatable).")
    ] = None,
    min_window_events: Annotated[
        int | None, typer.Option(help="Smaller windows are reported, never trigger.")
    ] = None,
    consecutive_windows: Annotated[
        int | None, typer.Option(help="Drifted windows in a row for a request.")] = None,
    fail_on_drift: Annotated[
        bool, typer.Option("--fail-on-drift", help="Exit with status 3 if any window drifted.")
    ] = False,
) -> None:
    """Compare a file with a model's champion reference, or with another file.

    The model's (or the default) drift settings apply; options override single numbers.
    """
    from services.drift.check import check_frame, feature_columns, reference_from_frame
    from services.drift.policy import DriftSettings

    settings = cli_context(ctx).settings
    if model is None and reference is None:
        raise fail("give --model (champion reference) or --reference FILE")
    base = settings.model(model).drift if model else DriftSettings()
    overrides: dict[str, Any] = {k: v for k, v in {
        "psi_threshold": psi_threshold, "ks_alpha": ks_alpha,
        "ks_min_statistic": ks_min_statistic, "drifted_share": drifted_share,
        "min_window_events": min_window_events, "consecutive_windows": consecutive_windows,
    }.items() if v is not None}
    if no_bonferroni:
        overrides["bonferroni"] = False
    if critical:
        overrides["critical_features"] = frozenset(base.critical_features) | set(critical)
    try:
        drift = DriftSettings.model_validate({**base.model_dump(), **overrides})
    except ValueError as exc:
        raise UserError(f"invalid drift option: {str(exc).splitlines()[-1].strip()}") from None
    frame = _read_parquet(input, "input")
    if reference is not None:
        ref_frame = _read_parquet(reference, "reference")
        columns, left = feature_columns(ref_frame, features=features or (),
                                        exclude=exclude or (), time_column=time_column)
        err.print(f"comparing {len(columns)} columns: {', '.join(columns)}", highlight=False)
        if left:
            err.print(f"left out (ids, times, labels): {', '.join(map(str, left))}",
                      highlight=False)
        spec, profile = reference_from_frame(ref_frame, _file_id(reference), columns,
                                             model=model or "adhoc")
        rows = _reference_rows(ref_frame, spec, time_column) if drift.seasonality else None
    else:
        assert model is not None
        spec, profile, rows = _champion_reference(settings, model)
        err.print(f"comparing {len(spec.features)} features of {model}'s FeatureService "
                  f"with snapshot {profile.snapshot_id}", highlight=False)
    results = check_frame(frame, spec, profile, drift, window_size=window_size,
                          time_column=time_column, source=input.name, rows=rows)
    if as_json:
        for i, r in enumerate(results):
            doc = {"window": i, "report": msgspec.to_builtins(r.report),
                   "trigger": {"fire": r.decision.fire, "outcome": r.decision.outcome,
                               "reason": r.decision.reason, "streak": r.decision.streak}}
            sys.stdout.write(json.dumps(doc, default=str) + "\n")
    else:
        for i, r in enumerate(results):
            _print_window(i, r)
    if fail_on_drift and any(r.report.drifted for r in results):
        raise typer.Exit(3)


def _reference_rows(frame: Any, spec: Any, time_column: str) -> Any:
    """The reference file's rows and event times (a declared cycle compares by phase)."""
    from services.drift.season import ReferenceRows

    try:
        return ReferenceRows.from_frame(frame, spec, time_column)
    except KeyError as exc:
        raise UserError(f"reference: {exc.args[0]}") from None


def _champion_reference(settings: Any, model: str) -> tuple[Any, Any, Any]:
    """The model's spec, its champion's reference profile and (under a declared cycle)
    its rows, as the monitor loads them."""
    from services.drift.references import FeastReferences

    reference = FeastReferences(settings).reference_for(model)
    if reference is None:
        raise UserError(f"{model} has no champion yet: train one (`driftloop train --model "
                        f"{model} --snapshot ID`) or compare with --reference FILE")
    return reference.spec, reference.profile, reference.rows


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _print_window(index: int, result: Any) -> None:
    rep, verdict, decision = result.report, result.verdict, result.decision
    table = Table(
        title=(
            f"window {index}: {rep.window.n_events} rows, "
            f"drifted share {rep.drifted_share:.2f} -> "
            f"{'[red]DRIFTED[/]' if rep.drifted else '[green]ok[/]'} "
            f"(test level {verdict.ks_level:.2g}; trigger: {decision.outcome}"
            f"{', RETRAIN' if decision.fire else ''})"
        )
    )
    for col in ("feature", "kind", "PSI", "D/TVD", "p", "missing", "drifted"):
        table.add_column(col, justify="left" if col in ("feature", "kind") else "right")
    for f in verdict.features:
        s = f.stats
        numeric = s.kind == "numeric"
        why = [w for w, on in (("psi", f.by_psi), ("test", f.by_ks)) if on]
        table.add_row(
            f.name + (" *" if f.critical else ""),
            s.kind,
            _fmt(s.psi),
            _fmt(s.ks_statistic if numeric else s.tvd),
            _fmt(s.ks_pvalue if numeric else s.chi2_pvalue, ".3g"),
            _fmt(s.missing_share, ".3f"),
            f"[red]yes[/] ({'+'.join(why)})" if f.drifted else "no",
        )
    console.print(table)
