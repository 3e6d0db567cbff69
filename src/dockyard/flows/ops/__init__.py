"""The operational commands besides deploy: app, proxy, accessory, server, lock, prune, details,
audit and aliases. Each flow is an async function of an :class:`~dockyard.flows.ops.base.Ops`
(config, host/role selection, transports, output sink) and returns what the CLI renders."""

from __future__ import annotations
