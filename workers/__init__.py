"""Programs that run the example engines: ``python -m workers.demo``."""
