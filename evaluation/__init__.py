"""Classical baselines, performance metrics and backtests."""
