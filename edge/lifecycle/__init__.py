"""Number lifecycle (sans-IO): release, quarantine, residual-traffic monitoring, reassignment.

Public surface: `manager.Lifecycle` (is_released, record_traffic, apply/load), `record.NumberRecord`
and `NumberState`, `schema.LifecycleConfig` and `validate_lifecycle`.
"""
