"""Example engines of a trading platform, one module and one worker each.

=============  ==========================  ===============================================
engine         module                      tasks
=============  ==========================  ===============================================
marketdata     :mod:`engines.marketdata`   ``ingest_trade`` (fans out to the three below),
                                           ``ingest_quote``
risk           :mod:`engines.risk`         ``check_position`` (critical): position limits
factors        :mod:`engines.factors`      ``update_factors``: moving average and z-score
analytics      :mod:`engines.analytics`    ``record_trade`` (low), ``mark_to_market``: P&L
=============  ==========================  ===============================================

The messages are the pydantic models of :mod:`engines.models`. Each engine module holds
its in-process state in one object, ``book``, and does no I/O at import time. The top-level
``Procfile`` runs one worker per engine; ``python -m workers.demo`` drives them.
"""
