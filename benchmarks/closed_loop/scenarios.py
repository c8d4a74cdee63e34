"""Scenarios with a known change: seeded rows for history, the live stream and a
held-out post-change sample (pure numpy/pandas).

Six standard-normal inputs ``x0``..``x5`` drive one hidden score
``s = w . x + 0.5 (x0^2 - 1)`` (``w`` drawn from the seed, norm 1.5); the label follows
the task: binary ``Bernoulli(sigmoid(s))``, multiclass (classes 0, 1, 2) the most likely
class of ``1.5 s c_k + v_k . x`` with Gumbel noise (``c = -1, 0, 1``), regression
``20 + 5 s + N(0, 1)``. Live events are spaced so that one drift window of ``window``
events spans ``window_minutes`` of event time. The change starts at live window
``change_window``:

* ``no_drift``: nothing changes;
* ``covariate``: ``x0``, ``x1``, ``x2`` move by 1.5 sd at once; labels follow the same
  function of the moved inputs;
* ``covariate_long``: the same draw as ``covariate`` for the same seed, in windows of
  four times the events (``SCENARIO_WINDOW_SCALE``: the online learner asks first) and a
  longer stream (``SCENARIO_WINDOWS``): at least 40 windows after the promotion, to see
  whether the loop stays quiet against the new champion;
* ``concept``: the inputs stay; the score's weights change (``w`` reversed, half of it
  negated), so the same inputs carry other labels;
* ``gradual``: the covariate move, ramped linearly over ``ramp_windows`` windows;
* ``recurring``: ``x2``, ``x3``, ``x4`` follow a daily cycle of 0.6 sd, in the history
  (four days and more) as in the live stream, and windows span two hours: nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

FEATURES = ("x0", "x1", "x2", "x3", "x4", "x5")
SHIFTED = (0, 1, 2)  # column indexes moved by covariate / gradual
CYCLIC = (2, 3, 4)  # column indexes following the daily cycle (recurring)
SHIFT_SD = 1.5
CYCLE_SD = 0.6
DAY_S = 86_400.0
CLASSES = (0, 1, 2)
SCENARIOS = ("no_drift", "covariate", "covariate_long", "concept", "gradual", "recurring")
# The data each scenario draws (``covariate_long`` is ``covariate``'s, longer).
KINDS = {"covariate_long": "covariate"}
TASKS = ("binary", "multiclass", "regression")
LIVE_WINDOWS = 48  # live windows per run by default ...
# ... and per scenario: a concept episode's first candidate learns from the few rows
# after the change and is refined once (retrain.concept_refine_rows); the stream goes on
# long enough for that refinement to be trained and decided in shadow. covariate_long
# wants >= 40 windows against its promoted champion.
SCENARIO_WINDOWS = {"concept": 80, "covariate_long": 80}
# Events per window, as a multiple of the run's ``--window``: covariate_long's windows
# hold four times as many events (the demo's are 5,000), so the drift monitor's two
# windows take longer than the online learner's detection and its first few hundred
# labelled rows: the online learner asks first, and its candidate is trained before the
# monitor joins (the race of the demo's model on a long stream).
SCENARIO_WINDOW_SCALE = {"covariate_long": 4}
ENTITY, EVENT_KEY, LABEL = "unit_id", "event_id", "target"


@dataclass(frozen=True)
class Scenario:
    """One scenario of one task and seed, with its stream's shape."""

    name: str
    task: str
    seed: int = 0
    events: int = 12_000  # live events
    window: int = 250  # events per drift window
    history: int = 3_000
    change_window: int = 10  # the live window where the change starts
    ramp_windows: int = 8  # gradual: windows from no move to the full move
    window_minutes: float = 5.0  # event time one window spans
    label_delay_s: float = 30.0  # event time from an event to its label
    heldout: int = 2_000
    start: datetime | None = None  # the live start; default: a midnight some days back

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r}; known: {', '.join(SCENARIOS)}")
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; known: {', '.join(TASKS)}")
        if self.window < 1 or self.events < self.window:
            raise ValueError("events must hold at least one window")
        if self.start is None:  # fixed once, so every part of a run agrees on it
            span = timedelta(seconds=self.events * self.spacing_s)
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            object.__setattr__(self, "start", today - timedelta(days=2 + span.days))

    @classmethod
    def make(cls, name: str, task: str, **options: object) -> Scenario:
        """A scenario with its own defaults: two-hour windows for ``recurring``."""
        scenario = cls(name=name, task=task, **options)  # type: ignore[arg-type]
        if KINDS.get(name, name) == "recurring" and "window_minutes" not in options:
            scenario = replace(scenario, window_minutes=120.0, start=None)
        return scenario

    @property
    def model(self) -> str:
        """The model's name (its FeatureService in :mod:`.feast_models`)."""
        return f"cl_{self.task}"

    @property
    def spacing_s(self) -> float:
        """Event-time seconds between two events."""
        return self.window_minutes * 60.0 / self.window

    @property
    def windows(self) -> int:
        """Full live windows."""
        return self.events // self.window

    @property
    def kind(self) -> str:
        """The data this scenario draws: its name, or the scenario it is a variant of."""
        return KINDS.get(self.name, self.name)

    @property
    def has_change(self) -> bool:
        return self.kind in ("covariate", "concept", "gradual")

    @property
    def live_start(self) -> datetime:
        """When the live stream starts (a midnight, so the history's days are whole)."""
        assert self.start is not None
        return self.start

    @property
    def history_spacing_s(self) -> float:
        """History spans at least four days for ``recurring`` (the cycle is in it)."""
        if self.kind == "recurring":
            return max(self.spacing_s, 4.5 * DAY_S / self.history)
        return self.spacing_s

    def offset_s(self, index: int) -> float:
        """Event-time seconds from the live start to live event ``index``."""
        return index * self.spacing_s

    @property
    def change_time(self) -> datetime | None:
        """When the change starts (None without one)."""
        if not self.has_change:
            return None
        return self.live_start + timedelta(seconds=self.offset_s(self.change_window * self.window))

    @property
    def settled_time(self) -> datetime | None:
        """When the data reaches its final state (the ramp's end; the change itself when
        abrupt)."""
        if self.change_time is None:
            return None
        ramp = self.ramp_windows * self.window if self.kind == "gradual" else 0
        return self.live_start + timedelta(
            seconds=self.offset_s(self.change_window * self.window + ramp))


