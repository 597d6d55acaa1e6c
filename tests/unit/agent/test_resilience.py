from agent.resilience import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_failures_within_window():
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, window=60, cooldown=30, clock=clock)
    for _ in range(4):
        breaker.record_failure()
        clock.now += 10
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()


def test_failures_outside_the_window_do_not_count():
    clock = Clock()
    breaker = CircuitBreaker(threshold=5, window=60, cooldown=30, clock=clock)
    for _ in range(10):
        breaker.record_failure()
        clock.now += 16  # never 5 within 60 s
    assert breaker.state is BreakerState.CLOSED


def test_success_resets_the_count():
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, window=60, cooldown=30, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_allows_one_trial_then_closes_on_success():
    clock = Clock()
    changes: list[BreakerState] = []
    breaker = CircuitBreaker(threshold=1, window=60, cooldown=30, clock=clock,
                             on_change=changes.append)
    breaker.record_failure()
    clock.now += 29
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()       # the trial
    assert not breaker.allow()   # only one at a time
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert changes == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]


def test_failed_trial_reopens_for_another_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, window=60, cooldown=30, clock=clock)
    breaker.record_failure()
    clock.now += 30
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 29
    assert not breaker.allow()
