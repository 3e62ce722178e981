"""The strategy engine: bars, parameter schemas, strategies, indicators, the backtester and research (pure).

Nothing here imports Django, DRF or Celery: the same code runs in a live `signals` task, a `backtests`
worker, the `backtest` command, a benchmark or a notebook. The Django side (`apps.strategies.services`,
`.tasks`, `.admin`) loads bars from the database into `Bars` and stores what comes back.
"""
