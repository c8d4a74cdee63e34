"""Write the friedman example's files from river's FriedmanDrift stream (no network).

    python -m examples.regression.prepare --out friedman-data

The stream's global recurring abrupt drift (``drift_type="gra"``) changes the target's
function at live row ``--shift-at``; the same row on, the sensors of x0, x1 and x2 are
recalibrated (x -> 0.4 + 0.6 x), a change of the inputs the drift monitor sees.
``history.parquet`` feeds ``driftloop data load --model friedman``, ``live.parquet``
``driftloop data send --model friedman``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from examples.events import arguments, event_frame, write_files

SHIFTED = ("x0", "x1", "x2")
MACHINES = 50


def stream(rows: int, drift_at: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """``rows`` draws of FriedmanDrift whose concept changes at row ``drift_at``."""
    from river.datasets import synth

    data = synth.FriedmanDrift(drift_type="gra", position=(drift_at, rows + 1), seed=seed)
    pairs = list(data.take(rows))
    x = pd.DataFrame([{f"x{k}": v for k, v in features.items()} for features, _ in pairs],
                     dtype=np.float64)
    return x, np.array([float(target) for _, target in pairs])


def main(argv: Sequence[str] | None = None) -> None:
    """Generate history then live rows, recalibrate the late ones, write both."""
    args = arguments(__doc__, argv)
    shift = args.history + args.shift_at
    rows, y = stream(args.history + args.live, shift, args.seed)
    late = np.arange(len(rows)) >= shift
    rows.loc[late, list(SHIFTED)] = 0.4 + 0.6 * rows.loc[late, list(SHIFTED)]
    machines = np.random.default_rng(args.seed).integers(MACHINES, size=len(rows))
    frame = event_frame(rows, y, [f"machine-{m}" for m in machines], entity="machine_id",
                        label="target", rate=args.rate,
                        start=args.history_end - (args.history / args.rate) * pd.Timedelta("1s"))
    write_files(args.out, frame.iloc[:args.history], frame.iloc[args.history:])


if __name__ == "__main__":
    main()
