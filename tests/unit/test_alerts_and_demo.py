"""The alerts engine's feed, and the demo's synthetic market, expected counts and flow
report (split from test_engines.py)."""


from __future__ import annotations

import random

import pytest

import engines.alerts as alerts_module
from engines.alerts import AlertFeed, on_breach
from engines.models import (
    BREACH_TOPIC,
    BREACHES,
    QUOTES,
    AlertSummary,
    Breach,
)
from nautilus_tasks.metrics import Histogram
from workers.feed import make_market
from workers.flows import (
    FlowReport,
    VaRRun,
    events_received,
    expected_counts,
    quantile,
    task_counts,
)
from workers.progress import Progress

# --- alerts ---


def breach(symbol: str = "TSLA", attempted: float = 5100.0) -> Breach:
    return Breach(
        symbol=symbol, trade_id="t9", position=5000, attempted=attempted, limit=5000,
        detected_at=1,
    )  # fmt: skip


def test_alert_feed_counts_and_pushes_to_clients() -> None:
    feed = AlertFeed(history=2, client_buffer=2)
    assert feed.record(BREACH_TOPIC, breach()) == 0
    early = feed.connect("ws-1")
    assert list(early) == [breach()]  # a new client starts with the recent alerts
    assert feed.record("risk.breach.var", breach("AAPL")) == 1
    assert feed.record(BREACH_TOPIC, breach(attempted=5200)) == 1
    assert feed.dropped == 1 and [b.symbol for b in early] == ["AAPL", "TSLA"]
    late = feed.connect("ws-2")
    assert [b.symbol for b in late] == ["AAPL", "TSLA"]  # history holds the last 2
    feed.disconnect("ws-1")
    summary = feed.summary()
    assert (summary.total, summary.clients) == (3, 1)
    assert summary.by_symbol == {"TSLA": 2, "AAPL": 1}
    assert summary.by_topic == {BREACH_TOPIC: 2, "risk.breach.var": 1}
    assert summary.last == breach(attempted=5200)
    with pytest.raises(ValueError):
        AlertFeed(history=0)


async def test_on_breach_records_the_alert(monkeypatch: pytest.MonkeyPatch) -> None:
    feed = AlertFeed()
    monkeypatch.setattr(alerts_module, "feed", feed)
    feed.connect("ws")
    assert await on_breach(breach(), BREACH_TOPIC) == 1
    assert feed.summary().by_topic == {BREACH_TOPIC: 1}


# --- the demo's market and counts ---


def test_make_market_spreads_the_quotes_among_the_trades() -> None:
    market = make_market(10, 4, random.Random(1))
    assert [t.id for t in market.trades] == [f"T{i:08d}" for i in range(10)]
    assert [i for i, _ in market.quotes] == [0, 2, 5, 7]  # ceil((i + 1) * 4 / 10) by trade i
    assert all(q.bid < q.ask for _, q in market.quotes)
    assert len(make_market(3, 7, random.Random(1)).quotes) == 7
    many = make_market(4000, 0, random.Random(2)).trades
    tsla = [t.side for t in many if t.symbol.strip().upper() == "TSLA"]
    assert 0.7 < tsla.count("buy") / len(tsla) < 0.8  # the bias that makes breaches


def test_expected_counts_add_tasks_and_the_events_of_each_subscription() -> None:
    events = {QUOTES: 40, BREACHES: 3}
    assert task_counts(100, 40) == {
        "marketdata": 140, "risk": 100, "factors": 100, "analytics": 100, "alerts": 0,
    }  # fmt: skip
    expected = expected_counts(100, 40, events)
    assert expected == {
        "marketdata": 140, "risk": 140, "factors": 140, "analytics": 140, "alerts": 3,
    }  # fmt: skip
    progress = {e: Progress(e, n, 0, True, Histogram(), None) for e, n in expected.items()}
    assert events_received(progress, 100, 40) == {
        "marketdata": 0, "risk": 40, "factors": 40, "analytics": 40, "alerts": 3,
    }  # fmt: skip
    assert quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert quantile([float(i) for i in range(1, 101)], 0.99) == 99.0
    assert quantile([], 0.5) is None


def flow_report(received: int = 40, recorded: int = 3, processed: int = 2) -> FlowReport:
    var = VaRRun(2, seconds=[0.002, 0.004], processed=processed)
    alerted = AlertSummary(total=recorded, by_symbol={}, by_topic={}, clients=0)
    subscribers = dict.fromkeys(("factors", "risk", "analytics"), 40)
    got = {**subscribers, "factors": received, "alerts": 3}
    return FlowReport(40, {QUOTES: 40, BREACHES: 3}, got, alerted, var)


def test_the_flow_report_fails_on_any_count_that_does_not_add_up() -> None:
    good = flow_report()
    assert good.ok and good.var.ms(0.5) == pytest.approx(2.0)
    assert "EVENTS OK: market.quote.* published 40; received factors=40 risk=40" in good.summary()
    missing = flow_report(received=39)
    assert not missing.ok
    assert "EVENTS MISMATCH: market.quote.* published 40; received factors=39" in missing.summary()
    assert not flow_report(recorded=2).ok  # alerts recorded fewer than risk raised
    assert not flow_report(processed=3).ok  # risk processed a request twice
    unanswered = flow_report()
    unanswered.var.failures.append("RequestTimeout: no reply")
    assert not unanswered.ok
