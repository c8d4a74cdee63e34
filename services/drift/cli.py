"""``driftloop drift check``: the drift core and policy on a parquet file.

The ``driftloop`` command line (``services.cli``) mounts it as the ``drift`` group.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from services.drift.policy import DriftPolicy

DEFAULT = DriftPolicy()  # the option defaults below are the policy's own

app = typer.Typer(help="Drift checks: PSI and KS against a reference, with the drift policy.")
console = Console()
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


@app.command()
def check(
    input: Annotated[Path, typer.Option("--input", "-i", help="Parquet file to check.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model: spec from its FeatureService, reference from its champion."),
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference parquet file (no model; feature kinds from dtypes)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print drift.reports events (one JSON per line).")
    ] = False,
    window_size: Annotated[int, typer.Option(help="Rows per window (0: whole file).")] = 0,
    time_column: Annotated[
        str, typer.Option(help="Event-time column (bounds only; ignored if absent).")
    ] = "event_time",
    exclude: Annotated[
        list[str] | None, typer.Option(help="Columns that are not features (with --reference).")
    ] = None,
    psi_threshold: Annotated[
        float, typer.Option(help="PSI at which a feature drifted.")] = DEFAULT.psi_threshold,
    ks_alpha: Annotated[float, typer.Option(help="KS family-wise level.")] = DEFAULT.ks_alpha,
    no_bonferroni: Annotated[
        bool, typer.Option("--no-bonferroni", help="Do not divide ks_alpha by n_numeric.")
    ] = False,
    ks_min_statistic: Annotated[
        float, typer.Option(help="KS effect-size floor.")] = DEFAULT.ks_min_statistic,
    drifted_share: Annotated[
        float, typer.Option(help="Share of drifted features for a drifted window.")
    ] = DEFAULT.drifted_share,
    critical: Annotated[
        list[str] | None, typer.Option(help="Critical feature (repeatable).")
    ] = None,
    consecutive_windows: Annotated[
        int, typer.Option(help="Drifted windows in a row.")] = DEFAULT.consecutive_windows,
    cooldown_minutes: Annotated[
        float, typer.Option(help="Minutes between requests.")
    ] = DEFAULT.cooldown.total_seconds() / 60,
    in_flight_timeout_minutes: Annotated[
        float, typer.Option(help="Minutes before an unanswered request expires.")
    ] = DEFAULT.in_flight_timeout.total_seconds() / 60,
    fail_on_drift: Annotated[
        bool, typer.Option(help="Exit with status 3 if any window drifted.")
    ] = False,
) -> None:
    """Compare a file with a model's champion reference, or with another file."""
    import pandas as pd

    from services.drift.check import check_frame, load_model_reference, reference_from_frame

    if (model is None) == (reference is None):
        err.print("[red]error:[/] give exactly one of --model and --reference")
        raise typer.Exit(2)
    policy = DriftPolicy(
        psi_threshold=psi_threshold,
        ks_alpha=ks_alpha,
        bonferroni=not no_bonferroni,
        ks_min_statistic=ks_min_statistic,
        drifted_share=drifted_share,
        critical_features=frozenset(critical or ()),
        consecutive_windows=consecutive_windows,
        cooldown=timedelta(minutes=cooldown_minutes),
        in_flight_timeout=timedelta(minutes=in_flight_timeout_minutes),
    )
    frame = pd.read_parquet(input)
    skip = tuple(exclude or ()) + ((time_column,) if time_column else ())
    try:
        if reference is not None:
            ref_frame = pd.read_parquet(reference)
            spec, profile = reference_from_frame(
                ref_frame, _file_id(reference), exclude=tuple(c for c in skip if c)
            )
        else:
            spec, profile = load_model_reference(model or "")
        results = check_frame(
            frame,
            spec,
            profile,
            policy,
            window_size=window_size,
            time_column=time_column,
            source=input.name,
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        for r in results:
            sys.stdout.write(msgspec.json.encode(r.report).decode() + "\n")
    else:
        for i, r in enumerate(results):
            _print_window(i, r)
    if fail_on_drift and any(r.report.drifted for r in results):
        raise typer.Exit(3)


def _fmt(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None else format(v, spec)


def _print_window(index: int, result: object) -> None:
    from services.drift.check import WindowCheck

    assert isinstance(result, WindowCheck)
    rep, verdict = result.report, result.verdict
    table = Table(
        title=(
            f"window {index}: {rep.window.n_events} rows, "
            f"drifted share {rep.drifted_share:.2f} -> "
            f"{'[red]DRIFTED[/]' if rep.drifted else '[green]ok[/]'} "
            f"(KS level {verdict.ks_level:.2g}; trigger: {result.decision.outcome})"
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
