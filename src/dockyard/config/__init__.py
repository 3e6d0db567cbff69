"""Reading and validating config/deploy.yml, destinations, secrets and env into typed objects.

    config = load_config()                      # config/deploy.yml in the current directory
    config = load_config("config/deploy.yml", "staging", root=project_dir)
    for role in config.roles: role.hosts, role.env(host), role.proxy, role.labels ...

Everything is validated when loaded (Kamal 2.11's rules); errors are `ConfigError`s naming the
file, the key path (`servers/web/hosts/1`) and the line. tests/unit/test_kamal_compat.py pins
this against the real `kamal config`. Where Dockyard deliberately differs from Kamal 2.11:

- ERB: only the forms used in deploy.yml files in practice (`ENV[...]`, `ENV.fetch`, `%x()`,
  backticks); anything else is an error naming the file and line. A failing command is an error.
- An accessory without `image`, a `boot/limit` that is neither a number nor a percentage, and a
  non-string `service` are errors when loading (Kamal fails later, or crashes).
- Kamal 1 forms (`builder/local` and `builder/remote` mappings, `multiarch`, top-level
  `healthcheck`, role `traefik`, `primary_web_role`, `stop_wait_time`) are read in their Kamal 2
  form with one warning each in `Config.warnings` (the CLI prints them); `traefik` is refused with
  what to write. A role may have `volumes` (Kamal rejects it): they become its `options/volume`.
  `dockyard config --migrate` rewrites the files the same way (`dockyard.config.legacy`).
- `dockyard config` works for a config with accessories only (`kamal config` crashes on it) and
  shows `[REDACTED]` for an ssh `key_data` entry that names a secret (Kamal prints the key).
"""

from __future__ import annotations

from dockyard.errors import ConfigError

from ._source import render_template
from .errors import ConfigValidationError, kamal_path
from .loader import KAMAL_VERSION, load_config
from .models import (
    Accessory,
    AccessoryPath,
    Boot,
    Builder,
    BuilderCache,
    BuilderPack,
    Config,
    Env,
    Logging,
    OptionValue,
    ProxyBuffering,
    ProxyConfig,
    ProxyHealthcheck,
    ProxyLogging,
    ProxyRun,
    ProxySslCertificate,
    Registry,
    Role,
    SecretRef,
    Ssh,
    Sshkit,
)
from .secret import Secret, SecretStore
from .sections import Globals, resolve_role

__all__ = [
    "KAMAL_VERSION",
    "Accessory",
    "AccessoryPath",
    "Boot",
    "Builder",
    "BuilderCache",
    "BuilderPack",
    "Config",
    "ConfigError",
    "ConfigValidationError",
    "Env",
    "Globals",
    "Logging",
    "OptionValue",
    "ProxyBuffering",
    "ProxyConfig",
    "ProxyHealthcheck",
    "ProxyLogging",
    "ProxyRun",
    "ProxySslCertificate",
    "Registry",
    "Role",
    "Secret",
    "SecretRef",
    "SecretStore",
    "Ssh",
    "Sshkit",
    "kamal_path",
    "load_config",
    "render_template",
    "resolve_role",
]
