"""Golden tests: kamal-proxy commands (Kamal ``test/commands/proxy_test.rb``, §2.8 of kamal.md).

Kamal's shell quoting (``--target="c:80"``) is gone: each argv item is what the program gets.
"""

from __future__ import annotations

from dockyard.commands import proxy
from dockyard.commands.argv import HomePath

from .conftest import LoadConfig

#: Dockyard's log-rotation default after the size cap (deliberately not in Kamal's argv).
ROTATE = ("--log-opt", "max-file=5")

BASE_RUN = (
    "docker", "run", "--name", "kamal-proxy", "--network", "kamal", "--detach",
    "--restart", "unless-stopped",
    "--volume", "kamal-proxy-config:/home/kamal-proxy/.config/kamal-proxy",
    "--volume", "$PWD/.kamal/proxy/apps-config:/home/kamal-proxy/.apps-config",
)  # fmt: skip
DEFAULT_PUBLISH = (
    "--publish",
    "80:80",
    "--publish",
    "443:443",
    "--log-opt",
    "max-size=10m",
    *ROTATE,
)


def test_run_with_defaults() -> None:
    command = proxy.run(proxy.ProxyRun())
    assert command == (
        *BASE_RUN, *DEFAULT_PUBLISH, "basecamp/kamal-proxy:v0.9.2", "kamal-proxy", "run",
    )  # fmt: skip
    assert HomePath(".kamal/proxy/apps-config:/home/kamal-proxy/.apps-config") in command.parts


def test_run_image_is_overridable() -> None:
    assert proxy.run(proxy.ProxyRun(registry="registry:4443"))[-3] == (
        "registry:4443/basecamp/kamal-proxy:v0.9.2"
    )
    assert proxy.run(proxy.ProxyRun(repository="custom/repo"))[-3] == "custom/repo:v0.9.2"
    assert proxy.run(proxy.ProxyRun(version="v1.2.3"))[-3] == "basecamp/kamal-proxy:v1.2.3"


def test_run_with_bind_ips_including_ipv6() -> None:
    command = proxy.run(proxy.ProxyRun(bind_ips=("0.0.0.0", "127.0.0.1", "::1")))
    assert command == (
        *BASE_RUN,
        "--publish", "0.0.0.0:80:80", "--publish", "0.0.0.0:443:443",
        "--publish", "127.0.0.1:80:80", "--publish", "127.0.0.1:443:443",
        "--publish", "[::1]:80:80", "--publish", "[::1]:443:443",
        "--log-opt", "max-size=10m", *ROTATE,
        "basecamp/kamal-proxy:v0.9.2", "kamal-proxy", "run",
    )  # fmt: skip


def test_run_with_log_size_debug_metrics_options_and_no_publish() -> None:
    command = proxy.run(
        proxy.ProxyRun(
            log_max_size="50m",
            debug=True,
            metrics_port=9090,
            publish=False,
            options=(("cpus", "2"), ("init", True)),
        )
    )
    assert command == (
        *BASE_RUN,
        "--log-opt", "max-size=50m", *ROTATE, "--expose=9090", "--cpus", "2", "--init",
        "basecamp/kamal-proxy:v0.9.2", "kamal-proxy", "run", "--debug", "--metrics-port", "9090",
    )  # fmt: skip


def test_legacy_run_with_no_boot_files_uses_defaults_instead_of_echo_xargs() -> None:
    assert proxy.legacy_run() == (
        *BASE_RUN, *DEFAULT_PUBLISH, "basecamp/kamal-proxy:v0.9.2",
    )  # fmt: skip


def test_legacy_run_from_boot_file_contents() -> None:
    command = proxy.legacy_run(
        options="--publish 8080:80 --publish 8443:443 --log-opt max-size=10m\n",
        image="registry:4443/basecamp/kamal-proxy",
        image_version="v0.9.3\n",
        run_command="kamal-proxy run --debug",
    )
    assert command == (
        *BASE_RUN,
        "--publish", "8080:80", "--publish", "8443:443", "--log-opt", "max-size=10m", *ROTATE,
        "registry:4443/basecamp/kamal-proxy:v0.9.3", "kamal-proxy", "run", "--debug",
    )  # fmt: skip


def test_boot_files_are_read_with_cat() -> None:
    assert [proxy.read_boot_file(f) for f in proxy.BOOT_FILES] == [
        ("cat", ".kamal/proxy/options"),
        ("cat", ".kamal/proxy/image"),
        ("cat", ".kamal/proxy/image_version"),
        ("cat", ".kamal/proxy/run_command"),
    ]
    assert [proxy.reset_boot_file(f) for f in proxy.BOOT_FILES] == [
        ("rm", ".kamal/proxy/options"),
        ("rm", ".kamal/proxy/image"),
        ("rm", ".kamal/proxy/image_version"),
        ("rm", ".kamal/proxy/run_command"),
    ]


