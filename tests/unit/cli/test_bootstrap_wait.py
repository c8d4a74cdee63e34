"""``driftloop bootstrap --wait``'s loop: polls until an answer, gives up at the deadline."""

from __future__ import annotations

from services.cli.bootstrap import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_wait_returns_the_first_answer() -> None:
    clock = FakeClock()
    answers = iter([None, None, 3])
    assert wait_for(lambda: next(answers), 60, interval_s=5, clock=clock,
                    sleep=clock.sleep) == 3
    assert clock.slept == [5, 5]


def test_wait_gives_up_at_the_deadline_without_oversleeping() -> None:
    clock = FakeClock()
    calls = []
    assert wait_for(lambda: calls.append(clock.now), 12, interval_s=5, clock=clock,
                    sleep=clock.sleep) is None
    assert calls == [0, 5, 10, 12]  # the last look is at the deadline, not after it
    assert clock.now == 12


def test_a_zero_timeout_looks_once() -> None:
    clock = FakeClock()
    assert wait_for(lambda: 1, 0, clock=clock, sleep=clock.sleep) == 1
    assert wait_for(lambda: None, 0, clock=clock, sleep=clock.sleep) is None
    assert clock.slept == []
