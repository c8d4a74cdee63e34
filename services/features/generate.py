"""Seeded synthetic card-payment events with a known labelling function and controllable drift.

Pure numpy/pandas: the same seed, start time and drift give the same rows, whatever
the chunking. History is one DataFrame; live traffic is an iterator of
``(FeatureEvent, LabelEvent)`` pairs for replay into Kafka.

Drift is applied in event time, from a given instant, abrupt or ramped linearly:

- covariate shift moves P(x): a numeric feature's mean (in units of its base standard
  deviation) and scale, or a categorical feature's mix; labels still follow the base
  labelling function of the shifted features.
- concept shift moves P(y | x): the labelling function blends towards a different one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from streams.contracts import FeatureEvent, LabelEvent

MODEL = "fraud"
CHANNELS = ("online", "pos", "atm", "contactless")
CHANNEL_P = (0.35, 0.45, 0.08, 0.12)
MERCHANTS = (
    "grocery",
    "electronics",
    "travel",
    "gaming",
    "fuel",
    "restaurant",
    "fashion",
    "gambling",
)
MERCHANT_P = (0.25, 0.1, 0.08, 0.07, 0.15, 0.18, 0.12, 0.05)
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "BR", "NG", "IN")
COUNTRY_P = (0.3, 0.15, 0.15, 0.12, 0.08, 0.08, 0.05, 0.07)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[float, ...]]] = {
    "channel": (CHANNELS, CHANNEL_P),
    "merchant_category": (MERCHANTS, MERCHANT_P),
    "country": (COUNTRIES, COUNTRY_P),
}
NUMERIC = (
    "amount",
    "amount_log",
    "merchant_risk_score",
    "distance_from_home_km",
    "minutes_since_last_txn",
    "hour_of_day",
    "amount_to_avg_ratio",
    "txn_count_1h",
    "txn_count_24h",
    "avg_amount_7d",
    "card_age_days",
    "account_balance",
    "velocity_score",
    "failed_pins_24h",
)
FEATURES = (*NUMERIC[:7], *CATEGORIES, *NUMERIC[7:])
"""Column order of generated frames (matches the ``fraud`` FeatureService)."""
LABEL = "is_fraud"
CHUNK = 8192

# Labelling function: logit = intercept + sum(w * standardised feature) + category effects.
BASE_WEIGHTS: dict[str, float] = {
    "amount_log": 0.9,
    "merchant_risk_score": 1.1,
    "distance_from_home_km": 0.7,
    "amount_to_avg_ratio": 0.6,
    "velocity_score": 0.8,
    "failed_pins_24h": 0.7,
    "card_age_days": -0.5,
    "minutes_since_last_txn": -0.3,
}
BASE_EFFECTS: dict[str, dict[str, float]] = {
    "channel": {"online": 0.9, "atm": 0.4, "pos": -0.4, "contactless": -0.2},
    "merchant_category": {"gambling": 1.0, "electronics": 0.6, "travel": 0.3, "grocery": -0.5},
    "country": {"NG": 0.8, "BR": 0.4},
}
CONCEPT_WEIGHTS: dict[str, float] = {
    "amount_log": -0.2,
    "merchant_risk_score": 0.2,
    "distance_from_home_km": 1.4,
    "hour_of_day": 0.9,
    "txn_count_1h": 1.0,
    "account_balance": -0.8,
    "card_age_days": 0.4,
}
CONCEPT_EFFECTS: dict[str, dict[str, float]] = {
    "channel": {"contactless": 1.2, "online": -0.3},
    "merchant_category": {"fuel": 0.9, "fashion": 0.6},
    "country": {"GB": 0.7, "DE": 0.5},
}
INTERCEPT = -3.8


@dataclass(frozen=True, slots=True)
class CovariateShift:
    """Shift one feature's distribution from ``start``, reaching full size after ``ramp``.

    Numeric: ``x -> mu + (x - mu) * scale + mean_shift * sigma`` (base mu/sigma).
    Categorical: with the drift weight's probability a value is redrawn from ``mix``.
    """

    feature: str
    start: datetime
    ramp: timedelta = timedelta(0)
    mean_shift: float = 0.0
    scale: float = 1.0
    mix: Mapping[str, float] | None = None


@dataclass(frozen=True, slots=True)
class ConceptShift:
    """From ``start`` (ramped over ``ramp``) labels follow the shifted labelling function.

    ``strength`` in [0, 1] is how far the coefficients move from base to shifted.
    """

    start: datetime
    ramp: timedelta = timedelta(0)
    strength: float = 1.0


@dataclass(frozen=True, slots=True)
class DriftSpec:
    """All drift applied to generated data; empty means stationary."""

    covariate: tuple[CovariateShift, ...] = ()
    concept: ConceptShift | None = None

    @classmethod
    def from_options(
        cls,
        *,
        live_start: datetime,
        covariate_features: Sequence[str] = (),
        covariate_at: float | None = None,
        covariate_ramp: float = 0.0,
        mean_shift: float = 0.0,
        scale: float = 1.0,
        mix: str | None = None,
        concept_at: float | None = None,
        concept_ramp: float = 0.0,
        concept_strength: float = 1.0,
    ) -> DriftSpec:
        """Build from CLI-style options; ``*_at``/``*_ramp`` are seconds after ``live_start``.

        ``mix`` is ``"value=p,value=p"`` and applies to each categorical feature listed.
        """
        shifts: list[CovariateShift] = []
        if covariate_features and covariate_at is not None:
            start = live_start + timedelta(seconds=covariate_at)
            mix_map = parse_mix(mix) if mix else None
            for name in covariate_features:
                if name not in FEATURES:
                    raise ValueError(f"unknown feature {name!r}")
                is_cat = name in CATEGORIES
                if is_cat and mix_map is None:
                    raise ValueError(f"categorical feature {name} needs --mix")
                shifts.append(
                    CovariateShift(
                        feature=name,
                        start=start,
                        ramp=timedelta(seconds=covariate_ramp),
                        mean_shift=0.0 if is_cat else mean_shift,
                        scale=1.0 if is_cat else scale,
                        mix=mix_map if is_cat else None,
                    )
                )
        concept = None
        if concept_at is not None:
            concept = ConceptShift(
                start=live_start + timedelta(seconds=concept_at),
                ramp=timedelta(seconds=concept_ramp),
                strength=concept_strength,
            )
        return cls(covariate=tuple(shifts), concept=concept)


def parse_mix(text: str) -> dict[str, float]:
    """``"online=0.7,pos=0.3"`` -> normalised probabilities."""
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    mix = {k.strip(): float(v) for k, v in pairs}
    total = sum(mix.values())
    if total <= 0 or any(v < 0 for v in mix.values()):
        raise ValueError(f"bad category mix {text!r}")
    return {k: v / total for k, v in mix.items()}


@dataclass(frozen=True, slots=True)
class GeneratorConfig:
    """What to generate: seed, population size, event-time rate and drift."""

    seed: int = 0
    n_cards: int = 5000
    events_per_second: float = 100.0
    label_delay_s: float = 30.0
    missing_rate: float = 0.0
    drift: DriftSpec = field(default_factory=DriftSpec)


def ramp_weight(times_ns: np.ndarray, start: datetime, ramp: timedelta) -> np.ndarray:
    """Drift weight in [0, 1] per row: 0 before ``start``, 1 after ``start + ramp``."""
    t0 = pd.Timestamp(start).value
    dt = times_ns.astype(np.float64) - t0
    width = ramp.total_seconds() * 1e9
    if width <= 0:
        return (dt >= 0).astype(np.float64)
    return np.clip(dt / width, 0.0, 1.0)


def _rng(seed: int, stream: int, chunk: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream, chunk]))


def _card_table(seed: int, n_cards: int) -> dict[str, np.ndarray]:
    rng = _rng(seed, 99, 0)
    return {
        "age": rng.uniform(20, 3650, n_cards),
        "balance": rng.lognormal(7.5, 1.0, n_cards),
        "avg": rng.lognormal(3.6, 0.5, n_cards),
    }


def _sample(rng: np.random.Generator, n: int, cards: dict[str, np.ndarray]) -> pd.DataFrame:
    """Base (unshifted) feature values for ``n`` events."""
    k = rng.integers(0, len(cards["age"]), n)
    avg = cards["avg"][k] * rng.lognormal(0, 0.1, n)
    amount = np.round(avg * rng.lognormal(0, 0.8, n), 2) + 0.01
    c1 = rng.poisson(0.6, n).astype(np.float64)
    cols: dict[str, np.ndarray] = {
        "card_index": k,
        "amount": amount,
        "merchant_risk_score": rng.beta(2, 6, n),
        "distance_from_home_km": rng.exponential(25, n),
        "minutes_since_last_txn": rng.exponential(600, n),
        "hour_of_day": rng.integers(0, 24, n).astype(np.float64),
        "txn_count_1h": c1,
        "txn_count_24h": c1 + rng.poisson(4, n),
        "avg_amount_7d": avg,
        "card_age_days": cards["age"][k],
        "account_balance": cards["balance"][k] * rng.lognormal(0, 0.2, n),
        "failed_pins_24h": rng.poisson(0.15, n).astype(np.float64),
    }
    for name, (values, p) in CATEGORIES.items():
        cols[name] = np.asarray(values, dtype=object)[rng.choice(len(values), n, p=p)]
    return pd.DataFrame(cols)


def _derive(frame: pd.DataFrame, rng: np.random.Generator) -> None:
    frame["amount_log"] = np.log1p(frame["amount"])
    frame["amount_to_avg_ratio"] = frame["amount"] / frame["avg_amount_7d"].clip(lower=0.01)
    frame["velocity_score"] = (
        0.5 * frame["txn_count_1h"] + 0.1 * frame["txn_count_24h"] + rng.normal(0, 0.2, len(frame))
    )


_DERIVED = ("amount_log", "amount_to_avg_ratio", "velocity_score")
_NON_NEGATIVE = set(NUMERIC) - {"velocity_score"}


def _moments(seed: int, cards: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    frame = _sample(_rng(seed, 98, 0), 20000, cards)
    _derive(frame, _rng(seed, 97, 0))
    return {n: (float(frame[n].mean()), float(frame[n].std())) for n in NUMERIC}


def _shift(
    frame: pd.DataFrame,
    times_ns: np.ndarray,
    shifts: Sequence[CovariateShift],
    moments: dict[str, tuple[float, float]],
    rng: np.random.Generator,
) -> None:
    for s in shifts:
        w = ramp_weight(times_ns, s.start, s.ramp)
        if not w.any():
            continue
        if s.feature in CATEGORIES:
            assert s.mix is not None
            values = np.asarray(list(s.mix), dtype=object)
            probs = np.asarray(list(s.mix.values()))
            redraw = rng.random(len(frame)) < w
            new = values[rng.choice(len(values), len(frame), p=probs)]
            frame[s.feature] = np.where(redraw, new, frame[s.feature].to_numpy())
        else:
            mu, sigma = moments[s.feature]
            x = frame[s.feature].to_numpy()
            shifted = mu + (x - mu) * (1 + (s.scale - 1) * w) + s.mean_shift * sigma * w
            if s.feature in _NON_NEGATIVE:
                shifted = np.clip(shifted, 0.0, None)
            frame[s.feature] = shifted


def _logit(
    frame: pd.DataFrame,
    weights: Mapping[str, float],
    effects: Mapping[str, Mapping[str, float]],
    moments: dict[str, tuple[float, float]],
) -> np.ndarray:
    z = np.full(len(frame), INTERCEPT)
    for name, w in weights.items():
        mu, sigma = moments[name]
        z += w * (np.nan_to_num(frame[name].to_numpy(np.float64), nan=mu) - mu) / sigma
    for name, table in effects.items():
        z += frame[name].map(table).fillna(0.0).to_numpy(np.float64)
    return z


def fraud_probability(
    frame: pd.DataFrame,
    times_ns: np.ndarray | None = None,
    concept: ConceptShift | None = None,
    *,
    seed: int = 0,
    n_cards: int = 5000,
) -> np.ndarray:
    """The true P(is_fraud = 1 | features) at each row's time (the known labelling function)."""
    moments = _moments(seed, _card_table(seed, n_cards))
    return _probability(frame, times_ns, concept, moments)


