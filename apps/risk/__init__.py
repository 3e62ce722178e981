"""Pre-trade checks, limits, VaR/ES engines, stress tests and VaR backtesting."""
