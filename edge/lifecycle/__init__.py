"""Number lifecycle: release, quarantine, residual-traffic monitoring, reassignment (sans-IO)."""
