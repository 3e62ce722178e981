"""The strategy framework, live signal evaluation and the backtest engine."""
