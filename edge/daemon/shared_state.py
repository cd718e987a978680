"""Several nodes, one state (DESIGN §6, docs/redis.md): wires a RedisStore into the running daemon.

What other nodes change reaches this node's in-memory indexes, which the synchronous core reads:
- block/allow rules -> the policy engine's RuleIndex (through the daemon's `_rules_changed`, the
  same path the admin API uses), and after every (re)connect a full diff of the runtime rules;
- number lifecycle records -> the Lifecycle index;
- captcha passes -> the Gatekeeper's PassMemory;
- rate windows -> the Spam Detective's RateBook gets the store's SharedRates.
The Redis metrics collector is registered in the daemon's registry.

With another backend `attach_shared_state` returns an inactive SharedState: the daemon calls the
same two lines whatever the backend.
"""

from __future__ import annotations

import time
from typing import Any

import structlog

from edge.lifecycle.record import NumberRecord
from edge.policy.blocking import is_static
from edge.policy.rules import BlockRule
from edge.store.redis import RedisCollector, RedisStore, ignore_change

log = structlog.get_logger("edge.shared_state")


class SharedState:
    """The link between a RedisStore and the daemon's indexes; `close()` unhooks it."""

    def __init__(self, daemon: Any, store: RedisStore | None) -> None:
        self.daemon = daemon
        self.store = store
        self.resyncs = 0
        self.collector: RedisCollector | None = None

    @property
    def active(self) -> bool:
        return self.store is not None

    def on_block(self, add: BlockRule | None, removed_id: str | None) -> None:
        self.daemon._rules_changed(add, removed_id)

    def on_number(self, record: NumberRecord) -> None:
        if self.daemon.lifecycle is not None:
            self.daemon.lifecycle.apply(record)

    def on_captcha(self, calling: str, scope: str, until: float) -> None:
        proxy = self.daemon.proxy
        gate = getattr(proxy, "gate", None)
        if gate is not None and not scope:  # the daemon remembers passes node-wide (scope '')
            gate.passes.remember(calling, until)

    def on_resync(self, blocks: list[BlockRule], numbers: list[NumberRecord]) -> None:
        """Redis came (back): make the runtime rules and the lifecycle index equal to the shared state."""
        engine = self.daemon.engine
        added = removed = 0
        if engine is not None:
            shared = {r.id: r for r in blocks}
            for rule in list(engine.rules):
                if not is_static(rule) and rule.id not in shared:
                    engine.rules.remove(rule.id)
                    removed += 1
            for rule in blocks:
                current = engine.rules.get(rule.id)
                if current is None or current.created_at != rule.created_at or current.expires_at != rule.expires_at:
                    try:
                        engine.rules.add(rule)
                    except ValueError as exc:
                        log.error("shared_rule_invalid", rule=rule.id, error=str(exc))
                        continue
                    added += 1
        if self.daemon.lifecycle is not None:
            self.daemon.lifecycle.load(numbers)
        self.resyncs += 1
        log.info("shared_state_resynced", rules_added=added, rules_removed=removed, numbers=len(numbers))

    async def close(self) -> None:
        store = self.store
        if store is None:
            return
        store.on_block = store.on_number = store.on_captcha = store.on_resync = store.on_optout = ignore_change
        engine = self.daemon.engine
        if engine is not None and engine.detective.rates.shared is store.rates:
            engine.detective.rates.shared = None
        if self.collector is not None:
            self.daemon.registry.unregister(self.collector)
            self.collector = None
        self.store = None


async def attach_shared_state(daemon: Any) -> SharedState:
    """Call once the store, policy engine, lifecycle and proxy exist; `await shared.close()` before the store closes."""
    store = daemon.store
    if not isinstance(store, RedisStore):
        return SharedState(daemon, None)
    shared = SharedState(daemon, store)
    daemon.engine.detective.rates.shared = store.rates
    store.on_block = shared.on_block
    store.on_number = shared.on_number
    store.on_captcha = shared.on_captcha
    store.on_resync = shared.on_resync
    shared.collector = RedisCollector(store)
    daemon.registry.register(shared.collector)
    if store.up:
        # Blocks and numbers were read at start; so were the captcha passes other nodes made before.
        passes = store.synced_passes(time.time())
        for calling, scope, until in passes:
            shared.on_captcha(calling, scope, until)
        log.info("shared_state_attached", node=store.node, redis=store.url, passes_loaded=len(passes))
    else:
        log.error("shared_state_attached_degraded", node=store.node, redis=store.url,
                  detail="Redis unreachable at start: serving from the local copy until it returns")
    return shared
