"""Dockyard: deploy containerized web apps to your own servers (Kamal 2 compatible)."""

__version__ = "0.1.0"
