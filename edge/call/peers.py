"""Who is talking: classify a source address as a configured carrier or PBX (the carrier ACL).

Exact 'ip:port' peers win over address/CIDR peers, PBXs over carriers, so a carrier and a PBX can
share one host (as on loopback in tests). Results are memoised per (ip, port) in a bounded dict so
the per-datagram cost is one lookup.
"""

from __future__ import annotations

import ipaddress

import msgspec

from edge.call.settings import CallSettings, host_port
from edge.sip.uri import parse_uri


class Peer(msgspec.Struct, frozen=True):
    kind: str  # 'carrier' | 'pbx'
    name: str


class PeerDirectory:
    __slots__ = ("_exact", "_nets", "_cache", "_cap")

    def __init__(self, cfg: CallSettings, cache_size: int = 65536) -> None:
        self._exact: dict[tuple[str, int], Peer] = {}
        # Ordered: PBX networks before carrier networks, longer prefixes first.
        nets: list[tuple[int, int, ipaddress.IPv4Network | ipaddress.IPv6Network, Peer]] = []
        for rank, kind, items in ((0, "pbx", cfg.pbx), (1, "carrier", cfg.carriers)):
            for item in items:
                peer = Peer(kind, item.name)
                sources = list(item.sources)
                if kind == "pbx" and not sources:
                    uri = parse_uri(item.uri)  # type: ignore[attr-defined]
                    sources = [f"{uri.host}:{uri.port or 5060}"]
                for src in sources:
                    if "/" not in src and src.count(":") == 1:
                        host, port = host_port(src)
                        self._exact.setdefault((str(ipaddress.ip_address(host)), port), peer)
                    else:
                        net = ipaddress.ip_network(src, strict=False)
                        nets.append((rank, -net.prefixlen, net, peer))
        nets.sort(key=lambda t: (t[0], t[1]))
        self._nets = [(n, p) for _, _, n, p in nets]
        self._cache: dict[tuple[str, int], Peer | None] = {}
        self._cap = cache_size

    def classify(self, ip: str, port: int) -> Peer | None:
        key = (ip, port)
        cache = self._cache
        if key in cache:
            return cache[key]
        peer = self._exact.get(key)
        if peer is None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None:
                for net, p in self._nets:
                    if addr.version == net.version and addr in net:
                        peer = p
                        break
        if len(cache) >= self._cap:
            cache.pop(next(iter(cache)))
        cache[key] = peer
        return peer
