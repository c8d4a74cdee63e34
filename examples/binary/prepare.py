"""Write the phishing example's files from river's bundled Phishing dataset (no network).

    python -m examples.binary.prepare --out phishing-data

``history.parquet``: page views drawn from the dataset, for
``driftloop data load --model phishing``. ``live.parquet``: the next page views, for
``driftloop data send --model phishing``; from row ``--shift-at`` on, five signals are
mirrored (x -> 1 - x): the pages changed, and the champion's mapping no longer fits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from examples.events import arguments, event_frame, write_files

SHIFTED = ("empty_server_form_handler", "popup_window", "https", "age_of_domain", "ip_in_url")


def dataset() -> tuple[pd.DataFrame, np.ndarray]:
    """The 1,250 pages: nine signals each, and 1.0 for a phishing page."""
    from river.datasets import Phishing

    rows = list(Phishing())
    x = pd.DataFrame([features for features, _ in rows], dtype=np.float64)
    return x, np.array([float(label) for _, label in rows])


def main(argv: Sequence[str] | None = None) -> None:
    """Draw history and live rows (with replacement), shift the live ones, write both."""
    args = arguments(__doc__, argv)
    x, y = dataset()
    rng = np.random.default_rng(args.seed)
    drawn = rng.integers(len(x), size=args.history + args.live)
    rows = x.iloc[drawn].reset_index(drop=True)
    late = np.arange(len(rows)) >= args.history + args.shift_at
    rows.loc[late, list(SHIFTED)] = 1.0 - rows.loc[late, list(SHIFTED)]
    frame = event_frame(rows, y[drawn], [f"site-{i}" for i in drawn], entity="site_id",
                        label="is_phishing", rate=args.rate,
                        start=args.history_end - (args.history / args.rate) * pd.Timedelta("1s"))
    write_files(args.out, frame.iloc[:args.history], frame.iloc[args.history:])


if __name__ == "__main__":
    main()
