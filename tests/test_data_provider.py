"""DataProvider: subscriptions, handles, errors with suggestions, error policy, live feed."""

from __future__ import annotations

import pytest

from ettlib.clock import ClockView
from ettlib.replay.provider import DataProvider
from ettlib.replay.events import pivot_types_up_to
from ettlib.errors import ClockError, ConfigError, SubscriberError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent

M = 60_000


def _candle(ts=0, symbol="ETH/USDT", tf="1m"):
    return CandleCompletionEvent(symbol, tf, ts, ts + M, 1.0, 2.0, 0.5, 1.5, 3.0)


def _pivot(ptype="L2L", symbol="ETH/USDT", tf="1m"):
    return PivotEvent(symbol, tf, ptype, int(ptype[1]), 0, 1.0, 0.1, 3 * M)


def test_callbacks_get_their_stream_only_in_subscription_order():
    provider = DataProvider()
    calls = []
    provider.subscribe_candle_completion(lambda e: calls.append(("a", e)), "ETH/USDT", "1m")
    provider.subscribe_candle_completion(lambda e: calls.append(("b", e)), "ETH/USDT", "1m")
    provider.subscribe_candle_completion(lambda e: calls.append(("x", e)), "ETH/USDT", "5m")
    event = _candle()
    provider.publish(event)
    assert calls == [("a", event), ("b", event)]


def test_pivot_subscription_filters_types_and_one_handle_unsubscribes_all():
    provider = DataProvider()
    seen = []
    handle = provider.subscribe_pivot_events(seen.append, "ETH/USDT", "1m", ["L2L", "L3H"])
    for t in ("L1L", "L2L", "L2H", "L3H"):
        provider.publish(_pivot(t))
    assert [e.pivot_type for e in seen] == ["L2L", "L3H"]
    handle.unsubscribe()
    handle.unsubscribe()  # idempotent
    provider.publish(_pivot("L2L"))
    assert len(seen) == 2
    assert provider.subscribed_streams() == set()


def test_handles_are_context_managers():
    provider = DataProvider()
    seen = []
    with provider.subscribe_inference_step(seen.append, "ETH/USDT", "5m"):
        provider.publish(InferenceStepEvent("ETH/USDT", "5m", 5 * M))
    provider.publish(InferenceStepEvent("ETH/USDT", "5m", 10 * M))
    assert len(seen) == 1


def test_unknown_names_suggest_close_ones():
    provider = DataProvider()
    with pytest.raises(UnknownNameError, match="did you mean '5m'"):
        provider.subscribe_candle_completion(print, "ETH/USDT", "5min")
    with pytest.raises(UnknownNameError, match="L2H"):
        provider.subscribe_pivot_events(print, "ETH/USDT", "1m", ["L2X"])
    with pytest.raises(UnknownNameError):  # above the provider's pivot_levels (3)
        provider.subscribe_pivot_events(print, "ETH/USDT", "1m", ["L4L"])
    with pytest.raises(ConfigError):
        provider.subscribe_pivot_events(print, "ETH/USDT", "1m", [])
    with pytest.raises(ConfigError):
        provider.subscribe_candle_completion("not callable", "ETH/USDT", "1m")
    with pytest.raises(ConfigError):
        provider.subscribe_candle_completion(print, "", "1m")
    with pytest.raises(ConfigError):
        DataProvider(on_error="ignore")
    assert provider.subscribed_streams() == set()  # failed calls subscribed nothing


def test_subscribed_streams_by_kind():
    provider = DataProvider()
    provider.subscribe_candle_completion(print, "A", "1m")
    provider.subscribe_pivot_events(print, "B", "5m", pivot_types_up_to(1))
    provider.subscribe_inference_step(print, "C", "1h")
    assert provider.subscribed_streams() == {("A", "1m"), ("B", "5m"), ("C", "1h")}
    assert provider.subscribed_streams("step") == {("C", "1h")}
    assert provider.subscribed_streams("pivot") == {("B", "5m")}
    with pytest.raises(UnknownNameError):
        provider.subscribed_streams("candles")


def test_every_subscription_change_bumps_the_version():
    provider = DataProvider()
    v0 = provider.version
    handle = provider.subscribe_candle_completion(print, "A", "1m")
    v1 = provider.version
    handle.unsubscribe()
    assert v0 < v1 < provider.version


def test_raise_policy_names_the_callback_and_carries_the_event():
    provider = DataProvider()
    later = []

    def broken(event):
        raise ZeroDivisionError("bad")

    provider.subscribe_candle_completion(broken, "ETH/USDT", "1m")
    provider.subscribe_candle_completion(later.append, "ETH/USDT", "1m")
    event = _candle()
    with pytest.raises(SubscriberError, match="broken") as err:
        provider.publish(event)
    assert err.value.event is event and err.value.callback is broken
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    assert later == []  # delivery stopped


def test_warn_policy_records_and_keeps_delivering():
    provider = DataProvider(on_error="warn")
    later = []

    def broken(event):
        raise ZeroDivisionError("bad")

    provider.subscribe_candle_completion(broken, "ETH/USDT", "1m")
    provider.subscribe_candle_completion(later.append, "ETH/USDT", "1m")
    event = _candle()
    with pytest.warns(UserWarning, match="broken"):
        provider.publish(event)
    assert later == [event]
    assert provider.errors[0][0] is broken and provider.errors[0][1] is event


def test_a_callback_may_unsubscribe_itself_during_delivery():
    provider = DataProvider()
    calls = []
    holder = {}

    def once(event):
        calls.append("once")
        holder["h"].unsubscribe()

    holder["h"] = provider.subscribe_candle_completion(once, "A", "1m")
    provider.subscribe_candle_completion(lambda e: calls.append("other"), "A", "1m")
    provider.publish(_candle(symbol="A"))
    provider.publish(_candle(60_000, symbol="A"))
    assert calls == ["once", "other", "other"]


def test_push_candle_starts_a_live_feed_and_a_clock():
    provider = DataProvider()
    seen = []
    provider.subscribe_candle_completion(seen.append, "A", "3m")
    assert provider.clock is None
    for m in range(3):
        events = provider.push_candle("A", "1m", m * M, 1.0, 2.0, 0.5, 1.5, 2.0)
    assert isinstance(provider.clock, ClockView) and provider.clock.now() == 3 * M
    with pytest.raises(ClockError):  # subscribers read the feed's clock; they cannot move it
        provider.clock.advance(10 * M)
    assert [e.timeframe for e in events if isinstance(e, CandleCompletionEvent)] == ["1m", "3m"]
    assert [(e.timestamp, e.close_time, e.volume) for e in seen] == [(0, 3 * M, 6.0)]
    with pytest.raises(ConfigError):  # the feed's timeframes cannot be finer than its base
        provider.start_live("B", base_timeframe="5m", timeframes=["1m"])
