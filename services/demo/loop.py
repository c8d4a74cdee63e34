"""The whole loop on one machine: drift → retrain → candidate → shadow verdict → promotion.

Everything is real and local: the embedded broker, a Feast repository (parquet +
SQLite) under the demo's state directory, the registry, torch training, and every
service (ingest, drift, train, shadow, online) running in this process as threads,
talking only through Kafka topics. A paced replay of the fraud domain's live stream
carries a covariate shift from a given event onwards. The console shows each window's
PSI per feature and each service's state; the run ends with a timeline and succeeds
only when the product's main path happened: the drift monitor asked for the retrain
(``covariate``, with its report ids), that episode's candidate was promoted in the same
trace, and the next windows against the new champion (whose reference is the
post-change data it was adapted to) are not drifted. The online learner's concept
detector watches the same stream: when it alarms during the episode it joins it (its
own stage in the timeline) instead of asking again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from streams.contracts import (
    DriftReport,
    EpisodeEvent,
    ModelCandidate,
    ModelPromotion,
    RetrainRequest,
    ShadowVerdict,
)
from streams.settings import Settings
from streams.tail import TopicTail
from streams.tracing import header_value

log = logging.getLogger(__name__)
MODEL = "fraud"
STAGES = ("drift detected", "retrain request", "candidate registered", "shadow verdict",
          "promotion", "quiet after promotion")
CONCEPT_STAGE = "online learner (concept)"


@dataclass(frozen=True)
class DemoConfig:
    """The demo's data and pacing (small enough for 2 cores, large enough to be real)."""

    seed: int = 7
    history_rows: int = 20_000
    live_events: int = 300_000  # an upper bound: the replay stops when the demo ends
    replay_rate: float = 1_000.0  # wall-clock events per second
    event_rate: float = 50.0  # event-time events per second
    shift_after_events: int = 6_000
    shifted: tuple[str, ...] = ("amount", "merchant_risk_score", "distance_from_home_km",
                                "velocity_score")
    mean_shift: float = 1.5
    scale: float = 1.3
    initial_steps: int = 400
    timeout_s: float = 240.0
    quiet_windows: int = 2  # windows against the new champion that must not drift

    def model_options(self) -> dict[str, Any]:
        """Per-model settings: demo-sized windows, training and shadow sample sizes."""
        return {
            "drift": {"window_events": 1_000, "window_seconds": 3_600,
                      "idle_flush_seconds": 10, "prediction": True},
            "training": {"max_steps": 300},
            "retrain": {"min_fresh_rows": 1_500, "label_wait_s": 60, "retry_after_s": 10},
            "shadow": {"min_pairs": 1_500, "look_every": 1_500, "max_pairs": 30_000},
        }


@dataclass
class Observed:
    """What the demo saw on the topics, with wall-clock times since the start."""

    started: float = field(default_factory=time.monotonic)
    reports: list[DriftReport] = field(default_factory=list)
    stages: dict[str, tuple[float, datetime | None, str]] = field(default_factory=dict)
    promotion_trace: str | None = None
    requests: dict[str, RetrainRequest] = field(default_factory=dict)
    request_traces: dict[str, str] = field(default_factory=dict)
    candidates: dict[int, str | None] = field(default_factory=dict)  # version -> request
    promoted: ModelPromotion | None = None
    episodes: list[EpisodeEvent] = field(default_factory=list)

    def mark(self, stage: str, event_time: datetime | None, detail: str) -> None:
        if stage not in self.stages:
            self.stages[stage] = (time.monotonic() - self.started, event_time, detail)


