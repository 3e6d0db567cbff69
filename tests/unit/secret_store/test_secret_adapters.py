"""Each vault adapter against a fake vendor CLI: the argv it sends, what it makes of the answer,
sign-in handling and errors."""

from __future__ import annotations

import base64

import pytest

from dockyard.secrets.base import SecretsError
from dockyard.secrets.ops import lookup

from .conftest import FakeClis, answer


def fetch(adapter: str, names: list[str], **kwargs: str | None) -> dict[str, object]:
    return lookup(adapter).fetch(names, **kwargs)


# -- 1Password ---------------------------------------------------------------------------------


def test_1password_signed_in_fetches_fields_grouped_per_item(fake_cli: FakeClis) -> None:
    op = fake_cli("op").on("account get --account acme", answer("{}"))
    op.on(
        "item get Item --vault Vault --format json --account acme --fields label=f1,label=sec.f2",
        answer(
            [
                {"reference": "op://Vault/Item/f1", "value": "one"},
                {"reference": "op://Vault/Item/sec/f2", "value": "two"},
            ]
        ),
    )
    result = fetch("1password", ["f1", "sec/f2"], account="acme", from_="Vault/Item")
    assert result == {"Vault/Item/f1": "one", "Vault/Item/sec/f2": "two"}
    assert op.calls()[0] == ["account", "get", "--account", "acme"]
    assert len(op.calls()) == 2


def test_1password_item_without_field_means_password_and_one_field_is_an_object(
    fake_cli: FakeClis,
) -> None:
    op = fake_cli("op").on("account get --account acme", answer("{}"))
    op.on(
        "item get Item --vault Vault --format json --account acme --fields label=password",
        answer({"reference": "op://Vault/Item/password", "value": "pw"}),
    )
    assert fetch("1password", ["op://Vault/Item"], account="acme") == {"Vault/Item": "pw"}


def test_1password_signs_in_and_passes_the_session(fake_cli: FakeClis) -> None:
    op = fake_cli("op").on("account get --account acme", answer(stderr="not signed in", code=1))
    op.on("signin --account acme --force --raw", answer("SESSION123\n"))
    op.on(
        "item get Item --vault V --format json --account acme --session SESSION123 "
        "--fields label=password",
        answer({"reference": "op://V/Item/password", "value": "pw"}),
    )
    assert fetch("1password", ["V/Item"], account="acme") == {"V/Item": "pw"}
    assert [c[0] for c in op.calls()] == ["account", "signin", "item"]


def test_1password_failed_signin_is_an_error(fake_cli: FakeClis) -> None:
    op = fake_cli("op").on("account get --account acme", answer(code=1))
    op.on("signin --account acme --force --raw", answer(code=1))
    with pytest.raises(SecretsError, match="Failed to sign in to 1Password account acme"):
        fetch("1password", ["V/Item"], account="acme")


def test_1password_read_failure_carries_the_cli_error(fake_cli: FakeClis) -> None:
    op = fake_cli("op").on("account get --account acme", answer("{}"))
    op.on("*", answer(stderr='[ERROR] "Nope" isn\'t an item in the "V" vault.\n', code=1))
    with pytest.raises(SecretsError) as exc:
        fetch("1password", ["V/Nope"], account="acme")
    assert "Could not read password from Nope in the V 1Password vault" in exc.value.message
    assert "isn't an item" in exc.value.message


def test_1password_fetches_a_whole_item_with_from_and_no_names(fake_cli: FakeClis) -> None:
    op = fake_cli("op").on("account get --account acme", answer("{}"))
    op.on(
        "item get Item --vault V --format json --account acme",
        answer(
            {
                "fields": [
                    {"reference": "op://V/Item/username", "value": "me"},
                    {"reference": "op://V/Item/password", "value": "pw"},
                ]
            }
        ),
    )
    assert fetch("1password", [], account="acme", from_="V/Item") == {
        "V/Item/username": "me",
        "V/Item": "pw",
    }


def test_1password_missing_cli_names_it_and_how_to_install(fake_cli: FakeClis) -> None:
    with pytest.raises(SecretsError) as exc:
        fetch("1password", ["V/Item"], account="acme")
    assert "`op`" in exc.value.message and "not installed" in exc.value.message
    assert exc.value.hint is not None and "1password.com" in exc.value.hint


