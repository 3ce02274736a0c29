"""The pure pieces of bench/peers: arguments, statistics, ratios, tables (no server, no peers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.peers import run, stats, venvs
from bench.peers.apps import body, producer
from bench.peers.systems import BY_NAME, SYSTEMS

APPS = Path(__file__).resolve().parents[2] / "bench" / "peers" / "apps"


def test_defaults_and_quick_mode() -> None:
    args = run.parse_args([])
    assert args.command == "run"
    assert args.runs == run.DEFAULTS["runs"] and args.n == run.DEFAULTS["n"]
    assert args.systems == [s.name for s in SYSTEMS]
    quick = run.parse_args(["--quick", "--runs", "2"])
    assert quick.runs == 2  # an explicit option wins over --quick
    assert quick.n == run.QUICK["n"] and quick.process_cap == run.QUICK["process_cap"]


def test_systems_are_parsed_and_checked() -> None:
    args = run.parse_args(["setup", "--systems", " raw, celery ,", "--url", "redis://h:1"])
    assert args.command == "setup" and args.systems == ["raw", "celery"]
    assert args.url == "redis://h:1"
    with pytest.raises(SystemExit, match="unknown system"):
        run.parse_args(["--systems", "raw,sidekiq"])
    with pytest.raises(SystemExit):
        run.parse_args(["--runs", "0"])


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100, shuffled order must not matter
    assert stats.percentile(values[::-1], 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 100.0
    assert stats.percentile([], 50) is None
    assert stats.percentile([3.0], 99) == 3.0
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


def test_median_and_rate() -> None:
    assert stats.median([3.0, None, 1.0, 2.0]) == 2.0
    assert stats.median([4.0, 1.0]) == 2.5
    assert stats.median([None, None]) is None
    assert stats.rate(1000, 0.5) == 2000.0
    assert stats.rate(0, 1.0) is None and stats.rate(10, 0.0) is None


def test_summarize_takes_the_median_of_each_metric() -> None:
    runs = [
        {"enqueue": 100.0, "process_a": 10.0, "lat_p50": 1.0, "enqueue_n": 5, "notes": []},
        {"enqueue": 300.0, "process_a": 30.0, "lat_p50": 3.0, "enqueue_n": 6, "notes": ["x"]},
        {"enqueue": 200.0, "process_a": None, "lat_p50": 2.0, "enqueue_n": 7, "errors": ["e"]},
    ]
    summary = stats.summarize(runs)
    assert summary["enqueue"] == 200.0
    assert summary["process_a"] == 20.0  # a failed run's missing value is left out
    assert summary["process_b"] is None
    assert summary["lat_p50"] == 2.0
    assert summary["enqueue_n"] == [5, 6, 7]
    assert summary["notes"] == ["x"] and summary["errors"] == ["e"]


def _summary() -> dict[str, dict[str, object]]:
    return {
        "raw": {"enqueue": 40000.0, "process_a": 20000.0, "process_b": 30000.0,
                "lat_p50": 0.8, "lat_p99": 4.0},
        "nautilus-tasks": {"enqueue": 32000.0, "process_a": 8000.0, "process_b": 15000.0,
                           "lat_p50": 0.9, "lat_p99": 7.0},
        "huey": {"enqueue": 3000.0, "process_a": 1000.0, "process_b": None,
                 "lat_p50": 1.3, "lat_p99": 7.7},
        "rq": {"enqueue": 6000.0, "process_a": 100.0, "process_b": 90.0,
               "lat_p50": None, "lat_p99": None},
    }


def _key(label: str) -> str:
    """The label without the name of the fastest peer in brackets at its end."""
    return label.rsplit(" (", 1)[0] if label.endswith(")") else label


def test_ratios_against_issue_5_targets() -> None:
    found = {_key(r.label): r for r in stats.ratios(_summary())}
    first = found["1. processed (a), best of ours / fastest peer"]
    assert first.value == pytest.approx(8.0) and first.met is True
    label = next(r.label for r in stats.ratios(_summary()) if r.label.startswith("1."))
    assert label.endswith("(nautilus-tasks / huey)")
    assert found["   processed (a), engine.redis row / plain row"].value is None
    second = found["2. processed (b), ours / raw loop"]
    assert second.value == pytest.approx(0.5) and second.met is False
    assert found["3. enqueue, ours / raw pipelined XADD"].value == pytest.approx(0.8)
    vs_peer = found["3. enqueue, ours / fastest peer"]  # rq enqueues fastest among peers
    assert vs_peer.value == pytest.approx(32000 / 6000) and vs_peer.met is True
    assert found["4. latency p50, ours"].met is True
    p99 = found["4. latency p99, ours / raw loop"]
    assert p99.value == pytest.approx(1.75) and p99.met is False
    assert "NOT met" in p99.render() and "1.75" in p99.render()


def test_target_1_takes_our_faster_row_and_the_rest_the_plain_one() -> None:
    summary = _summary()
    summary["nautilus-tasks-autopipe"] = {**summary["nautilus-tasks"], "process_a": 12000.0,
                                          "enqueue": 1.0, "process_b": 1.0}
    found = {_key(r.label): r for r in stats.ratios(summary)}
    first = found["1. processed (a), best of ours / fastest peer"]
    assert first.value == pytest.approx(12.0)
    assert "(nautilus-tasks-autopipe / huey)" in stats.ratios(summary)[0].label
    info = found["   processed (a), engine.redis row / plain row"]
    assert info.value == pytest.approx(1.5) and info.met is None
    assert found["2. processed (b), ours / raw loop"].value == pytest.approx(0.5)  # plain row
    assert found["3. enqueue, ours / raw pipelined XADD"].value == pytest.approx(0.8)
    del summary["nautilus-tasks"]  # the engine.redis row alone stands for us
    found = {_key(r.label): r for r in stats.ratios(summary)}
    assert found["3. enqueue, ours / raw pipelined XADD"].value == pytest.approx(1 / 40000)
    assert found["1. processed (a), best of ours / fastest peer"].value == pytest.approx(12.0)


def test_ratios_without_our_numbers_are_unknown() -> None:
    summary = _summary()
    del summary["nautilus-tasks"]
    assert all(r.value is None and r.met is None for r in stats.ratios(summary))
    assert "n/a" in stats.ratios(summary)[0].render()


def test_tables_render_every_system_and_missing_values() -> None:
    summary = {name: {**values, "notes": [], "errors": []} for name, values in _summary().items()}
    summary["rq"]["notes"] = ["processing (a) time-capped", "latency backlogged"]
    text = stats.table(summary, {"raw": "raw streams loop"})
    lines = text.splitlines()
    assert len(lines) == 2 + len(summary)
    assert "| raw streams loop | 40,000 | 20,000 | 30,000 | 0.8 / 4.0 ms |" in text
    assert "| huey | 3,000 | 1,000 | - | 1.3 / 7.7 ms |" in text
    assert "| rq | 6,000 | 100 | 90 | - | processing (a) time-capped; latency backlogged |" in text
    counts = stats.counts_table({"rq": {"enqueue_n": [5, None], "lat_n": []}}, {})
    assert "| rq | 5, - |  |  |  |" in counts
    rows = [{"label": "X", "versions": "x 1.0", "concurrency": "c", "enqueue_api": "e"}]
    assert stats.settings_table(rows).splitlines()[-1] == "| X | x 1.0 | c | e |"


def test_every_system_has_an_app_pins_and_a_worker_command() -> None:
    assert {"raw", "nautilus-tasks", "nautilus-tasks-autopipe", "celery", "dramatiq", "arq",
            "saq", "taskiq", "streaq", "huey", "rq"} == set(BY_NAME)
    for system in SYSTEMS:
        assert (APPS / f"{system.app}.py").is_file(), system.name
        argv = system.worker_argv("redis://127.0.0.1:1")
        assert all("{" not in part for part in argv), argv
        framework = system.requirements[0]
        assert framework.startswith("-e ") or "==" in framework, framework
    assert "redis://127.0.0.1:1" in BY_NAME["rq"].worker_argv("redis://127.0.0.1:1")
    piped = BY_NAME["nautilus-tasks-autopipe"]  # the same install, another app module
    assert venvs.venv_dir(piped) == venvs.venv_dir(BY_NAME["nautilus-tasks"])
    assert piped.requirements == BY_NAME["nautilus-tasks"].requirements
    assert "nt_autopipe_bench:engine" in " ".join(piped.worker_argv("redis://h:1"))


def test_producer_arguments() -> None:
    enq = producer.parse(["enqueue", "--n", "10", "--cap", "1.5"])
    assert (enq.mode, enq.n, enq.cap, enq.chunk) == ("enqueue", 10, 1.5, 500)
    lat = producer.parse(["latency", "--rate", "50", "--seconds", "2"])
    assert (lat.mode, lat.rate, lat.seconds) == ("latency", 50.0, 2.0)


def test_body_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_BODY", "b")
    assert body.body() == "b"
    monkeypatch.setenv("BENCH_BODY", "c")
    with pytest.raises(ValueError, match="BENCH_BODY"):
        body.body()


def test_render_quotes_machine_command_versions_and_targets() -> None:
    summary = {name: {**values, "notes": [], "errors": []} for name, values in _summary().items()}
    summary["huey"]["errors"] = ["huey worker exited (1); see w.log\nTraceback..."]
    report = {
        "date": "2026-01-01 00:00 UTC",
        "command": "python bench/peers/run.py --quick",
        "nautilus_tasks_commit": "abc123",
        "server": "Valkey 9.1.2",
        "machine": {"nproc": 2, "cpu": "Some CPU", "python": "3.11.7",
                    "loadavg_at_start": [1.0, 0.5, 0.25]},
        "config": {"runs": 1, "n": 10, "enqueue_cap": 1.0, "process_cap": 2.0,
                   "latency_seconds": 1.0, "rate": 200.0},
        "settings": [{"name": "raw", "label": "raw loop", "versions": "redis 7.4.0",
                      "concurrency": "1 loop", "enqueue_api": "XADD"}],
        "summary": summary,
        "ratios": [vars(r) for r in stats.ratios(summary)],
    }
    text = run.render(report)
    assert "Valkey 9.1.2; 2 CPUs (Some CPU); Python 3.11.7" in text
    assert "load average at start 1.00 0.50 0.25, at end ?" in text
    assert "command: python bench/peers/run.py --quick; nautilus-tasks at abc123" in text
    assert "| raw loop | 40,000 |" in text and "| raw loop | redis 7.4.0 | 1 loop | XADD |" in text
    assert "2. processed (b), ours / raw loop: 0.50 (target >= 0.6; NOT met)" in text
    errors = "Errors (phases left out of the medians):\n- huey: huey worker exited (1); see w.log"
    assert errors in text
    assert "Traceback" not in text
