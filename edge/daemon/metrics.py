"""Prometheus metrics, read from the core's plain counters at scrape time (nothing on the per-packet path).

Exported families (all prefixed `edge_`): SIP messages and outcomes, final responses by status,
INVITE handling latency, active calls/dialogs/transactions, policy decisions by action and rule,
STIR/SHAKEN results, PBX target health, rate-table size and evictions.
"""

from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from edge.build import BuildInfo
from edge.call.proxy import Proxy


class EdgeCollector(Collector):
    def __init__(self, proxy_ref: Callable[[], Proxy | None], extra: Callable[[], dict[str, object]] | None = None) -> None:
        self.proxy_ref = proxy_ref
        self.extra = extra

    def collect(self) -> Iterable:
        proxy = self.proxy_ref()
        if proxy is None:
            return
        st = proxy.stats
        for name, help_ in (
            ("received", "SIP messages received"),
            ("requests", "SIP requests received"),
            ("responses", "SIP responses received"),
            ("parse_errors", "messages that failed to parse (answered 400 or dropped)"),
            ("dropped", "messages dropped without an answer"),
            ("retransmissions_absorbed", "retransmissions absorbed by transactions"),
            ("invites", "initial INVITEs received"),
            ("rejected", "contacts rejected before answer"),
            ("unknown_source", "requests from addresses that are neither carriers nor PBXs"),
            ("not_found", "INVITEs for numbers in no dialplan"),
            ("failovers", "failovers to the next PBX target"),
            ("core_errors", "exceptions caught inside the SIP core"),
            ("oversize", "messages over the size limit"),
            ("draining_rejected", "INVITEs refused while draining"),
            ("calls_answered", "calls answered"),
            ("calls_ended", "calls ended by BYE"),
            ("released_hits", "contacts to released (quarantined) numbers"),
            ("source_limited", "requests refused: too many live transactions from one source"),
            ("cancels_unanswered", "INVITEs given up 64*T1 after a CANCEL the next hop never answered"),
            ("outbound", "calls and messages from PBXs toward carriers"),
        ):
            yield CounterMetricFamily(f"edge_sip_{name}", help_, value=getattr(st, name))
        c = CounterMetricFamily("edge_sip_final_responses", "final responses sent upstream by status", labels=["status"])
        for status, n in sorted(st.by_status.items()):
            c.add_metric([str(status)], n)
        yield c
        h = proxy.latency
        buckets = [(str(b), n) for b, n in zip(h.bounds, h.cumulative())] + [("+Inf", h.count)]
        hist = HistogramMetricFamily(
            "edge_invite_first_response_seconds", "INVITE in to first response from the PBX (or local final)"
        )
        hist.add_metric([], buckets, h.total)
        yield hist
        yield GaugeMetricFamily("edge_active_calls", "dialogs the edge is routing", value=len(proxy.dialogs))
        yield GaugeMetricFamily("edge_server_transactions", "live server transactions", value=len(proxy.server_txns))
        yield GaugeMetricFamily("edge_client_transactions", "live client transactions", value=len(proxy.client_txns))
        up = GaugeMetricFamily("edge_pbx_target_up", "PBX target in rotation (1) or not (0)", labels=["target"])
        for name, t in proxy.pool.by_name.items():
            up.add_metric([name], 1.0 if t.up else 0.0)
        yield up
        gate = proxy.gate
        if gate is not None:
            pol = gate.engine.stats
            d = CounterMetricFamily("edge_policy_decisions", "policy decisions by action", labels=["action"])
            for action, n in sorted(pol["decisions_by_action"].items()):  # type: ignore[union-attr]
                d.add_metric([str(getattr(action, "value", action))], n)
            yield d
            r = CounterMetricFamily("edge_policy_rule_hits", "decisions by rule id", labels=["rule"])
            for rule, n in sorted(pol["decisions_by_rule"].items()):  # type: ignore[union-attr]
                r.add_metric([str(rule)], n)
            yield r
            yield GaugeMetricFamily("edge_policy_rules", "block and allow rules loaded", value=pol["rules"])
            yield GaugeMetricFamily("edge_policy_flagged_callers", "callers in Spam Detective cool-off", value=pol["flagged_callers"])
            yield CounterMetricFamily("edge_policy_flags_cleared", "cool-offs lifted by an operator", value=pol["flags_cleared_total"])
            keys = GaugeMetricFamily("edge_policy_rate_keys", "keys tracked by rate windows", labels=["kind"])
            for kind, n in sorted(pol["rate_keys"].items()):  # type: ignore[union-attr]
                keys.add_metric([str(getattr(kind, "value", kind))], n)
            yield keys
            ev = CounterMetricFamily("edge_policy_rate_evictions", "rate window keys evicted at the cap", labels=["kind"])
            for kind, n in sorted(pol["rate_evictions_total"].items()):  # type: ignore[union-attr]
                ev.add_metric([str(getattr(kind, "value", kind))], n)
            yield ev
            s = CounterMetricFamily("edge_stir_results", "STIR/SHAKEN verification results", labels=["result"])
            for k, n in sorted(gate.stir_counts.items()):
                s.add_metric([k], n)
            yield s
            yield CounterMetricFamily("edge_stir_signed", "outbound INVITEs signed (STI-AS)", value=gate.signed)
        if self.extra is not None:
            for name, value in self.extra().items():
                if isinstance(value, (int, float)):
                    yield GaugeMetricFamily(f"edge_{name}", name.replace("_", " "), value=value)


class BuildCollector(Collector):
    """`edge_build_info{compiled="true"|"false"}`: which build of the hot path this process runs."""

    def __init__(self, info: BuildInfo) -> None:
        self.info = info

    def collect(self) -> Iterable:
        i = InfoMetricFamily("edge_build", "which build of the SIP hot path runs (edge/build.py)")
        i.add_metric([], {"compiled": "true" if self.info.compiled else "false", "build": self.info.label,
                          "compiled_modules": str(len(self.info.compiled_modules)),
                          "pure_modules": str(len(self.info.pure_modules))})
        yield i
