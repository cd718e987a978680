"""The process (adapters): `process.run_daemon` wires store, policy, STIR, number lifecycle, the SIP
and media adapters and the admin HTTP API around the core; uvloop, signals, reload, drain, systemd
notify, logging (`logging.setup_logging`) and Prometheus metrics (`metrics.EdgeCollector`).
"""
