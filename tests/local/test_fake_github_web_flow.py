"""The fake GitHub's web flow for a GitHub App's user access tokens (what the per-person mode of the GitHub server
will use), checked against what GitHub documents: it validates what it is sent, and a user token acts as its person."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest

from tests.support.fake_github import FakeGitHub
from tests.support.fake_github_web_flow import WebFlow

CALLBACK = "http://127.0.0.1:8085/connect/callback"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    if not FakeGitHub.spec_available():
        pytest.skip("GitHub's OpenAPI description is installed by scripts/test (tests/interop)")
    fake = FakeGitHub(token="not-used", web=WebFlow(callback_urls=[CALLBACK], people={"ada", "grace"})).start()
    yield fake
    fake.stop()


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def authorize(github: FakeGitHub, login: str, challenge: str, state: str = "s1", redirect: str = CALLBACK) -> str:
    """The person's consent page, then their authorization: the code the callback receives."""
    query = {"client_id": github.web.client_id, "redirect_uri": redirect, "state": state,
             "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    page = httpx.get(f"{github.url}/login/oauth/authorize?{urlencode(query)}")
    assert page.status_code == 200 and "Authorize the GitHub App" in page.text
    fields = dict(re.findall(r'name="(\w+)" value="([^"]*)"', page.text))
    answer = httpx.post(f"{github.url}/login/oauth/authorize", data={**fields, "login": login})
    assert answer.status_code == 302
    back = parse_qs(urlsplit(answer.headers["location"]).query)
    assert answer.headers["location"].startswith(CALLBACK) and back["state"] == [state]
    return back["code"][0]


def exchange(github: FakeGitHub, **form: str) -> dict[str, str]:
    base = {"client_id": github.web.client_id, "client_secret": github.web.client_secret}
    answer = httpx.post(f"{github.url}/login/oauth/access_token", data={**base, **form},
                        headers={"Accept": "application/json"})  # fmt: skip
    assert answer.status_code == 200  # GitHub answers errors with 200 too
    return answer.json()  # type: ignore[no-any-return]


def test_a_person_authorizes_and_their_token_creates_an_issue_in_their_name(github):
    verifier, challenge = pkce()
    code = authorize(github, "ada", challenge)
    tokens = exchange(github, code=code, redirect_uri=CALLBACK, code_verifier=verifier)
    assert tokens["access_token"].startswith("ghu_") and tokens["refresh_token"].startswith("ghr_")
    assert tokens["expires_in"] == 8 * 3600 and tokens["refresh_token_expires_in"] > 180 * 86400
    created = httpx.post(f"{github.url}/repos/acme/app/issues", json={"title": "From Ada"},
                         headers={"Authorization": f"Bearer {tokens['access_token']}"})  # fmt: skip
    assert created.status_code == 201 and created.json()["user"]["login"] == "ada"
    assert github.created[-1]["user"]["login"] == "ada" and github.violations == []


def test_the_token_endpoint_refuses_what_github_refuses(github):
    verifier, challenge = pkce()
    code = authorize(github, "ada", challenge)
    assert exchange(github, code=code, redirect_uri=CALLBACK, code_verifier="wrong")["error"] == "bad_verification_code"
    assert (
        exchange(github, code=code, redirect_uri=CALLBACK, code_verifier=verifier)["error"] == "bad_verification_code"
    )
    other = authorize(github, "ada", challenge)  # a code is single use, so a new one for each refusal below
    assert exchange(github, code=other, client_secret="nope")["error"] == "incorrect_client_credentials"
    third = authorize(github, "ada", challenge)
    mismatch = exchange(github, code=third, redirect_uri="http://127.0.0.1:1/elsewhere", code_verifier=verifier)
    assert mismatch["error"] == "redirect_uri_mismatch"
    refused = [r["refused"] for r in github.web.requests if r.get("refused")]
    assert "bad_verification_code" in refused and "incorrect_client_credentials" in refused


def test_the_consent_page_refuses_an_unregistered_callback_a_missing_state_and_no_pkce(github):
    _, challenge = pkce()
    base = {"client_id": github.web.client_id, "redirect_uri": CALLBACK, "state": "s",
            "code_challenge": challenge, "code_challenge_method": "S256"}  # fmt: skip
    for broken in ({"redirect_uri": CALLBACK + "/x"}, {"state": ""}, {"code_challenge_method": "plain"},
                   {"client_id": "Iv1.someoneelse"}):  # fmt: skip
        assert httpx.get(f"{github.url}/login/oauth/authorize?{urlencode(base | broken)}").status_code == 400


def test_a_refresh_token_is_used_once_and_revocation_ends_every_token(github):
    verifier, challenge = pkce()
    first = exchange(github, code=authorize(github, "grace", challenge), redirect_uri=CALLBACK, code_verifier=verifier)
    second = exchange(github, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert second["access_token"] != first["access_token"] and github.web.refreshes() == 1
    replay = exchange(github, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert replay["error"] == "bad_refresh_token"
    auth = base64.b64encode(f"{github.web.client_id}:{github.web.client_secret}".encode()).decode()
    revoked = httpx.request(
        "DELETE",
        f"{github.url}/applications/{github.web.client_id}/token",
        json={"access_token": second["access_token"]},
        headers={"Authorization": f"Basic {auth}"},
    )
    assert revoked.status_code == 204
    bearer = {"Authorization": f"Bearer {second['access_token']}"}
    assert httpx.get(f"{github.url}/repos/acme/app/issues", headers=bearer).status_code == 401
    after = exchange(github, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert after["error"] == "bad_refresh_token"  # the grant went with the revoked token


def test_a_person_who_revokes_the_app_in_their_settings_loses_every_token(github):
    verifier, challenge = pkce()
    tokens = exchange(github, code=authorize(github, "ada", challenge), redirect_uri=CALLBACK, code_verifier=verifier)
    github.web.revoke_person("ada")
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert httpx.get(f"{github.url}/repos/acme/app/issues", headers=headers).status_code == 401
