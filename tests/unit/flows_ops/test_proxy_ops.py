from __future__ import annotations

from dockyard.commands.proxy import BootConfigOptions
from dockyard.flows.context import Selection
from dockyard.flows.ops import accessory, proxy
from dockyard.remote import FakePool, FakeTransport, Result

from .conftest import BASE, MakeConfig, make_ctx, run, without_lock_and_audit


def test_start_stop_restart_details_on_proxy_hosts_only(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["docker", "ps"], Result(0, "kamal-proxy Up\n", "")))
    ctx, _ = make_ctx(make_config(), pool)
    run(proxy.restart(ctx))
    sections = run(proxy.details(ctx))
    # web runs the proxy; the workers role has a cmd and no proxy; no accessory has one
    assert [s.host for s in sections] == ["10.0.0.1", "10.0.0.2"]
    assert without_lock_and_audit(pool.transports["10.0.0.2"].commands) == [
        ["docker", "container", "stop", "kamal-proxy"],
        ["docker", "container", "start", "kamal-proxy"],
        ["docker", "ps", "--filter", "name=^kamal-proxy$"],
    ]
    assert without_lock_and_audit(pool.transports["10.0.0.3"].commands) == []
    run(proxy.stop(ctx))
    run(proxy.start(ctx))
    for host in ("10.0.0.1", "10.0.0.2"):
        assert without_lock_and_audit(pool.transports[host].commands)[-2:] == [
            ["docker", "container", "stop", "kamal-proxy"],
            ["docker", "container", "start", "kamal-proxy"],
        ]
    assert without_lock_and_audit(pool.transports["10.0.0.3"].commands) == []


def test_remove_refuses_while_apps_are_installed_unless_forced(make_config: MakeConfig) -> None:
    pool = FakePool(setup=lambda f: f.on(["ls", ".kamal/apps"], Result(0, "hello\nother\n", "")))
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    message = run(proxy.remove(ctx))
    assert message is not None and "apps are still installed on 10.0.0.1" in message
    calls = without_lock_and_audit(pool.transports["10.0.0.1"].commands)
    assert calls == [["ls", ".kamal/apps"]]
    assert run(proxy.remove(ctx, force=True)) is None
    calls = without_lock_and_audit(pool.transports["10.0.0.1"].commands)
    assert calls[-4:] == [
        ["docker", "container", "stop", "kamal-proxy"],
        [
            "docker",
            "container",
            "prune",
            "--force",
            "--filter",
            "label=org.opencontainers.image.title=kamal-proxy",
        ],
        [
            "docker",
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            "label=org.opencontainers.image.title=kamal-proxy",
        ],
        ["rm", "-r", ".kamal/proxy"],
    ]


def test_boot_config_set_get_reset(make_config: MakeConfig) -> None:
    def setup(fake: FakeTransport) -> None:
        fake.on(["cat"], Result(1, "", "No such file"))  # rules: the newest matching wins
        fake.on(["cat", ".kamal/proxy/image"], Result(0, "reg:5000/my-proxy\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(), pool, Selection.parse("10.0.0.1"))
    options = BootConfigOptions(registry="reg:5000", repository="my", image_version="v1.2.3")
    run(proxy.boot_config_set(ctx, options))
    fake = pool.transports["10.0.0.1"]
    assert {u.path: u.data for u in fake.uploads} == {
        ".kamal/proxy/image": b"reg:5000/my/kamal-proxy",
        ".kamal/proxy/image_version": b"v1.2.3",
    }
    assert ["rm", ".kamal/proxy/options"] in fake.commands
    got = run(proxy.boot_config_get(ctx))
    assert got[0].text == (
        "--publish 80:80 --publish 443:443 --log-opt max-size=10m reg:5000/my-proxy:v0.9.2"
    )
    run(proxy.boot_config_reset(ctx))
    assert fake.commands[-4:] == [
        ["rm", ".kamal/proxy/options"],
        ["rm", ".kamal/proxy/image"],
        ["rm", ".kamal/proxy/image_version"],
        ["rm", ".kamal/proxy/run_command"],
    ]


def test_a_proxied_accessory_is_registered_with_the_proxy(make_config: MakeConfig) -> None:
    text = BASE.replace(
        "    volumes:\n      - cache-logs:/logs\n",
        "    volumes:\n      - cache-logs:/logs\n    proxy:\n      host: cache.test\n"
        "      app_port: 8080\n",
    )

    def setup(fake: FakeTransport) -> None:
        fake.on(["docker", "container", "ls"], Result(0, "c0ffee\n", ""))

    pool = FakePool(setup=setup)
    ctx, _ = make_ctx(make_config(text), pool)
    run(accessory.start(ctx, "cache"))
    run(accessory.stop(ctx, "cache"))
    calls = without_lock_and_audit(pool.transports["10.0.0.4"].commands)
    assert calls[0] == ["docker", "container", "start", "hello-cache"]
    assert calls[1] == [
        "docker",
        "container",
        "ls",
        "--filter",
        "name=^hello-cache$",
        "--quiet",
    ]
    assert calls[2][:7] == [
        "docker",
        "exec",
        "kamal-proxy",
        "kamal-proxy",
        "deploy",
        "hello-cache",
        "--target=c0ffee:8080",
    ]
    assert "--host=cache.test" in calls[2]
    assert calls[3:] == [
        ["docker", "container", "stop", "hello-cache"],
        ["docker", "exec", "kamal-proxy", "kamal-proxy", "remove", "hello-cache"],
    ]
