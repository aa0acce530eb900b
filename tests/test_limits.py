"""Tests of the per-identity rate limits with a fake clock: bursts, refusals with the right wait and message,
refill, separate buckets per key, all-or-nothing over several keys, bounded memory and the environment's rates."""

from __future__ import annotations

import threading

import pytest

from app.access.limits import ACTION_NOUNS, DEFAULT_RATES, Limits, Rate, RateLimited, rates_from_env


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_a_burst_passes_then_the_next_call_is_refused_with_the_right_wait(clock):
    limits = Limits({"model": Rate(per_minute=12, burst=3)}, clock=clock)
    for _ in range(3):
        limits.take("model", "ann1")
    with pytest.raises(RateLimited) as caught:
        limits.take("model", "ann1")
    assert caught.value.retry_after_s == pytest.approx(5.0)  # 12 a minute: one token every 5 s
    assert str(caught.value) == "Too many questions: try again in 5 s."
    assert limits.wait_s("model", "ann1") == pytest.approx(5.0)
    clock.now += 2.0
    assert limits.wait_s("model", "ann1") == pytest.approx(3.0)


def test_buckets_refill_continuously_up_to_the_burst(clock):
    limits = Limits({"model": Rate(per_minute=12, burst=2)}, clock=clock)
    limits.take("model", "ann1")
    limits.take("model", "ann1")
    clock.now += 4.9
    with pytest.raises(RateLimited):
        limits.take("model", "ann1")
    clock.now += 0.1
    limits.take("model", "ann1")  # 5 s later: one token back
    with pytest.raises(RateLimited):
        limits.take("model", "ann1")
    clock.now += 3600  # an hour idle refills to the burst, not beyond
    limits.take("model", "ann1")
    limits.take("model", "ann1")
    with pytest.raises(RateLimited):
        limits.take("model", "ann1")


def test_another_key_and_another_action_are_unaffected(clock):
    limits = Limits({"model": Rate(per_minute=1, burst=1), "vote": Rate(per_minute=1, burst=1)}, clock=clock)
    limits.take("model", "ann1")
    with pytest.raises(RateLimited):
        limits.take("model", "ann1")
    assert limits.wait_s("model", "ann2") == 0
    limits.take("model", "ann2")
    limits.take("vote", "ann1")


def test_several_keys_are_all_or_nothing_with_the_longest_wait(clock):
    limits = Limits({"model": Rate(per_minute=6, burst=2)}, clock=clock)  # one token every 10 s
    limits.take("model", "visitor-a")
    limits.take("model", "visitor-a")
    clock.now += 5.0  # visitor-a: half a token, 5 s to wait
    limits.take("model", "visitor-b", "10.0.0.1")
    limits.take("model", "visitor-c", "10.0.0.1")  # the shared address is now empty: 10 s to wait
    for keys in (("visitor-a", "10.0.0.1"), ("10.0.0.1", "visitor-a")):
        with pytest.raises(RateLimited) as caught:
            limits.take("model", *keys)
        assert caught.value.retry_after_s == pytest.approx(10.0)
    with pytest.raises(RateLimited):
        limits.take("model", "visitor-d", "10.0.0.1")
    limits.take("model", "visitor-d")  # the refused call took nothing: visitor-d still has both its tokens
    limits.take("model", "visitor-d")
    assert limits.wait_s("model", "visitor-a") == pytest.approx(5.0)
    assert limits.wait_s("model", "10.0.0.1") == pytest.approx(10.0)
    clock.now += 6.0  # visitor-a 1.1 tokens, the address 0.6 (4 s)
    limits.take("model", "visitor-a")  # visitor-a 0.1 tokens: 9 s
    for keys in (("visitor-a", "10.0.0.1"), ("10.0.0.1", "visitor-a")):
        with pytest.raises(RateLimited) as caught:
            limits.take("model", *keys)
        assert caught.value.retry_after_s == pytest.approx(9.0)
    limits.take("model", "visitor-e", "visitor-e", "")  # a repeated key counts once, an empty one not at all
    limits.take("model", "visitor-e")


def test_the_message_names_the_action_and_rounds_up_to_whole_seconds(clock):
    limits = Limits({"model": Rate(per_minute=60, burst=1), "vote": Rate(per_minute=7, burst=1)}, clock=clock)
    limits.take("model", "ann1")
    clock.now += 0.999
    with pytest.raises(RateLimited, match=r"^Too many questions: try again in 1 s\.$"):
        limits.take("model", "ann1")
    limits.take("vote", "ann1")
    clock.now += 0.5
    with pytest.raises(RateLimited, match=r"^Too many votes: try again in 9 s\.$"):  # 60/7 - 0.5 = 8.07 s
        limits.take("vote", "ann1")
    assert ACTION_NOUNS == {"model": "questions", "vote": "votes"}


def test_zero_per_minute_means_no_limit(clock):
    limits = Limits({"model": Rate(per_minute=0, burst=1)}, clock=clock)
    for _ in range(1000):
        limits.take("model", "ann1")
    assert limits.wait_s("model", "ann1") == 0


def test_an_unknown_action_is_a_programming_error(clock):
    with pytest.raises(ValueError, match="no rate for action 'export'"):
        Limits(clock=clock).take("export", "ann1")


def test_memory_is_bounded_by_dropping_the_least_recently_used(clock):
    limits = Limits({"model": Rate(per_minute=1, burst=1)}, clock=clock, max_keys=3)
    for key in ("a", "b", "c"):
        limits.take("model", key)
    limits.take("model", "d")  # drops "a", the least recently used
    assert len(limits._buckets) == 3
    assert limits.wait_s("model", "a") == 0
    assert limits.wait_s("model", "b") > 0 and limits.wait_s("model", "d") > 0


def test_concurrent_takes_never_exceed_the_burst(clock):
    limits = Limits({"model": Rate(per_minute=1, burst=50)}, clock=clock)
    passed, lock = [], threading.Lock()

    def worker() -> None:
        for _ in range(20):
            try:
                limits.take("model", "ann1")
            except RateLimited:
                continue
            with lock:
                passed.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(passed) == 50


def test_rates_from_the_environment():
    assert rates_from_env({}) == DEFAULT_RATES
    assert DEFAULT_RATES == {"model": Rate(per_minute=12, burst=6), "vote": Rate(per_minute=60, burst=20)}
    rates = rates_from_env(
        {
            "STUDIO_MODEL_CALLS_PER_MINUTE": "2.5",
            "STUDIO_MODEL_CALLS_BURST": "3",
            "STUDIO_VOTES_PER_MINUTE": "0",
            "STUDIO_VOTES_BURST": "",
        }
    )
    assert rates == {"model": Rate(per_minute=2.5, burst=3), "vote": Rate(per_minute=0, burst=20)}


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("STUDIO_MODEL_CALLS_PER_MINUTE", "fast"),
        ("STUDIO_MODEL_CALLS_PER_MINUTE", "-1"),
        ("STUDIO_MODEL_CALLS_PER_MINUTE", "inf"),
        ("STUDIO_MODEL_CALLS_BURST", "0"),
        ("STUDIO_MODEL_CALLS_BURST", "2.5"),
        ("STUDIO_VOTES_PER_MINUTE", "nan"),
        ("STUDIO_VOTES_BURST", "many"),
    ],
)
def test_a_bad_environment_value_names_the_variable(variable, value):
    with pytest.raises(ValueError, match=variable):
        rates_from_env({variable: value})


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="per_minute"):
        Rate(per_minute=-1, burst=1)
    with pytest.raises(ValueError, match="burst"):
        Rate(per_minute=1, burst=0)