def _probability(
    frame: pd.DataFrame,
    times_ns: np.ndarray | None,
    concept: ConceptShift | None,
    moments: dict[str, tuple[float, float]],
) -> np.ndarray:
    z = _logit(frame, BASE_WEIGHTS, BASE_EFFECTS, moments)
    if concept is not None and times_ns is not None:
        w = concept.strength * ramp_weight(times_ns, concept.start, concept.ramp)
        if w.any():
            z = (1 - w) * z + w * _logit(frame, CONCEPT_WEIGHTS, CONCEPT_EFFECTS, moments)
    return 1.0 / (1.0 + np.exp(-z))


class Generator:
    """Deterministic event source for one seed; history and live are separate streams."""

    def __init__(self, config: GeneratorConfig | None = None) -> None:
        self.config = config or GeneratorConfig()
        self._cards = _card_table(self.config.seed, self.config.n_cards)
        self._moments = _moments(self.config.seed, self._cards)

    def chunk(self, stream: int, index: int, start: datetime, n: int = CHUNK) -> pd.DataFrame:
        """Rows ``[index*CHUNK, index*CHUNK + n)`` of a stream starting at ``start``.

        Always draws a whole chunk and keeps its first ``n`` rows, so a row's values
        never depend on how many rows were asked for.
        """
        if n < CHUNK:
            return self.chunk(stream, index, start, CHUNK).iloc[:n].reset_index(drop=True)
        cfg = self.config
        # One generator per purpose, so drift (which draws extra numbers) leaves every
        # other column, the labels' noise and the label delays untouched.
        seeds = np.random.SeedSequence([cfg.seed, stream, index]).spawn(6)
        sample, jitter, shift, derive, noise, delay_rng = (np.random.default_rng(s) for s in seeds)
        frame = _sample(sample, n, self._cards)
        # Row i sits in slot i of width 1/rate, jittered inside it: strictly increasing
        # times that do not depend on how the stream is chunked.
        step = 1e9 / cfg.events_per_second
        slots = np.arange(index * CHUNK, index * CHUNK + n, dtype=np.float64)
        offsets = (slots + jitter.uniform(0.0, 0.9, n)) * step
        times = (pd.Timestamp(start).value + offsets).astype(np.int64) // 1000 * 1000
        shifts = cfg.drift.covariate
        _shift(frame, times, [s for s in shifts if s.feature not in _DERIVED], self._moments, shift)
        _derive(frame, derive)
        _shift(frame, times, [s for s in shifts if s.feature in _DERIVED], self._moments, shift)
        if cfg.missing_rate > 0:
            for name in NUMERIC:
                frame.loc[noise.random(n) < cfg.missing_rate, name] = np.nan
        p = _probability(frame, times, cfg.drift.concept, self._moments)
        label = (noise.random(n) < p).astype(np.float64)
        delay = delay_rng.exponential(cfg.label_delay_s * 1e9, n).astype(np.int64) // 1000 * 1000
        prefix = "h" if stream == 0 else "l"
        first = index * CHUNK
        out = pd.DataFrame(
            {
                "event_id": [f"{prefix}{cfg.seed}-{i:010d}" for i in range(first, first + n)],
                "card_id": [f"card-{k:06d}" for k in frame["card_index"]],
                "event_timestamp": pd.to_datetime(times, utc=True),
                "label_time": pd.to_datetime(times + delay, utc=True),
            }
        )
        for name in FEATURES:
            out[name] = frame[name].to_numpy()
        out[LABEL] = label
        return out

    def rows(self, stream: int, start: datetime, total: int) -> Iterator[pd.DataFrame]:
        """A stream's first ``total`` rows, chunk by chunk."""
        for index in range(0, (total + CHUNK - 1) // CHUNK):
            yield self.chunk(stream, index, start, min(CHUNK, total - index * CHUNK))

    def history(self, end: datetime, rows: int) -> pd.DataFrame:
        """``rows`` labelled events ending near ``end`` (stream 0), as one frame."""
        span = timedelta(seconds=rows / self.config.events_per_second)
        start = end - span
        parts = list(self.rows(0, start, rows))
        if not parts:
            return self.chunk(0, 0, start, 0)
        return pd.concat(parts, ignore_index=True)

    def live(
        self, start: datetime, events: int, model: str = MODEL
    ) -> Iterator[tuple[FeatureEvent, LabelEvent]]:
        """``events`` live (feature, label) pairs from ``start`` (stream 1)."""
        for frame in self.rows(1, start, events):
            yield from frame_to_events(frame, model)


def frame_to_events(
    frame: pd.DataFrame, model: str = MODEL
) -> Iterator[tuple[FeatureEvent, LabelEvent]]:
    """Turn generated rows into contract events (NaN becomes null)."""
    cols = {name: frame[name].to_numpy() for name in FEATURES}
    numeric = set(NUMERIC)
    ids = frame["event_id"].to_numpy()
    cards = frame["card_id"].to_numpy()
    times = pd.DatetimeIndex(frame["event_timestamp"]).to_pydatetime()
    label_times = pd.DatetimeIndex(frame["label_time"]).to_pydatetime()
    labels = frame[LABEL].to_numpy()
    for i in range(len(frame)):
        features: dict[str, float | str | None] = {}
        for name, values in cols.items():
            v = values[i]
            if name in numeric:
                features[name] = None if v != v else float(v)
            else:
                features[name] = None if v is None else str(v)
        yield (
            FeatureEvent(
                event_id=ids[i],
                model=model,
                entity_id=cards[i],
                event_time=times[i],
                features=features,
            ),
            LabelEvent(
                event_id=ids[i], model=model, label=float(labels[i]), event_time=label_times[i]
            ),
        )


def now_utc() -> datetime:
    """The current time, whole seconds, UTC."""
    return datetime.now(UTC).replace(microsecond=0)