def test_boot_config_set_defaults_remove_every_file() -> None:
    assert proxy.boot_config_files(proxy.BootConfigOptions()) == {
        ".kamal/proxy/options": None,
        ".kamal/proxy/image": None,
        ".kamal/proxy/image_version": None,
        ".kamal/proxy/run_command": None,
    }


def test_boot_config_set_with_options() -> None:
    files = proxy.boot_config_files(
        proxy.BootConfigOptions(
            publish_host_ips=("127.0.0.1",),
            http_port=8080,
            log_max_size="20m",
            registry="registry:4443",
            repository="mine",
            image_version="v0.9.3",
            metrics_port=9090,
            debug=True,
            docker_options=("cpus=2",),
        )
    )
    assert files == {
        ".kamal/proxy/options": "--publish 127.0.0.1:8080:80 --publish 127.0.0.1:443:443 "
        "--log-opt max-size=20m --expose=9090 --cpus=2",
        ".kamal/proxy/image": "registry:4443/mine/kamal-proxy",
        ".kamal/proxy/image_version": "v0.9.3",
        ".kamal/proxy/run_command": "kamal-proxy run --debug --metrics-port 9090",
    }


def test_container_lifecycle() -> None:
    assert proxy.start() == ("docker", "container", "start", "kamal-proxy")
    assert proxy.stop() == ("docker", "container", "stop", "kamal-proxy")
    start, run = proxy.start_or_run(proxy.ProxyRun())
    assert start == proxy.start()
    assert run == proxy.run(proxy.ProxyRun())
    assert proxy.start_or_run(None)[1] == proxy.legacy_run()
    assert proxy.info() == ("docker", "ps", "--filter", "name=^kamal-proxy$")


def test_version_reads_image_and_parses_tag_instead_of_awk() -> None:
    assert proxy.version() == (
        "docker", "inspect", "kamal-proxy", "--format", "{{.Config.Image}}",
    )  # fmt: skip
    assert proxy.parse_version("basecamp/kamal-proxy:v0.9.2\n") == "v0.9.2"
    assert proxy.parse_version("registry:4443/basecamp/kamal-proxy:v0.8.0") == "v0.8.0"
    assert proxy.parse_version("") is None
    assert proxy.is_older("v0.8.7")
    assert not proxy.is_older("v0.9.2")
    assert not proxy.is_older("v0.10.0")


def test_logs() -> None:
    assert proxy.logs().shell() == "docker logs kamal-proxy --timestamps 2>&1"
    assert proxy.logs(since="2h").stages[0] == (
        "docker", "logs", "kamal-proxy", "--since", "2h", "--timestamps",
    )  # fmt: skip
    assert proxy.logs(lines=10).stages[0] == (
        "docker", "logs", "kamal-proxy", "--tail", "10", "--timestamps",
    )  # fmt: skip
    assert proxy.logs(timestamps=False).stages == (("docker", "logs", "kamal-proxy"),)
    grep = proxy.logs(grep="hello!", grep_options="-C 2")
    assert grep.stages[1] == ("grep", "hello!", "-C", "2")
    assert grep.merge_stderr


def test_follow_logs_is_a_pipeline_for_the_interactive_ssh_session() -> None:
    assert proxy.follow_logs().shell() == (
        "docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1"
    )
    assert proxy.follow_logs(grep="hello!").shell() == (
        "docker logs kamal-proxy --timestamps --tail 10 --follow 2>&1 | grep 'hello!'"
    )


def test_removal_and_directories() -> None:
    label = "label=org.opencontainers.image.title=kamal-proxy"
    assert proxy.remove_container() == (
        "docker",
        "container",
        "prune",
        "--force",
        "--filter",
        label,
    )
    assert proxy.remove_image() == (
        "docker", "image", "prune", "--all", "--force", "--filter", label,
    )  # fmt: skip
    assert proxy.ensure_proxy_directory() == ("mkdir", "-p", ".kamal/proxy")
    assert proxy.remove_proxy_directory() == ("rm", "-r", ".kamal/proxy")
    assert proxy.ensure_apps_config_directory() == ("mkdir", "-p", ".kamal/proxy/apps-config")
    traefik = proxy.cleanup_traefik()
    assert traefik[0] == ("docker", "container", "stop", "traefik")
    assert traefik[2][-1] == "label=org.opencontainers.image.title=Traefik"


DEFAULT_DEPLOY_FLAGS = (
    "--deploy-timeout=30s", "--drain-timeout=30s", "--buffer-requests", "--buffer-responses",
    "--log-request-header=Cache-Control", "--log-request-header=Last-Modified",
    "--log-request-header=User-Agent",
)  # fmt: skip


def test_deploy_defaults() -> None:
    assert proxy.deploy("app-web", "172.1.0.2", proxy.ProxyDeploy()) == (
        "docker", "exec", "kamal-proxy", "kamal-proxy", "deploy", "app-web",
        "--target=172.1.0.2:80", *DEFAULT_DEPLOY_FLAGS,
    )  # fmt: skip


