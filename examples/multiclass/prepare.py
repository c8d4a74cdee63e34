"""Write the segments example's files from river's bundled ImageSegments (no network).

    python -m examples.multiclass.prepare --out segments-data

The seven class names become the numbers 0..6 (``CLASSES`` order), the label values
the model's task declares; feature names get underscores. ``history.parquet`` feeds
``driftloop data load --model segments``, ``live.parquet`` ``driftloop data send
--model segments``; from live row ``--shift-at`` on, the camera changed: the colour
measurements are mirrored within their range, so the champion confuses the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from examples.events import arguments, event_frame, write_files

CLASSES = ("brickface", "cement", "foliage", "grass", "path", "sky", "window")
SHIFTED = ("intensity_mean", "rawred_mean", "rawblue_mean", "rawgreen_mean", "value_mean",
           "exblue_mean", "saturation_mean", "hue_mean")


def dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """The 2,310 regions: 18 measurements each, and the class number."""
    from river.datasets import ImageSegments

    rows = list(ImageSegments())
    x = pd.DataFrame([features for features, _ in rows], dtype=np.float64)
    x.columns = [name.replace("-", "_") for name in x.columns]
    return x, np.array([float(CLASSES.index(label)) for _, label in rows])


def main(argv: Sequence[str] | None = None) -> None:
    """Draw history and live rows (with replacement), shift the live ones, write both."""
    args = arguments(__doc__, argv)
    x, y = dataset()
    rng = np.random.default_rng(args.seed)
    drawn = rng.integers(len(x), size=args.history + args.live)
    rows = x.iloc[drawn].reset_index(drop=True)
    late = np.arange(len(rows)) >= args.history + args.shift_at
    for name in SHIFTED:
        rows.loc[late, name] = x[name].min() + x[name].max() - rows.loc[late, name]
    frame = event_frame(rows, y[drawn], [f"region-{i}" for i in drawn], entity="image_id",
                        label="segment_class", rate=args.rate,
                        start=args.history_end - (args.history / args.rate) * pd.Timedelta("1s"))
    write_files(args.out, frame.iloc[:args.history], frame.iloc[args.history:])


if __name__ == "__main__":
    main()