@pytest.mark.parametrize(
    ("adapter", "program", "url_part"),
    [
        ("bitwarden", "bw", "bitwarden.com"),
        ("bitwarden-sm", "bws", "bitwarden.com"),
        ("aws_secrets_manager", "aws", "aws.amazon.com"),
        ("gcp", "gcloud", "cloud.google.com"),
        ("doppler", "doppler", "doppler.com"),
        ("lastpass", "lpass", "lastpass"),
        ("passbolt", "passbolt", "passbolt"),
        ("enpass", "enpass-cli", "enpass-cli"),
    ],
)
def test_every_adapter_names_its_missing_cli_and_where_to_get_it(
    fake_cli: FakeClis, adapter: str, program: str, url_part: str
) -> None:
    with pytest.raises(SecretsError) as exc:
        fetch(adapter, ["x"], account="acct", from_="a/b")
    assert f"(`{program}`) is not installed or not on PATH" in exc.value.message
    assert exc.value.hint is not None and url_part in exc.value.hint


def test_adapters_that_need_an_account_refuse_to_run_without_one(fake_cli: FakeClis) -> None:
    op = fake_cli("op")
    for adapter in ("1password", "bitwarden", "lastpass", "gcp"):
        with pytest.raises(SecretsError, match="needs --account"):
            fetch(adapter, ["x"], account=None)
    assert op.calls() == []


# -- Bitwarden ---------------------------------------------------------------------------------


def test_bitwarden_unlocked_reads_login_password(fake_cli: FakeClis) -> None:
    bw = fake_cli("bw").on("status", answer({"status": "unlocked"}))
    bw.on("sync", answer("Syncing complete."))
    bw.on("get item mysql", answer({"login": {"password": "secret"}}))
    assert fetch("bitwarden", ["mysql"], account="me@x") == {"mysql": "secret"}
    assert bw.calls() == [["status"], ["sync"], ["get", "item", "mysql"]]


def test_bitwarden_logs_in_unlocks_and_uses_the_session(fake_cli: FakeClis) -> None:
    bw = fake_cli("bw").on(
        "status",
        answer({"status": "unauthenticated"}),
        answer({"status": "locked"}),
        answer({"status": "unlocked"}),
    )
    bw.on("login me@x", answer("You are logged in!"))
    bw.on("unlock --raw", answer("SESSION=="))
    bw.on("sync", answer("ok"))
    bw.on(
        "get item app",
        answer({"fields": [{"name": "KEY", "value": "k1"}, {"name": "OTHER", "value": "o"}]}),
    )
    assert fetch("bitwarden", ["app/KEY"], account="me@x") == {"app/KEY": "k1"}
    assert bw.calls() == [
        ["status"],
        ["login", "me@x"],
        ["status"],
        ["unlock", "--raw"],
        ["status"],
        ["sync"],
        ["get", "item", "app"],
    ]
    assert bw.sessions()[-3:] == ["SESSION==", "SESSION==", "SESSION=="]


def test_bitwarden_item_without_password_gives_all_custom_fields(fake_cli: FakeClis) -> None:
    bw = fake_cli("bw").on("status", answer({"status": "unlocked"})).on("sync", answer())
    bw.on(
        "get item app",
        answer({"fields": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}),
    )
    assert fetch("bitwarden", ["app"], account="me") == {"app/A": "1", "app/B": "2"}


def test_bitwarden_errors(fake_cli: FakeClis) -> None:
    bw = fake_cli("bw").on("status", answer({"status": "locked"}))
    bw.on("unlock --raw", answer("", code=1))
    with pytest.raises(SecretsError, match="unlock Bitwarden"):
        fetch("bitwarden", ["app"], account="me")

    bw.on("status", answer({"status": "unlocked"})).on("sync", answer())
    bw.on("get item note", answer({"type": 2}))
    with pytest.raises(SecretsError, match="not a login type item"):
        fetch("bitwarden", ["note"], account="me")
    bw.on("get item app", answer({"fields": [{"name": "A", "value": "1"}]}))
    with pytest.raises(SecretsError, match="Could not find field B in item app"):
        fetch("bitwarden", ["app/B"], account="me")
    bw.on("get item gone", answer(stderr="Not found.", code=1))
    with pytest.raises(SecretsError, match=r"(?s)Could not read gone from Bitwarden.*Not found\."):
        fetch("bitwarden", ["gone"], account="me")


def test_bitwarden_secrets_manager(fake_cli: FakeClis) -> None:
    bws = fake_cli("bws").on("project list", answer("[]"))
    bws.on("secret get id-1", answer({"key": "DB_PASSWORD", "value": "p1"}))
    bws.on("secret list", answer([{"key": "A", "value": "1"}, {"key": "B", "value": "2"}]))
    bws.on("secret list proj-9", answer([{"key": "C", "value": "3"}]))
    assert fetch("bitwarden-sm", ["id-1"]) == {"DB_PASSWORD": "p1"}
    assert fetch("bitwarden-sm", ["all"]) == {"A": "1", "B": "2"}
    assert fetch("bitwarden-sm", ["all"], from_="proj-9") == {"C": "3"}
    assert bws.calls()[:2] == [["project", "list"], ["secret", "get", "id-1"]]
    with pytest.raises(SecretsError, match="You must specify what to retrieve"):
        fetch("bitwarden-sm", [])
    bws.on("project list", answer(stderr="Missing access token", code=1))
    with pytest.raises(SecretsError, match=r"(?s)valid access token.*Missing access token"):
        fetch("bitwarden-sm", ["id-1"])


