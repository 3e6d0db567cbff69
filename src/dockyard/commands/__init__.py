"""Pure functions from configuration to argv (no I/O). Kamal compatibility is pinned here."""
