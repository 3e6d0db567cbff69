"""The proxy's control plane: routing table, services, targets, health, drain, state, RPC."""
