"""Event times of a learner's recent events, by learned count, in bounded memory (pure).

A drift signal says where the change began in learned events back
(:class:`~services.online.learner.DriftSignal`); a retrain request needs it as an event
time. This keeps the time of every ``every``-th learned event, the newest ``capacity``
of them (default: one in 4 over the last 65,536 events, 128 KiB as packed floats), and
answers the time of a learned count rounded *up* to a kept one: later, never earlier,
than the event asked for, so the fresh data it starts never reaches back before it. A
count older than what is kept gets the oldest kept time (later than asked: some
post-change data left out, no pre-change data let in).

The time recorded is the event's feature event time where the service knows it, else
its label's; labels trail their features, so a label time makes the estimate later still.
"""

from __future__ import annotations

from array import array
from datetime import UTC, datetime

__all__ = ["EventTimeline"]


class EventTimeline:
    """The event times of one learner's recent events, one in ``every``."""

    def __init__(self, every: int = 4, capacity: int = 16_384) -> None:
        if every < 1 or capacity < 1:
            raise ValueError("every and capacity must be at least 1")
        self.every = every
        self.capacity = capacity
        self._times = array("d")  # POSIX seconds, a ring of ``capacity``
        self._head = 0  # the slot the next time goes into once the ring is full
        self._last = 0  # learned count of the newest kept time (0: none)

    def __len__(self) -> int:
        return len(self._times)

    def record(self, learned: int, at: datetime) -> None:
        """Note that learned event number ``learned`` (1-based) happened at ``at``.

        A count at or below the newest kept one, or a gap in the counts, starts the
        record over (a fresh learner, a restored older state).
        """
        if learned % self.every:
            return
        if learned <= self._last or (self._last and learned - self._last != self.every):
            self._times = array("d")
            self._head = 0
        ts = at.timestamp()
        if len(self._times) < self.capacity:
            self._times.append(ts)
        else:
            self._times[self._head] = ts
            self._head = (self._head + 1) % self.capacity
        self._last = learned

    def time_of(self, learned: int) -> datetime | None:
        """The time of learned event ``learned`` rounded up to a kept one, the oldest
        kept time if it is older than that; None when it is newer than the newest kept
        (the caller knows a later time: its own event's)."""
        n = len(self._times)
        if not n:
            return None
        kept = -(-max(learned, 1) // self.every) * self.every  # round up
        if kept > self._last:
            return None
        back = min((self._last - kept) // self.every, n - 1)  # 0: the newest
        oldest = self._head if n == self.capacity else 0
        slot = (oldest + n - 1 - back) % n
        return datetime.fromtimestamp(self._times[slot], UTC)