# -- AWS Secrets Manager ------------------------------------------------------------------------


def test_aws_batch_get_with_profile_splits_json_secrets(fake_cli: FakeClis) -> None:
    aws = fake_cli("aws").on(
        "secretsmanager batch-get-secret-value --secret-id-list app/db plain --profile prod "
        "--output json",
        answer(
            {
                "SecretValues": [
                    {"Name": "app/db", "SecretString": '{"user": "u", "password": "p"}'},
                    {"Name": "plain", "SecretString": "just text"},
                ],
                "Errors": [],
            }
        ),
    )
    assert fetch("aws_secrets_manager", ["app/db", "plain"], account="prod") == {
        "app/db/user": "u",
        "app/db/password": "p",
        "plain": "just text",
    }
    assert len(aws.calls()) == 1


def test_aws_without_profile_and_reported_errors(fake_cli: FakeClis) -> None:
    aws = fake_cli("aws").on(
        "secretsmanager batch-get-secret-value --secret-id-list x/a --output json",
        answer({"SecretValues": [], "Errors": [{"SecretId": "x/a", "Message": "not found"}]}),
    )
    with pytest.raises(SecretsError, match="x/a: not found"):
        fetch("aws_secrets_manager", ["a"], from_="x")
    assert aws.calls()[0][-2:] == ["--output", "json"]
    aws.on("*", answer(stderr="Unable to locate credentials.", code=255))
    with pytest.raises(SecretsError, match=r"(?s)Could not read y from AWS.*locate credentials"):
        fetch("aws_secrets_manager", ["y"])


# -- Google Cloud Secret Manager ----------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_gcp_logs_in_and_reads_versions_with_impersonation(fake_cli: FakeClis) -> None:
    gcloud = fake_cli("gcloud").on(
        "auth list --format=json", answer([]), answer([{"account": "me@x.com"}])
    )
    gcloud.on("auth login", answer())
    gcloud.on(
        "secrets versions access 3 --secret=db --project=proj --account=me@x.com "
        "--impersonate-service-account=sa@p.iam --format=json",
        answer({"payload": {"data": _b64("s3cret")}}),
    )
    result = fetch("gcp", ["proj/db/3"], account="me@x.com|sa@p.iam")
    assert result == {"proj/db": "s3cret"}
    assert gcloud.calls()[:3] == [
        ["auth", "list", "--format=json"],
        ["auth", "login"],
        ["auth", "list", "--format=json"],
    ]


def test_gcp_default_account_and_project(fake_cli: FakeClis) -> None:
    gcloud = fake_cli("gcloud").on("auth list --format=json", answer([{"account": "a"}]))
    gcloud.on(
        "secrets versions access latest --secret=token --format=json",
        answer({"payload": {"data": _b64("tok")}}),
    )
    assert fetch("gcp", ["token"], account="default") == {"default/token": "tok"}
    gcloud.on("*", answer(stderr="PERMISSION_DENIED", code=1))
    with pytest.raises(SecretsError, match=r"(?s)Could not read default/other.*PERMISSION_DENIED"):
        fetch("gcp", ["other"], account="default")


# -- Doppler ------------------------------------------------------------------------------------


