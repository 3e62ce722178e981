"""Chaos testing of the order path: real workers killed, Redis crashed, the broker's book as the truth."""
