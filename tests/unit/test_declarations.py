"""Declaring engines and tasks: options, validation rules and the public API."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

import nautilus_tasks
from nautilus_tasks import (
    BusConfig,
    ConfigurationError,
    Engine,
    InvalidArguments,
    NotBound,
    Priority,
    UnknownTask,
    WorkerConfig,
)
from nautilus_tasks.validation import ArgsValidator


class Trade(BaseModel):
    symbol: str
    qty: float


def test_public_api_is_explicit_and_sorted() -> None:
    assert nautilus_tasks.__all__ == sorted(nautilus_tasks.__all__)
    for name in nautilus_tasks.__all__:
        assert hasattr(nautilus_tasks, name)


def test_declaring_does_not_import_the_worker_runtime() -> None:
    import subprocess
    import sys

    code = (
        "import sys, nautilus_tasks as nt\n"
        "e = nt.Engine('x')\n"
        "@e.task\n"
        "def f(a: int) -> int: return a\n"
        "bad = [m for m in sys.modules if m.startswith(('nautilus_tasks.worker', 'redis'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_task_options_and_errors() -> None:
    engine = Engine("risk")

    @engine.task(priority="critical", timeout=5.0, ttl=60, retries=2)
    def check(trade: Trade, limit: float = 1e6) -> bool:
        return trade.qty <= limit

    assert check.options.priority is Priority.CRITICAL
    assert check.qualified_name == "risk.check"
    assert engine.get_task("check") is check
    assert check(Trade(symbol="A", qty=1)) is True
    with pytest.raises(UnknownTask):
        engine.get_task("nope")
    with pytest.raises(ConfigurationError, match="already has"):
        engine.task(name="check")(lambda: None)
    with pytest.raises(ConfigurationError, match="timeout"):
        engine.task(timeout=0)(lambda: None)
    with pytest.raises(NotBound, match="risk"):
        _ = engine.client


@pytest.mark.parametrize("name", ["", "Risk", "1x", "a b", "a{b}", "a:b"])
def test_engine_names_are_checked(name: str) -> None:
    with pytest.raises(ConfigurationError):
        Engine(name)


def test_var_args_are_refused() -> None:
    engine = Engine("e")
    with pytest.raises(ConfigurationError, match="plain named parameters"):

        @engine.task
        def f(*args: Any) -> None: ...


def test_validator_binds_and_converts() -> None:
    def f(trade: Trade, limit: float = 1e6, *, flag: bool = False) -> int: ...

    v = ArgsValidator("t.f", f)
    out = v.validate([{"symbol": "A", "qty": "2"}], {"limit": 5})
    assert out == {"trade": Trade(symbol="A", qty=2.0), "limit": 5.0}
    assert isinstance(out["trade"], Trade)
    with pytest.raises(InvalidArguments, match=r"limit: Input should be a valid number"):
        v.validate([{"symbol": "A", "qty": 1}], {"limit": "abc"})
    with pytest.raises(InvalidArguments, match="multiple values"):
        v.validate([{"symbol": "A", "qty": 1}], {"trade": {}})
    with pytest.raises(InvalidArguments, match="positional"):
        v.validate([1, 2, 3], {})
    with pytest.raises(InvalidArguments, match=r"[Ee]xtra"):
        v.validate([{"symbol": "A", "qty": 1}], {"nope": 1})
    with pytest.raises(InvalidArguments, match="trade: Field required"):
        v.validate([], {})


def test_priority_parse() -> None:
    assert Priority.parse("HIGH") is Priority.HIGH
    assert Priority.parse(3) is Priority.LOW
    assert Priority.CRITICAL.label == "critical"
    with pytest.raises(ConfigurationError, match="one of critical"):
        Priority.parse("urgent")
    with pytest.raises(ConfigurationError):
        Priority.parse(7)


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigurationError, match=r"[Ee]xtra"):
        BusConfig.from_mapping({"url": "redis://x", "prefx": "a"})
    with pytest.raises(ConfigurationError):
        BusConfig.from_mapping({"url": "redis://x", "prefix": "a b"})
    with pytest.raises(ValueError, match="block_ms"):
        WorkerConfig(block_ms=20_000)
    config = WorkerConfig(concurrency=100)
    assert config.capacity == 125
    assert WorkerConfig(concurrency=4, prefetch=0).capacity == 4
    assert BusConfig.from_url("redis://h:1/0").prefix == "nt"
