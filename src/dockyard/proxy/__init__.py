"""dockyard-proxy: a kamal-proxy compatible reverse proxy."""
