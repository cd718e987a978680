"""The call layer (sans-IO): what the edge does with a contact once its bytes are parsed.

Public surface: `proxy.Proxy` (receive/handle_timers/next_deadline, the drained outputs
`datagrams_to_send`, `activities_to_store`, `certificate_fetches`, `released_hits`, `reconfigure`,
draining), `ua.UserAgent` (the SIP seam the proxy and the B2BUA share; `FAILOVER_STATUSES`),
`b2bua.B2bua` (screened calls and their media effects), `admission.Gatekeeper` (STIR + policy for one
INVITE), `routing.TargetPool`, `peers.PeerDirectory`, `flood.FloodGuard`, `activity.Activity`.
Nothing here awaits, opens a socket or reads the clock (tests/test_layering.py).
"""