def _weights(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``w`` (norm 1.5), the concept-changed ``w``, and the multiclass ``v`` (3 x 6)."""
    rng = np.random.default_rng([seed, 3])
    w = rng.standard_normal(len(FEATURES))
    w *= 1.5 / np.linalg.norm(w)
    changed = w[::-1].copy()
    changed[: len(FEATURES) // 2] *= -1.0
    v = 0.5 * rng.standard_normal((len(CLASSES), len(FEATURES)))
    return w, changed, v


def _move(scenario: Scenario, offsets: np.ndarray) -> np.ndarray:
    """The covariate move's weight (0..1) at each event-time offset from the live start."""
    if scenario.kind not in ("covariate", "gradual"):
        return np.zeros_like(offsets)
    start = scenario.offset_s(scenario.change_window * scenario.window)
    if scenario.kind == "covariate":
        return (offsets >= start).astype(np.float64)
    ramp = scenario.offset_s(scenario.ramp_windows * scenario.window)
    return np.clip((offsets - start) / ramp, 0.0, 1.0)


def _concept(scenario: Scenario, offsets: np.ndarray) -> np.ndarray:
    """Whether the changed concept holds at each offset."""
    if scenario.kind != "concept":
        return np.zeros(offsets.shape, dtype=bool)
    return offsets >= scenario.offset_s(scenario.change_window * scenario.window)


def draw(scenario: Scenario, offsets: np.ndarray, rng: np.random.Generator,
         *, final: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[n, 6]`` and labels ``[n]`` at event-time ``offsets`` (seconds from the
    live start); ``final``: in the data's final state whatever the offset."""
    n = len(offsets)
    x = rng.standard_normal((n, len(FEATURES)))
    moved = np.ones(n) if final and scenario.kind in ("covariate", "gradual") else _move(
        scenario, offsets)
    x[:, list(SHIFTED)] += SHIFT_SD * moved[:, None]
    if scenario.kind == "recurring":
        start_s = scenario.live_start.timestamp()
        phase = np.sin(2.0 * np.pi * ((start_s + offsets) % DAY_S) / DAY_S)
        x[:, list(CYCLIC)] += CYCLE_SD * phase[:, None]
    w, changed, v = _weights(scenario.seed)
    concept = np.ones(n, dtype=bool) if final and scenario.kind == "concept" else _concept(
        scenario, offsets)
    score = np.where(concept, x @ changed, x @ w) + 0.5 * (x[:, 0] ** 2 - 1.0)
    if scenario.task == "binary":
        y = (rng.random(n) < 1.0 / (1.0 + np.exp(-score))).astype(np.float64)
    elif scenario.task == "multiclass":
        logits = 1.5 * score[:, None] * np.array([-1.0, 0.0, 1.0]) + x @ v.T
        y = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1).astype(np.float64)
    else:
        y = 20.0 + 5.0 * score + rng.standard_normal(n)
    return x, y


def _frame(scenario: Scenario, offsets: np.ndarray, x: np.ndarray, y: np.ndarray,
           prefix: str, rng: np.random.Generator) -> pd.DataFrame:
    times = pd.Timestamp(scenario.live_start) + pd.to_timedelta(offsets, unit="s")
    frame = pd.DataFrame({
        EVENT_KEY: [f"{prefix}-{scenario.name}-{scenario.seed}-{i}" for i in range(len(x))],
        ENTITY: [f"unit-{u}" for u in rng.integers(200, size=len(x))],
        "event_timestamp": times,
    })
    for j, name in enumerate(FEATURES):
        frame[name] = x[:, j].round(6)
    frame[LABEL] = y
    frame["label_time"] = times + pd.Timedelta(seconds=scenario.label_delay_s)
    return frame


def history_frame(scenario: Scenario) -> pd.DataFrame:
    """The labelled history before the live start (what champion v1 is trained on)."""
    rng = np.random.default_rng([scenario.seed, 0])
    offsets = -scenario.history_spacing_s * np.arange(scenario.history, 0, -1, dtype=np.float64)
    x, y = draw(scenario, offsets, rng)
    return _frame(scenario, offsets, x, y, "h", rng)


def live_frame(scenario: Scenario) -> pd.DataFrame:
    """The live stream, in event-time order."""
    rng = np.random.default_rng([scenario.seed, 1])
    offsets = scenario.spacing_s * np.arange(scenario.events, dtype=np.float64)
    x, y = draw(scenario, offsets, rng)
    return _frame(scenario, offsets, x, y, "l", rng)


def heldout_frame(scenario: Scenario) -> pd.DataFrame:
    """Held-out rows of the data's final (post-change) state, after the live stream."""
    rng = np.random.default_rng([scenario.seed, 2])
    offsets = scenario.spacing_s * (scenario.events + np.arange(scenario.heldout,
                                                                dtype=np.float64))
    x, y = draw(scenario, offsets, rng, final=True)
    return _frame(scenario, offsets, x, y, "t", rng)
