"""Strategies played through the env on fixed dates: the backtest runner, classical baselines, performance metrics
and the statistics of return series."""
