"""TLS wiring in the control plane: deploy flags, state round trip, the registry's picture."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockyard.errors import ProxyError
from dockyard.proxy.cli import UsageError, _normalize_bool_flags, build_parser, deploy_request
from dockyard.proxy.control.options import (
    ACME_DIRECTORY,
    ACME_STAGING_DIRECTORY,
    DeployRequest,
    ServiceConfig,
)
from dockyard.proxy.control.router import ProxyRouter
from dockyard.proxy.control.state import SavedService, StateStore
from dockyard.proxy.control.tls import TlsRegistry
from dockyard.proxy.tls.certs import CertificateError

PEBBLE = "https://127.0.0.1:14000/dir"


def parse(argv: list[str], tmp_path: Path) -> DeployRequest:
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    args = build_parser(env=env).parse_args(_normalize_bool_flags(["deploy", *argv]))
    request = deploy_request(args, env)
    assert isinstance(request, DeployRequest)
    return request


def self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / f"{host}.crt", directory / f"{host}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


# -- flags ---------------------------------------------------------------------------------------


def test_deploy_tls_flags_build_the_service_config(tmp_path: Path) -> None:
    request = parse(
        [
            "web",
            "--target=a:1",
            "--host=x.test",
            "--tls",
            f"--tls-acme-directory={PEBBLE}",
            "--tls-redirect=false",
        ],
        tmp_path,
    )
    cfg = request.config
    assert cfg.tls_enabled and not cfg.tls_redirect
    assert cfg.acme_directory == PEBBLE
    assert cfg.tls_acme_cache_path == str(tmp_path / "cfg" / "kamal-proxy" / "certs")
    assert cfg.effective_forward_headers is False
    # The JSON the CLI sends is what the server rebuilds.
    assert DeployRequest.from_json(request.to_json()).config == cfg

    staging = parse(["web", "--target=a:1", "--host=x.test", "--tls", "--tls-staging"], tmp_path)
    assert staging.config.acme_directory == ACME_STAGING_DIRECTORY
    default = parse(["web", "--target=a:1", "--host=x.test", "--tls"], tmp_path)
    assert default.config.acme_directory == ACME_DIRECTORY


def test_custom_certificate_paths_are_sent_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    request = parse(
        [
            "web",
            "--target=a:1",
            "--host=x.test",
            "--tls",
            "--tls-certificate-path=certs/c.pem",
            "--tls-private-key-path=k.pem",
        ],
        tmp_path,
    )
    assert request.config.tls_certificate_path == str(tmp_path / "certs" / "c.pem")
    assert request.config.tls_private_key_path == str(tmp_path / "k.pem")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["web", "--target=a:1", "--tls"], "host must be set when using TLS"),
        (
            ["web", "--target=a:1", "--host=x.test", "--tls", "--tls-certificate-path=c.pem"],
            "missing [tls-private-key-path]",
        ),
        (
            ["web", "--target=a:1", "--host=x.test", "--tls", "--tls-acme-directory=http://ca"],
            "must be an https:// URL",
        ),
        (
            [
                "web",
                "--target=a:1",
                "--host=x.test",
                "--tls",
                "--tls-staging",
                f"--tls-acme-directory={PEBBLE}",
            ],
            "cannot be used together",
        ),
        (
            ["web", "--target=a:1", "--host=x.test", "--tls", "--path-prefix=/api"],
            "root path service",
        ),
    ],
)
def test_bad_tls_flags_are_refused_by_the_client(
    argv: list[str], message: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError) as exc:
        parse(argv, tmp_path)
    assert message in str(exc.value)


# -- state ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        ServiceConfig(
            hosts=("a.test",),
            tls_enabled=True,
            tls_acme_directory=PEBBLE,
            tls_acme_cache_path="/data/certs",
            tls_redirect=False,
            forward_headers=False,  # the CLI always sends it explicitly
        ),
        ServiceConfig(
            hosts=("a.test", "b.test"),
            tls_enabled=True,
            tls_staging=True,
            canonical_host="a.test",
            forward_headers=False,
        ),
        ServiceConfig(
            hosts=("a.test",),
            tls_enabled=True,
            tls_certificate_path="/c.pem",
            tls_private_key_path="/k.pem",
            forward_headers=False,
        ),
    ],
)
def test_tls_options_survive_the_state_file(config: ServiceConfig, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "kamal-proxy.state")
    store.save([SavedService("web", config, ("a:1",), (), {})])
    loaded = store.load()
    assert loaded is not None
    assert loaded[0].config == config
    assert loaded[0].config.acme_directory == config.acme_directory


def test_the_state_file_uses_kamal_proxys_acme_directory_key(tmp_path: Path) -> None:
    config = ServiceConfig(hosts=("a.test",), tls_enabled=True, tls_acme_directory=PEBBLE)
    options = SavedService("web", config, ("a:1",), (), {}).to_json()["options"]
    assert options["acme_directory"] == PEBBLE and options["tls_enabled"] is True


# -- the registry and the router -----------------------------------------------------------------


def test_registry_serves_custom_certificates_by_sni_and_acme_hosts_by_directory(
    tmp_path: Path,
) -> None:
    a_cert, a_key = self_signed(tmp_path, "a.test")

    async def scenario() -> None:
        registry = TlsRegistry(tmp_path / "certs")
        custom = ServiceConfig(
            hosts=("a.test",),
            tls_enabled=True,
            tls_certificate_path=str(a_cert),
            tls_private_key_path=str(a_key),
        )
        acme = ServiceConfig(hosts=("b.test",), tls_enabled=True, tls_acme_directory=PEBBLE)
        staging = ServiceConfig(hosts=("c.test",), tls_enabled=True, tls_staging=True)
        plain = ServiceConfig(hosts=("d.test",))
        certified = await registry.validate(custom)
        assert certified is not None
        registry.apply([("a", custom), ("b", acme), ("c", staging), ("d", plain)], {"a": certified})
        selector = registry.selector
        assert selector.alpn == ("h2", "http/1.1")
        assert selector.context_for("a.test") is not None
        assert selector.context_for(None) is selector.context_for("a.test")  # default host
        assert selector.context_for("d.test") is None
        assert selector.acme_allows("b.test") and selector.acme_allows("c.test")
        assert not selector.acme_allows("a.test") and not selector.acme_allows("d.test")
        b_manager = registry.manager(PEBBLE, "")
        c_manager = registry.manager(ACME_STAGING_DIRECTORY, "")
        assert b_manager is not c_manager
        assert b_manager.host_policy is not None and b_manager.host_policy("b.test")
        assert not b_manager.host_policy("c.test")
        assert str(b_manager.store.path).startswith(str(tmp_path / "certs"))

        registry.apply([("b", acme)])  # "a" removed: its certificate goes
        assert selector.context_for("a.test") is None
        await registry.aclose()

    asyncio.run(scenario())


def test_router_refuses_bad_certificates_before_touching_the_service(tmp_path: Path) -> None:
    a_cert, _ = self_signed(tmp_path, "a.test")
    _, other_key = self_signed(tmp_path, "other.test")

    async def scenario() -> None:
        registry = TlsRegistry(tmp_path / "certs")
        router = ProxyRouter(StateStore(tmp_path / "state"), tls=registry)
        bad = ServiceConfig(
            hosts=("a.test",),
            tls_enabled=True,
            tls_certificate_path=str(a_cert),
            tls_private_key_path=str(other_key),
        )
        with pytest.raises(CertificateError):
            await router.deploy(DeployRequest("web", ("127.0.0.1:9",), config=bad, force=True))
        with pytest.raises(ProxyError, match="automatic TLS does not support wildcards"):
            wildcard = ServiceConfig(hosts=("*.a.test",), tls_enabled=True)
            await router.deploy(DeployRequest("web", ("127.0.0.1:9",), config=wildcard, force=True))
        assert router.services == {}
        assert not (tmp_path / "state").exists()
        await registry.aclose()

    asyncio.run(scenario())


def test_restore_brings_back_tls_services_and_survives_a_missing_certificate(
    tmp_path: Path,
) -> None:
    a_cert, a_key = self_signed(tmp_path, "a.test")
    gone_cert, gone_key = self_signed(tmp_path, "gone.test")
    store = StateStore(tmp_path / "kamal-proxy.state")
    good = ServiceConfig(
        hosts=("a.test",),
        tls_enabled=True,
        forward_headers=False,
        tls_certificate_path=str(a_cert),
        tls_private_key_path=str(a_key),
    )
    lost = ServiceConfig(
        hosts=("gone.test",),
        tls_enabled=True,
        forward_headers=False,
        tls_certificate_path=str(gone_cert),
        tls_private_key_path=str(gone_key),
    )
    acme = ServiceConfig(hosts=("b.test",), tls_enabled=True, tls_acme_directory=PEBBLE)
    store.save(
        [
            SavedService("a", good, ("127.0.0.1:9",), (), {}),
            SavedService("gone", lost, ("127.0.0.1:9",), (), {}),
            SavedService("b", acme, ("127.0.0.1:9",), (), {}),
        ]
    )
    gone_cert.unlink()

    async def scenario() -> None:
        registry = TlsRegistry(tmp_path / "certs")
        router = ProxyRouter(store, tls=registry)
        assert router.restore() == 3
        assert {row.service: row.tls for row in router.rows()} == {
            "a": "yes",
            "b": "yes",
            "gone": "yes",
        }
        selector = registry.selector
        assert selector.context_for("a.test") is not None
        assert selector.context_for("gone.test") is None  # handshakes fail until redeployed
        assert selector.acme_allows("b.test")
        await router.close()
        await registry.aclose()

    asyncio.run(scenario())


def test_a_busy_https_port_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    import socket

    from dockyard.proxy.control.server import RunSettings, serve

    with socket.socket() as busy, socket.socket() as free:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        free.bind(("127.0.0.1", 0))
        http_port = free.getsockname()[1]
        free.close()
        settings = RunSettings(
            http_port=http_port,
            https_port=busy.getsockname()[1],
            bind="127.0.0.1",
            socket=tmp_path / "kamal-proxy.sock",
            state_file=tmp_path / "kamal-proxy.state",
        )
        port = busy.getsockname()[1]
        with pytest.raises(ProxyError, match=rf"unable to listen on 127\.0\.0\.1:{port}"):
            asyncio.run(serve(settings))
        assert not settings.socket.exists()  # type: ignore[union-attr]
