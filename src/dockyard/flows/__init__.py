"""Orchestration of setup, deploy, rollback and friends on top of config, commands and remote."""
