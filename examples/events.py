"""What the examples' ``prepare.py`` scripts share: rows in time, files out, options.

Each example turns a dataset into the file a user would bring: one row per event with
the entity key, ``event_timestamp``, the features, the label and ``label_time`` (here
a fixed delay after the event), ``history.parquet`` for ``driftloop data load`` and
``live.parquet`` for ``driftloop data send``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd


def arguments(doc: str | None, argv: Sequence[str] | None, *, history: int = 3000,
              live: int = 20_000, shift_at: int = 1000) -> argparse.Namespace:
    """The options every ``prepare.py`` takes."""
    yesterday = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    parser = argparse.ArgumentParser(description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("."), help="directory for the files")
    parser.add_argument("--history", type=int, default=history, help="history rows")
    parser.add_argument("--live", type=int, default=live, help="live rows")
    parser.add_argument("--shift-at", type=int, default=shift_at,
                        help="live row from which the data shifts")
    parser.add_argument("--history-end", type=datetime.fromisoformat,
                        default=yesterday - timedelta(days=1),
                        help="ISO time the history ends and the live rows start")
    parser.add_argument("--rate", type=float, default=10.0, help="events per second of event time")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.history_end.tzinfo is None:
        args.history_end = args.history_end.replace(tzinfo=UTC)
    return args


def event_frame(x: pd.DataFrame, y: np.ndarray, entities: Sequence[str], *, entity: str,
                label: str, start: datetime, rate: float,
                label_delay: timedelta = timedelta(seconds=2)) -> pd.DataFrame:
    """One row per event from ``start``, ``rate`` events per second of event time."""
    times = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(x)) / rate, unit="s")
    frame = pd.DataFrame({entity: list(entities), "event_timestamp": times})
    frame = pd.concat([frame, x.reset_index(drop=True)], axis=1)
    frame[label] = np.asarray(y, dtype=np.float64)
    frame["label_time"] = times + label_delay
    return frame


def write_files(out: Path, history: pd.DataFrame, live: pd.DataFrame) -> None:
    """``history.parquet`` and ``live.parquet`` in ``out``; one line saying what they hold."""
    out.mkdir(parents=True, exist_ok=True)
    history.to_parquet(out / "history.parquet", index=False)
    live.to_parquet(out / "live.parquet", index=False)
    print(f"{out / 'history.parquet'}: {len(history)} events "
          f"{history['event_timestamp'].min()} .. {history['event_timestamp'].max()}; "
          f"{out / 'live.parquet'}: {len(live)} events")
