"""The worker runtime. Declaring tasks never imports this package."""

from .runner import Worker, run_worker

__all__ = ["Worker", "run_worker"]
