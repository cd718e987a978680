"""Prometheus view of StateStore health: write errors, drops, retry depth, degraded flag."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge.store.protocol import StateStore


class StoreCollector(Collector):
    """Register once: `registry.register(StoreCollector(store))`; values are read at scrape time."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        h = self.store.health()
        labels = ["backend"]
        for name, doc, value in (
            ("edge_store_write_errors", "Failed store write attempts", h.write_errors),
            ("edge_store_dropped_writes", "Store writes lost because the retry queue was full", h.dropped_writes),
            ("edge_store_flushed_records", "Records written by the store", h.flushed),
            ("edge_store_evicted_records", "Records evicted by a store size cap", h.evicted),
            ("edge_store_purged_activities", "Activities deleted by retention", h.purged),
        ):
            c = CounterMetricFamily(name, doc, labels=labels)
            c.add_metric([h.backend], value)
            yield c
        for name, doc, value in (
            ("edge_store_degraded", "1 while the store is failing writes", int(h.degraded)),
            ("edge_store_retry_queue", "Writes waiting for the storage to recover", h.retry_queue),
            ("edge_store_pending", "Writes batched and not yet flushed", h.pending),
        ):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric([h.backend], value)
            yield g
