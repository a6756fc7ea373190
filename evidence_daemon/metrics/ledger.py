"""Metrics of a ledger writer's checkpoints, shared by stations and API nodes.

``evidence_checkpoints_total`` and ``evidence_timestamp_failures_total`` count events
(``custody.checkpoints.CheckpointMetrics``); ``evidence_ledger_tail_missing{writer}`` is read
from the writer at scrape time: 1 while it refuses to append because the end of its chain is
gone from the archive (alert ``EvidenceLedgerTailMissing``). Imports nothing but the custody
ledger and prometheus_client, so the API node may use it. Observes only.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..custody.ledger import LedgerWriter


class CheckpointCounters:
    """Implements ``custody.checkpoints.CheckpointMetrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.checkpoints = Counter("evidence_checkpoints", "Checkpoints (signed tree heads) of "
                                   "this writer's custody chain", registry=registry)
        self.timestamp_failures = Counter("evidence_timestamp_failures", "Checkpoints left "
                                          "without an RFC 3161 timestamp because the "
                                          "time-stamping authority failed", registry=registry)

    def checkpoint_signed(self) -> None:
        self.checkpoints.inc()

    def timestamp_failed(self) -> None:
        self.timestamp_failures.inc()


def tail_missing_metric(ledger: LedgerWriter) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily("evidence_ledger_tail_missing", "1 while this writer refuses to "
                              "append: the end of its custody chain is gone from the archive",
                              labels=["writer"])
    gauge.add_metric([ledger.writer], 1.0 if ledger.tail_missing else 0.0)
    return gauge


class TailCollector(Collector):
    """``evidence_ledger_tail_missing`` of one writer, at scrape time."""

    def __init__(self, ledger: LedgerWriter) -> None:
        self.ledger = ledger

    def collect(self) -> Iterator[Metric]:
        yield tail_missing_metric(self.ledger)
