"""Settings come from the environment and fail loudly; production settings pass --deploy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "SECRET_KEY",
            "DEBUG",
            "SECURE_SSL_REDIRECT",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "STATIC_MANIFEST",
        }
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_missing_secret_key_is_a_clear_startup_error(tmp_path):
    result = run_manage("check", env={"ARBITER_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_a_bad_boolean_names_the_variable(tmp_path):
    result = run_manage(
        "check", env={"SECRET_KEY": "k" * 50, "DEBUG": "maybe", "ARBITER_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_production_settings_pass_the_deploy_check(tmp_path):
    secret = "a-long-random-secret-key-with-enough-entropy-1234567890-abcdefghijklmnop"
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "INFO",
        env={
            "SECRET_KEY": secret,
            "DEBUG": "false",
            "ALLOWED_HOSTS": "arbiter.example.org",
            "ARBITER_VAR_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.django_db
def test_create_user_prints_the_token_alone_on_the_last_line(tmp_path):
    from io import StringIO

    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from annotation.services.api_tokens import api_token_digest

    out = StringIO()
    call_command("create_user", "dana", "--role", "expert", "--password", "s3cret-Pass", stdout=out)
    last = out.getvalue().strip().splitlines()[-1]
    token = Token.objects.get(user__username="dana")
    assert token.key == api_token_digest(last)  # the key printed; its digest stored
    assert token.user.groups.filter(name="expert").exists()
    assert token.user.check_password("s3cret-Pass")


@pytest.mark.django_db
def test_create_user_changing_a_role_keeps_the_password_unless_given():
    # Running it again to change a role generated and set a new password: its owner was
    # locked out by a role change.
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("create_user", "erin", "--role", "annotator", "--password", "first-Pass-1")
    out = StringIO()
    call_command("create_user", "erin", "--role", "expert", stdout=out)
    erin = get_user_model().objects.get(username="erin")
    assert erin.check_password("first-Pass-1")
    assert erin.groups.filter(name="expert").exists()
    assert "password: unchanged" in out.getvalue()
    call_command("create_user", "erin", "--role", "expert", "--password", "second-Pass-2")
    erin.refresh_from_db()
    assert erin.check_password("second-Pass-2")
    new = StringIO()
    call_command("create_user", "fred", "--role", "annotator", stdout=new)
    lines = new.getvalue().splitlines()
    generated = next(line.split(": ", 1)[1] for line in lines if line.startswith("password"))
    assert get_user_model().objects.get(username="fred").check_password(generated)


@pytest.mark.django_db
def test_pages_carry_a_strict_csp_and_nosniff(client):
    response = client.get("/login/")
    csp = response["Content-Security-Policy"]
    script_src = next(part for part in csp.split(";") if part.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'self'" in script_src
    assert "default-src 'self'" in csp
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_login_attempts_are_rate_limited(client, annotator_a):
    for _ in range(5):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    locked = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert locked.status_code in (403, 429)
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_login_works_with_the_right_password(client, annotator_a):
    response = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(annotator_a.pk)


@pytest.mark.parametrize(
    "secret",
    [
        "change-me-to-50-random-characters",  # .env.example's placeholder
        "change-me-to-50-random-characters-padded-out-to-more-than-fifty",
        "django-insecure-" + "x1y2z3" * 10,
        "short-but-random-Q8v2",
        "k" * 60,
    ],
)
def test_a_placeholder_or_weak_secret_key_is_refused_when_debug_is_off(tmp_path, secret):
    result = run_manage(
        "check", env={"SECRET_KEY": secret, "DEBUG": "false", "ARBITER_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "SECRET_KEY is a placeholder or too weak" in result.stderr


def test_a_short_secret_key_is_allowed_for_local_debugging(tmp_path):
    result = run_manage(
        "check", env={"SECRET_KEY": "dev", "DEBUG": "true", "ARBITER_VAR_DIR": str(tmp_path)}
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "why"),
    [("bad name!", "Enter a valid username"), ("x" * 200, "at most 150 characters")],
)
def test_create_user_with_an_invalid_name_is_a_clear_error_and_stores_nothing(name, why):
    from django.contrib.auth import get_user_model
    from django.core.management import CommandError, call_command

    # manage.py prints a CommandError as one line, without a traceback.
    with pytest.raises(CommandError, match=f"invalid user .*{why}"):
        call_command("create_user", name, "--role", "annotator")
    assert not get_user_model().objects.exists()
