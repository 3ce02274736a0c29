"""``request_sync`` from a plain script against a real worker process."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from nautilus_tasks import RequestTimeout
from tests.apps.recorder import record
from tests.procs import start_worker, stop_workers

pytestmark = pytest.mark.integration


def test_request_sync_from_a_script(
    redis_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NT_PREFIX", prefix)  # the script's client uses the test's prefix
    monkeypatch.setenv("NT_REDIS_URL", redis_url)
    with pytest.raises(RequestTimeout):  # no worker yet
        record.request_sync(1, timeout=0.3, url=redis_url)
    log = tmp_path / "worker.log"
    proc = start_worker("tests.apps.recorder:recorder", redis_url, prefix, "-c", "4", log=log)
    try:
        assert record.request_sync(41, timeout=30, url=redis_url) == 41
        assert [record.request_sync(n, timeout=30, url=redis_url) for n in range(3)] == [0, 1, 2]
    finally:
        assert stop_workers([proc]) == [0], log.read_text()
        conn = redis.Redis.from_url(redis_url)
        keys = list(conn.scan_iter(match=f"{prefix}:*"))
        if keys:
            conn.delete(*keys)
        conn.close()
