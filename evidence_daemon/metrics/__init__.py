"""Prometheus metrics of a dock station (prometheus-client); served by ``run``."""
