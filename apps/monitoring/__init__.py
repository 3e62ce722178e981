"""Health, readiness, metrics, alerts and the operations view of the workers."""