class TopicWatcher:
    """Reads the loop's output topics (a :class:`~streams.tail.TopicTail`: all partitions,
    from the start, no group) and folds each event, with its headers, into
    :class:`Observed`."""

    def __init__(self, settings: Settings) -> None:
        self.tail = TopicTail(settings, {
            settings.topic("drift.reports"): DriftReport,
            settings.topic("retrain.requests"): RetrainRequest,
            settings.topic("retrain.episodes"): EpisodeEvent,
            settings.topic("models.candidates"): ModelCandidate,
            settings.topic("models.verdicts"): ShadowVerdict,
            settings.topic("models.promotions"): ModelPromotion,
        }, name="demo-watch")

    def poll(self, observed: Observed) -> None:
        for record in self.tail.poll(timeout=0.1):
            self._fold(record.event, record.headers, observed)

    @staticmethod
    def _fold(event: Any, headers: Any, observed: Observed) -> None:
        if isinstance(event, DriftReport):
            observed.reports.append(event)
            if event.drifted:
                drifted = [f.name for f in event.features if f.drifted]
                observed.mark("drift detected", event.window.end_time,
                              f"{len(drifted)} features: {', '.join(drifted[:4])}")
        elif isinstance(event, RetrainRequest):
            observed.requests[event.request_id] = event
            traceparent = header_value(headers, "traceparent")
            if traceparent:
                observed.request_traces[event.request_id] = traceparent.split("-")[1]
            if event.reason == "concept":
                observed.mark(CONCEPT_STAGE, event.window_end,
                              f"opened its own episode (change point "
                              f"{event.change_start:%H:%M:%S})")
            observed.mark("retrain request", event.window_end,
                          f"{event.reason}, base v{event.base_version}, "
                          f"{len(event.drift_report_ids)} reports, change point "
                          f"{event.change_start:%H:%M:%S}")
        elif isinstance(event, EpisodeEvent):
            observed.episodes.append(event)
            if event.status == "joined" and event.detector == "online":
                observed.mark(CONCEPT_STAGE, event.change_point,
                              f"alarmed during the episode and joined it: {event.detail}")
        elif isinstance(event, ModelCandidate):
            observed.candidates[event.version] = event.request_id
            observed.mark("candidate registered", None,
                          f"v{event.version} from v{event.parent_version}")
        elif isinstance(event, ShadowVerdict):
            observed.mark("shadow verdict", None,
                          f"{event.decision} v{event.candidate}: {event.reason}")
        elif isinstance(event, ModelPromotion) and event.cause == "shadow":
            observed.promoted = observed.promoted or event
            observed.mark("promotion", None,
                          f"champion v{event.previous_champion} → v{event.new_champion}")
            traceparent = header_value(headers, "traceparent")
            if traceparent:
                observed.promotion_trace = traceparent.split("-")[1]

    def close(self) -> None:
        self.tail.close()


def _prepare(settings: Settings, config: DemoConfig, console: Console) -> tuple[Any, datetime]:
    """Feast repo, history, snapshot, champion v1."""
    from services.features.feast_repo import apply_repo, copy_repo, load_model_spec, open_store
    from services.features.generate import Generator, GeneratorConfig
    from services.features.history import write_history
    from services.features.snapshot import create_snapshot, load_snapshot_frame
    from services.registry.store import ModelRegistry
    from services.training.config import load_config
    from services.training.runner import TrainingJob, run_job

    repo = settings.feast.repo
    if not (repo / "feature_store.yaml").exists():
        copy_repo(repo)
    store = open_store(settings)
    apply_repo(store)
    console.print(f"Feast repo applied at {repo} (parquet offline store, SQLite online store)")
    history_end = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    gen = Generator(GeneratorConfig(seed=config.seed, events_per_second=config.event_rate))
    history = gen.history(history_end, config.history_rows)
    write_history(store, history)
    spec = load_model_spec(store, MODEL)
    snapshot = create_snapshot(store, spec, history_end - timedelta(days=30), history_end,
                               cache_root=Path(settings.state_dir) / "profiles")
    console.print(f"history: {len(history):,} labelled events; snapshot {snapshot.snapshot_id} "
                  f"({snapshot.rows:,} rows, {len(spec.numeric)} numeric + "
                  f"{len(spec.categorical)} categorical features from the FeatureService)")
    registry = ModelRegistry(settings.registry_uri)
    outcome = run_job(
        TrainingJob(model=MODEL, request_id=f"initial:{snapshot.snapshot_id}", reason="manual",
                    training_snapshot_id=snapshot.snapshot_id,
                    fresh=load_snapshot_frame(store, snapshot.snapshot_id)),
        spec, registry, Path(settings.state_dir) / "runs",
        load_config(None, {"max_steps": config.initial_steps}), progress=None,
    )
    assert outcome.version is not None
    if registry.get_alias(MODEL, "champion") is None:
        registry.set_alias(MODEL, "champion", outcome.version.version, expected=None)
    metrics = outcome.version.manifest.metrics
    console.print(f"champion v{outcome.version.version} trained "
                  f"(val loss {metrics.get('best_val_loss', float('nan')):.4f})")
    return store, history_end


