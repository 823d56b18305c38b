"""Constants with one meaning across the project."""

TRADING_DAYS_PER_YEAR = 252  # annualisation of daily figures (returns, volatility, turnover, Sharpe)