def test_doppler_passes_project_and_config_from_the_from_option(
    fake_cli: FakeClis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DOPPLER_TOKEN", raising=False)
    doppler = fake_cli("doppler").on("me --json", answer("{}"))
    doppler.on(
        "secrets get A B --json -p web -c prd",
        answer({"A": {"computed": "1", "raw": "x"}, "B": {"computed": "2"}}),
    )
    assert fetch("doppler", ["A", "B"], from_="web/prd") == {"A": "1", "B": "2"}
    with pytest.raises(SecretsError, match="Missing project or config"):
        fetch("doppler", ["A"])


def test_doppler_service_token_and_login(
    fake_cli: FakeClis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOPPLER_TOKEN", "dp.st.prd.abc")
    doppler = fake_cli("doppler").on("me --json", answer(code=1))
    doppler.on("login -y", answer())
    doppler.on("secrets get A --json", answer({"A": {"computed": "1"}}))
    assert fetch("doppler", ["A"]) == {"A": "1"}
    assert doppler.calls()[1] == ["login", "-y"]
    doppler.on("login -y", answer(code=1))
    with pytest.raises(SecretsError, match="Failed to log in to Doppler"):
        fetch("doppler", ["A"])


# -- LastPass -----------------------------------------------------------------------------------


def test_lastpass(fake_cli: FakeClis) -> None:
    lpass = fake_cli("lpass").on(
        "status --color never", answer("Not logged in.\n"), answer("Logged in as me@x.\n")
    )
    lpass.on("login me@x", answer())
    lpass.on(
        "show Shared/db app --json",
        answer(
            [{"fullname": "Shared/db", "password": "p1"}, {"fullname": "app", "password": "p2"}]
        ),
    )
    assert fetch("lastpass", ["Shared/db", "app"], account="me@x") == {
        "Shared/db": "p1",
        "app": "p2",
    }
    assert lpass.calls()[1] == ["login", "me@x"]
    lpass.on("show missing --json", answer([]))
    with pytest.raises(SecretsError, match="Could not find missing in LastPass"):
        fetch("lastpass", ["missing"], account="me@x")
    assert lpass.calls()[-2] == ["status", "--color", "never"]  # already logged in: no login


# -- Passbolt -----------------------------------------------------------------------------------


def test_passbolt_root_and_folder_secrets(fake_cli: FakeClis) -> None:
    pb = fake_cli("passbolt").on("verify", answer())
    pb.on(
        'list folders --filter Name == "Prod" --json',
        answer([{"id": "f1", "name": "Prod", "folder_parent_id": ""}]),
    )
    pb.on(
        'list folders --filter Name == "db" && FolderParentID == "f1" --json',
        answer([{"id": "f2", "name": "db", "folder_parent_id": "f1"}]),
    )
    pb.on(
        'list resources --filter Name == "TOKEN" || (Name == "PASS" && FolderParentID == "f2") '
        "--folder f1 --folder f2 --json",
        answer([{"name": "TOKEN", "password": "t"}, {"name": "PASS", "password": "p"}]),
    )
    assert fetch("passbolt", ["TOKEN", "Prod/db/PASS"]) == {"TOKEN": "t", "PASS": "p"}
    assert pb.calls()[0] == ["verify"]
    resources_call = pb.calls()[-1]
    assert resources_call[:3] == ["list", "resources", "--filter"]


def test_passbolt_errors(fake_cli: FakeClis) -> None:
    pb = fake_cli("passbolt").on("verify", answer(stderr="no config", code=1))
    with pytest.raises(SecretsError, match=r"(?s)Failed to log in to Passbolt.*no config"):
        fetch("passbolt", ["A"])
    pb.on("verify", answer())
    pb.on('list folders --filter Name == "Nope" --json', answer([]))
    with pytest.raises(SecretsError, match="following folders in Passbolt: Nope"):
        fetch("passbolt", ["Nope/A"])
    pb.on('list resources --filter Name == "A" --json', answer([]))
    with pytest.raises(SecretsError, match="following secrets in Passbolt: A"):
        fetch("passbolt", ["A"])


# -- Enpass -------------------------------------------------------------------------------------


def test_enpass_reads_titles_from_the_vault_directory(fake_cli: FakeClis) -> None:
    enpass = fake_cli("enpass-cli").on(
        "-json -vault /vaults/primary show App Db",
        answer(
            [
                {"title": "App", "label": "API_KEY", "password": "k"},
                {"title": "App", "label": "OTHER", "password": "o"},
                {"title": "Db", "label": "", "password": "d"},
                {"title": "Db", "label": "empty", "password": ""},
            ]
        ),
    )
    assert fetch("enpass", ["App/API_KEY", "Db"], from_="/vaults/primary") == {
        "App/API_KEY": "k",
        "Db": "d",
    }
    assert len(enpass.calls()) == 1
    with pytest.raises(SecretsError, match="needs --from"):
        fetch("enpass", ["App"])


# -- lookup -------------------------------------------------------------------------------------


def test_lookup_accepts_kamal_spellings_and_rejects_unknown_names() -> None:
    assert lookup("1Password").name == "1password"
    assert lookup("one_password").name == "1password"
    assert lookup("last_pass").name == "lastpass"
    assert lookup("gcp_secret_manager").name == "gcp"
    assert lookup("bitwarden_secrets_manager").name == "bitwarden-sm"
    with pytest.raises(SecretsError) as exc:
        lookup("keychain")
    assert exc.value.message == "Unknown secrets adapter: keychain"
    assert exc.value.hint is not None and "doppler" in exc.value.hint


def test_test_adapter_reverses_names() -> None:
    assert fetch("test", ["ab", "xLPARENyRPAREN"], account="a", from_="f") == {
        "f/ab": "ba/f",
        "f/xLPARENyRPAREN": ")y(x/f",
    }