def _live_pairs(config: DemoConfig, start: datetime) -> Any:
    from services.features.generate import CovariateShift, DriftSpec, Generator, GeneratorConfig

    shift_at = start + timedelta(seconds=config.shift_after_events / config.event_rate)
    drift = DriftSpec(covariate=tuple(
        CovariateShift(feature=name, start=shift_at, mean_shift=config.mean_shift,
                       scale=config.scale)
        for name in config.shifted
    ))
    gen = Generator(GeneratorConfig(seed=config.seed + 1, events_per_second=config.event_rate,
                                    drift=drift))
    return gen.live(start, config.live_events), shift_at


def _view(observed: Observed, services: dict[str, Any], replayed: int,
          config: DemoConfig, shift_at: datetime) -> Group:
    stages = Table(title="the loop", expand=True)
    stages.add_column("stage")
    stages.add_column("after", justify="right")
    stages.add_column("detail")
    for stage in (*STAGES[:-1], CONCEPT_STAGE):
        seen = observed.stages.get(stage)
        stages.add_row(("[green]✓ " if seen else "[dim]… ") + stage,
                       f"{seen[0]:.1f}s" if seen else "", seen[2] if seen else "")
    windows = Table(title="drift windows (PSI per feature; * = drifted)", expand=True)
    windows.add_column("#", justify="right")
    windows.add_column("event time")
    windows.add_column("ref")
    windows.add_column("share", justify="right")
    windows.add_column("top PSI")
    for i, report in list(enumerate(observed.reports, 1))[-8:]:
        top = sorted(report.features, key=lambda f: f.psi, reverse=True)[:5]
        windows.add_row(
            str(i), report.window.end_time.strftime("%H:%M:%S"),
            f"v{report.champion_version}",
            f"[{'red' if report.drifted else 'green'}]{report.drifted_share:.0%}",
            "  ".join(f"{f.name}{'*' if f.drifted else ''}={f.psi:.2f}" for f in top),
        )
    state = Table(title="services", expand=True)
    for column in ("replay", "ingest", "drift", "train", "shadow", "online"):
        state.add_column(column)
    state.add_row(
        f"{replayed:,}/{config.live_events:,} events\nshift at {shift_at:%H:%M:%S}",
        _describe(services.get("ingest"), "sink", "rows"),
        _stats(services.get("drift"), "windows", "requests"),
        _stats(services.get("train"), "trained", "failed"),
        f"{_counter(services.get('shadow'))} consumed",
        f"{_counter(services.get('online'))} consumed",
    )
    return Group(stages, windows, state)


def _counter(service: Any) -> str:
    return f"{service.loop.stats.consumed:,}" if service is not None else "-"


def _stats(service: Any, *names: str) -> str:
    if service is None:
        return "-"
    return "\n".join(f"{n}: {getattr(service.stats, n)}" for n in names)


def _describe(service: Any, attribute: str, field_name: str) -> str:
    if service is None:
        return "-"
    return f"{getattr(getattr(service, attribute), field_name):,} rows pushed"


def run_loop_demo(settings: Settings, console: Console, config: DemoConfig | None = None) -> int:
    """Run the whole loop; returns 0 only when a retrained candidate was promoted."""
    from services.cli.services import build_service
    from services.features.replay import replay
    from streams.producer import EventProducer

    config = config or DemoConfig()
    settings = settings.with_models({MODEL: config.model_options()})
    console.rule("4. Feast, history and champion v1")
    _, history_end = _prepare(settings, config, console)

    console.rule("5. services and the live stream")
    services = {name: build_service(name, settings)
                for name in ("ingest", "drift", "train", "shadow", "online")}
    threads = [threading.Thread(target=s.run, name=name, daemon=True)
               for name, s in services.items()]
    for thread in threads:
        thread.start()
    pairs, shift_at = _live_pairs(config, history_end + timedelta(seconds=1))
    console.print(f"replaying live events at {config.replay_rate:,.0f}/s until the loop closes; "
                  f"{', '.join(config.shifted)} shift by {config.mean_shift} sd (x{config.scale} "
                  f"spread) from event {config.shift_after_events:,}")
    counter = {"replayed": 0}
    stop_replay = threading.Event()

    def until_stopped() -> Any:
        for pair in pairs:
            if stop_replay.is_set():
                return
            yield pair

    def run_replay() -> None:
        with EventProducer(settings, "demo-replay") as producer:
            replay(producer, settings, until_stopped(), rate=config.replay_rate,
                   on_progress=lambda n: counter.__setitem__("replayed", counter["replayed"] + n))

    replayer = threading.Thread(target=run_replay, name="replay", daemon=True)
    replayer.start()
    observed = Observed()
    watcher = TopicWatcher(settings)
    deadline = time.monotonic() + config.timeout_s
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while time.monotonic() < deadline:
                watcher.poll(observed)
                live.update(_view(observed, services, counter["replayed"], config, shift_at))
                if len(windows_after_promotion(observed)) >= config.quiet_windows:
                    break
                if not any(t.is_alive() for t in threads):
                    break
    finally:
        stop_replay.set()
        replayer.join(30)
        watcher.close()
        for service in services.values():
            service.stop()
        for thread in threads:
            thread.join(30)
    after = windows_after_promotion(observed)[: config.quiet_windows]
    if len(after) == config.quiet_windows and not any(r.drifted for r in after):
        observed.mark("quiet after promotion", after[-1].window.end_time,
                      f"{len(after)} windows against v{after[-1].champion_version}, none drifted")
    _print_timeline(observed, console, shift_at)
    _write_report(settings, console)
    problems = main_path_problems(observed, config.quiet_windows)
    if problems:
        missing = [s for s in STAGES if s not in observed.stages]
        console.print(f"[red]the loop did not take its main path within "
                      f"{config.timeout_s:.0f}s: {'; '.join(problems)}"
                      + (f" (missing: {', '.join(missing)})" if missing else "") + "[/]")
        return 1
    console.print(f"one trace from the drift decision to the promotion: trace id "
                  f"{observed.promotion_trace}")
    return 0


