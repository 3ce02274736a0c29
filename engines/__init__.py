"""Example engines of a trading platform, one module and one worker each.

==========  =========================  ======================================================
engine      module                     tasks and event handlers
==========  =========================  ======================================================
marketdata  :mod:`engines.marketdata`  ``ingest_trade`` (fans out to the three below),
                                       ``ingest_quote`` (publishes ``market.quote.<SYMBOL>``)
risk        :mod:`engines.risk`        ``check_position`` (critical): position limits; a breach
                                       publishes ``risk.breach.detected`` (critical);
                                       on ``market.quote.*``: marks and return history;
                                       ``calculate_var`` (high): value at risk, by request
factors     :mod:`engines.factors`     ``update_factors``: moving average and z-score of trade
                                       prices; on ``market.quote.*``: the same of quote mids
analytics   :mod:`engines.analytics`   ``record_trade`` (low): P&L; on ``market.quote.*``:
                                       marks to market
alerts      :mod:`engines.alerts`      on ``risk.breach.#``: records and pushes breach alerts
                                       to clients (a websocket fan-out stand-in); ``summary``
health      :mod:`engines.health`      ``ping`` (high), enqueued every minute by the scheduler
                                       (``@health.periodic``)
==========  =========================  ======================================================

The messages and topics are those of :mod:`engines.models`; :mod:`engines.var` holds the
VaR math. Each engine module holds its in-process state in module-level objects and does
no I/O at import time. The top-level ``Procfile`` runs one worker per engine and a
``nautilus-tasks scheduler`` (for ``health``); ``python -m workers.demo`` drives them.
"""
