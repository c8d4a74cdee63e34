"""Numbers, times and ids as the report prints them: each formatted as what it is
(counts as integers, losses to 4 significant digits, shares as percentages, p-values
in scientific notation when tiny), every result safe inside HTML."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from services.report.svg import esc

_SHARE_KEY = re.compile(r"(share|fraction|ratio)", re.I)


def fmt_num(value: float | None, digits: int = 3) -> str:
    """A number for a table cell: fixed decimals, scientific when tiny or huge."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def fmt_sig(value: float | None, digits: int = 4) -> str:
    """A measurement (a loss, a mean, a quantile) to ``digits`` significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if not math.isfinite(value):
        return fmt_num(float(value))
    if abs(value) >= 1e9:
        return f"{value:.{digits - 1}e}"
    if abs(value) >= 10 ** digits:  # whole part already has the digits: no exponent
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_p(value: float | None) -> str:
    """A p-value: four decimals, scientific below 1e-4, ``≈0`` when it underflowed."""
    if value is None:
        return "—"
    if value == 0:
        return "≈0"
    return f"{value:.1e}" if 0 < value < 1e-4 else f"{value:.4f}"


def fmt_share(value: float | None) -> str:
    """A share as a percentage."""
    return "—" if value is None or not math.isfinite(value) else f"{value * 100:.1f}%"


def fmt_metric(key: str, value: object) -> str:
    """A registry metric by what it is: whole numbers (row counts, steps, epochs) as
    integers, keys naming a share/fraction/ratio as percentages, anything else (losses,
    AUC, learning rates) to 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return esc(value)
    if isinstance(value, int) or (math.isfinite(value) and float(value).is_integer()
                                  and abs(value) >= 1 and not _SHARE_KEY.search(key)):
        return f"{int(value):,}"
    if _SHARE_KEY.search(key) and 0 <= value <= 1:
        return fmt_share(value)
    return fmt_sig(value)


def fmt_time(value: datetime | str | None) -> str:
    """UTC time to the second (ISO strings are parsed; anything else is shown escaped)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return esc(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def full_id(text: str | None, width: int = 12) -> str:
    """An id shown ``width`` characters wide but whole in the page: the full text is on
    hover (``title``) and is what a copy takes (the cut is CSS, not in the text)."""
    if not text:
        return "—"
    return (f'<code class="id" style="max-width:{int(width) + 1}ch" title="{esc(text)}">'
            f"{esc(text)}</code>")