def windows_after_promotion(observed: Observed) -> list[DriftReport]:
    """Windows judged against the promoted champion's reference, in event-time order."""
    if observed.promoted is None:
        return []
    version = observed.promoted.new_champion
    return sorted((r for r in observed.reports if r.champion_version == version),
                  key=lambda r: r.window.end_time)


def main_path_problems(observed: Observed, quiet_windows: int) -> list[str]:
    """Why the run is not the product's main path (empty: it is): the promoted candidate
    answers an episode that the drift monitor opened with its report ids, in the trace
    that began at its drift decision, and the first ``quiet_windows`` windows against the
    new champion did not drift."""
    promoted = observed.promoted
    if promoted is None:
        return ["no promotion"]
    request_id = observed.candidates.get(promoted.new_champion)
    request = observed.requests.get(request_id or "")
    if request is None:
        return [f"v{promoted.new_champion} answers no retrain request seen"]
    opener = observed.requests.get(request.episode)
    problems = []
    if opener is None or opener.reason != "covariate" or not opener.drift_report_ids:
        what = f"a {opener.reason} request" if opener else "an unseen request"
        problems.append(f"the episode was opened by {what}, not by the drift monitor")
    elif observed.request_traces.get(opener.request_id) != observed.promotion_trace:
        problems.append("the promotion is not in the trace of the drift decision")
    after = windows_after_promotion(observed)[:quiet_windows]
    if len(after) < quiet_windows:
        problems.append(f"{len(after)} of {quiet_windows} windows against the new champion")
    elif any(r.drifted for r in after):
        problems.append(f"{sum(r.drifted for r in after)} of the first {quiet_windows} windows "
                        "against the new champion drifted")
    return problems


def _print_timeline(observed: Observed, console: Console, shift_at: datetime) -> None:
    table = Table(title="timeline", expand=True)
    table.add_column("stage")
    table.add_column("wall time", justify="right")
    table.add_column("event time")
    table.add_column("detail")
    table.add_row("covariate shift injected", "", f"{shift_at:%H:%M:%S}", "")
    for stage in (*STAGES, CONCEPT_STAGE):
        seen = observed.stages.get(stage)
        if seen is None:
            table.add_row(f"[red]{stage}" if stage in STAGES else stage, "-", "-",
                          "not reached" if stage in STAGES else "no concept alarm")
            continue
        wall, event_time, detail = seen
        table.add_row(stage, f"{wall:.1f}s", f"{event_time:%H:%M:%S}" if event_time else "",
                      detail)
    after = [r for r in observed.reports if (r.champion_version or 0) > 1]
    if after:
        table.add_row("windows against the new champion", "", "",
                      f"{len(after)} (drifted: {sum(r.drifted for r in after)})")
    console.print(Panel(table))


def _write_report(settings: Settings, console: Console) -> None:
    from services.report.collect import collect
    from services.report.render import render_report

    try:
        data = collect(settings, MODEL)
        path = Path(settings.state_dir) / "report.html"
        path.write_text(render_report(data))
        console.print(f"HTML report: {path}")
    except Exception as exc:  # the report is a bonus; the loop's verdict stands
        console.print(f"[yellow]report not written: {exc}[/]")
