"""sip-edge benchmarks: the end-to-end CPS harness (`python -m benchmarks.run`) and micro-benchmarks."""
