"""The web console: per-customer users, sessions and pages served by the admin listener."""