def test_deploy_with_ssl_and_hosts() -> None:
    settings = proxy.ProxyDeploy(ssl=True, hosts=("example.com", "anotherexample.com"))
    assert proxy.deploy("app-web", "172.1.0.2", settings)[5:] == (
        "app-web", "--target=172.1.0.2:80", "--host=example.com", "--host=anotherexample.com",
        "--tls", *DEFAULT_DEPLOY_FLAGS,
    )  # fmt: skip


def test_deploy_with_every_flag_in_kamal_order() -> None:
    settings = proxy.ProxyDeploy(
        app_port=3000,
        hosts=("a.example",),
        ssl=True,
        tls_certificate_path="/home/kamal-proxy/.apps-config/app/tls/web/cert.pem",
        tls_private_key_path="/home/kamal-proxy/.apps-config/app/tls/web/key.pem",
        deploy_timeout=60,
        drain_timeout=10,
        health_check_interval=2,
        health_check_timeout=3,
        health_check_path="/health",
        response_timeout=15,
        buffer_requests=False,
        buffer_responses=True,
        buffer_memory=1000,
        max_request_body=2000,
        max_response_body=3000,
        path_prefixes=("/api", "/v2"),
        strip_path_prefix=False,
        forward_headers=True,
        ssl_redirect=False,
        log_request_headers=("X-Request-Id",),
        log_response_headers=("X-Runtime",),
        error_pages="/home/kamal-proxy/.apps-config/app/error_pages/123",
    )
    assert proxy.deploy_args("c1", settings) == (
        "--target=c1:3000",
        "--host=a.example",
        "--tls",
        "--tls-certificate-path=/home/kamal-proxy/.apps-config/app/tls/web/cert.pem",
        "--tls-private-key-path=/home/kamal-proxy/.apps-config/app/tls/web/key.pem",
        "--deploy-timeout=60s",
        "--drain-timeout=10s",
        "--health-check-interval=2s",
        "--health-check-timeout=3s",
        "--health-check-path=/health",
        "--target-timeout=15s",
        "--buffer-requests=false",
        "--buffer-responses",
        "--buffer-memory=1000",
        "--max-request-body=2000",
        "--max-response-body=3000",
        "--path-prefix=/api",
        "--path-prefix=/v2",
        "--strip-path-prefix=false",
        "--forward-headers",
        "--tls-redirect=false",
        "--log-request-header=X-Request-Id",
        "--log-response-header=X-Runtime",
        "--error-pages=/home/kamal-proxy/.apps-config/app/error_pages/123",
    )


def test_remove_resume_and_maintenance() -> None:
    prefix = ("docker", "exec", "kamal-proxy", "kamal-proxy")
    assert proxy.remove("app-web") == (*prefix, "remove", "app-web")
    assert proxy.resume("app-web") == (*prefix, "resume", "app-web")
    assert proxy.pause_stop("app-web") == (*prefix, "stop", "app-web")
    assert proxy.pause_stop("app-web", drain_timeout=10, message="Hi there") == (
        *prefix, "stop", "app-web", "--drain-timeout=10s", "--message=Hi there",
    )  # fmt: skip


def test_run_for_host_uses_the_hosts_proxy_run_settings(load: LoadConfig) -> None:
    raw = {
        "service": "app",
        "image": "dhh/app",
        "registry": {"username": "dhh", "password": "secret"},
        "servers": {"web": ["1.1.1.1"], "workers": ["1.1.1.2"]},
        "builder": {"arch": "amd64"},
        "proxy": {"run": {"http_port": 8080, "version": "v0.9.3"}},
    }
    config = load(raw)
    assert proxy.run_for_host(config, "1.1.1.1") == (
        *BASE_RUN, "--publish", "8080:80", "--publish", "443:443", "--log-opt", "max-size=10m",
        *ROTATE,
        "basecamp/kamal-proxy:v0.9.3", "kamal-proxy", "run",
    )  # fmt: skip
    # workers do not run the proxy: no proxy.run for that host, the legacy files decide.
    assert proxy.run_for_host(config, "1.1.1.2") is None


def test_pause_and_list_are_kamal_proxy_commands_kamal_does_not_send() -> None:
    prefix = ("docker", "exec", "kamal-proxy", "kamal-proxy")
    assert proxy.pause("app-web") == (*prefix, "pause", "app-web")
    assert proxy.pause("app-web", drain_timeout=5, max_pause=60) == (
        *prefix, "pause", "app-web", "--drain-timeout=5s", "--max-pause=60s",
    )  # fmt: skip
    assert proxy.list_services() == (*prefix, "list")


def test_boot_config_get_text_is_what_kamals_echo_prints() -> None:
    assert proxy.boot_config_text() == (
        "--publish 80:80 --publish 443:443 --log-opt max-size=10m basecamp/kamal-proxy:v0.9.2"
    )
    assert proxy.boot_config_text("--publish 8080:80\n", None, "v0.9.3", "kamal-proxy run") == (
        "--publish 8080:80 basecamp/kamal-proxy:v0.9.3 kamal-proxy run"
    )
