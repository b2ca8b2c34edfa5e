"""The throttle on a fake clock: leading edge at once, trailing edge newest, one per window."""

from __future__ import annotations

from broadcaster.core.events import Event
from broadcaster.core.throttle import Throttle


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ev(seq: int, channel: str = "queue") -> Event:
    return Event(channel, seq, "queue_update", {"n": seq}, f"d{seq}", 0.0)


def test_first_change_goes_out_at_once() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    assert throttle.offer(ev(1)) == ev(1)
    assert throttle.next_deadline() is None
    assert throttle.due() == []


def test_changes_inside_the_window_coalesce_to_the_newest_at_its_end() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    throttle.offer(ev(1))
    clock.advance(0.1)
    assert throttle.offer(ev(2)) is None
    clock.advance(0.1)
    assert throttle.offer(ev(3)) is None
    assert throttle.offer(ev(4)) is None
    assert throttle.next_deadline() == 1001.0
    clock.advance(0.7)  # 0.9 s after the first send: still inside the window
    assert throttle.due() == []
    clock.advance(0.1)
    assert throttle.due() == [ev(4)]
    assert throttle.due() == []
    assert throttle.next_deadline() is None


def test_a_change_right_after_a_trailing_send_waits_a_whole_window() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    throttle.offer(ev(1))
    clock.advance(0.5)
    throttle.offer(ev(2))
    clock.advance(0.5)
    assert throttle.due() == [ev(2)]  # sent at t=1.0
    clock.advance(0.2)
    assert throttle.offer(ev(3)) is None
    assert throttle.next_deadline() == 1002.0
    clock.advance(0.8)
    assert throttle.due() == [ev(3)]


def test_after_a_quiet_window_the_next_change_is_a_leading_edge_again() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    throttle.offer(ev(1))
    clock.advance(1.0)
    assert throttle.offer(ev(2)) == ev(2)
    clock.advance(5.0)
    assert throttle.offer(ev(3)) == ev(3)


def test_channels_are_throttled_independently() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    assert throttle.offer(ev(1, "queue")) == ev(1, "queue")
    assert throttle.offer(ev(1, "workflows")) == ev(1, "workflows")
    clock.advance(0.25)
    assert throttle.offer(ev(2, "queue")) is None
    clock.advance(0.25)
    assert throttle.offer(ev(2, "workflows")) is None
    clock.advance(0.5)
    assert throttle.due() == [ev(2, "queue"), ev(2, "workflows")]  # both windows ended at t=1.0


def test_due_returns_channels_in_deadline_order() -> None:
    clock = FakeClock()
    throttle = Throttle(1.0, clock=clock)
    throttle.offer(ev(1, "b"))
    clock.advance(0.5)
    throttle.offer(ev(1, "a"))
    throttle.offer(ev(2, "b"))  # due at 1001.0
    clock.advance(0.1)
    throttle.offer(ev(2, "a"))  # due at 1001.5
    clock.advance(2.0)
    assert throttle.due() == [ev(2, "b"), ev(2, "a")]


def test_zero_interval_sends_everything_at_once() -> None:
    clock = FakeClock()
    throttle = Throttle(0.0, clock=clock)
    assert [throttle.offer(ev(n)) for n in (1, 2, 3)] == [ev(1), ev(2), ev(3)]
