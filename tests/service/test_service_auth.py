"""Authentication and authorization: OAuth2 grants, scopes, refresh rotation, API keys, OIDC, per-project RBAC."""

from __future__ import annotations

import json
import sqlite3
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from robustlit_service.security import issue_access_token, sha256_hex

from tests.service.servicekit import Api, ServiceProcess, bootstrap, password_token

ISSUER = "https://idp.test"


@pytest.fixture(scope="module")
def oidc_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def server(tmp_path_factory, oidc_key):
    home = tmp_path_factory.mktemp("auth") / "home"
    home.mkdir(parents=True)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(oidc_key.public_key()))
    (home.parent / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    env = {"ROBUSTLIT_OIDC_ISSUER": ISSUER, "ROBUSTLIT_OIDC_JWKS": str(home.parent / "jwks.json"),
           "ROBUSTLIT_OIDC_AUDIENCE": "robustlit"}
    process = ServiceProcess(home, env).start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def world(server):
    """An admin, a project with a viewer and an editor, and an outsider with a project of their own."""
    admin = bootstrap(server.url)
    api = admin["api"]
    for email in ("viewer@x.org", "editor@x.org", "outsider@x.org"):
        assert api.post("/users", json={"email": email, "password": "password-" + email}).status_code == 201
    project = api.post("/projects", json={"name": "shared"}).json()
    for email, role in (("viewer@x.org", "viewer"), ("editor@x.org", "editor")):
        assert api.put(f"/projects/{project['id']}/members", json={"email": email, "role": role}).status_code == 200
    tokens = {email: password_token(server.url, email, "password-" + email)["access_token"]
              for email in ("viewer@x.org", "editor@x.org", "outsider@x.org")}
    outsider = Api(server.url, tokens["outsider@x.org"])
    own = outsider.post("/projects", json={"name": "outsider-project"}).json()
    return {"admin": admin, "project": project, "tokens": tokens, "own": own}


def test_viewer_reads_but_cannot_write(server, world):
    viewer = Api(server.url, world["tokens"]["viewer@x.org"])
    pid = world["project"]["id"]
    assert viewer.get(f"/projects/{pid}").json()["role"] == "viewer"
    assert viewer.get(f"/projects/{pid}/runs").status_code == 200
    refused = viewer.post(f"/projects/{pid}/runs", json={"overrides": []})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == f"this needs the editor role in project {pid}; you are viewer"
    assert viewer.post(f"/projects/{pid}/datasets", json={"name": "d"}).status_code == 403
    assert viewer.put(f"/projects/{pid}/members", json={"email": "viewer@x.org", "role": "admin"}).status_code == 403


def test_editor_writes_but_cannot_manage_members(server, world):
    editor = Api(server.url, world["tokens"]["editor@x.org"])
    pid = world["project"]["id"]
    assert editor.post(f"/projects/{pid}/datasets", json={"name": "cifar"}).status_code == 201
    assert editor.put(f"/projects/{pid}/members", json={"email": "editor@x.org", "role": "admin"}).status_code == 403
    assert editor.post(f"/projects/{pid}/webhooks", json={"url": "http://127.0.0.1:9/x"}).status_code == 403


def test_another_projects_member_cannot_read(server, world):
    outsider = Api(server.url, world["tokens"]["outsider@x.org"])
    pid = world["project"]["id"]
    response = outsider.get(f"/projects/{pid}/runs")
    assert response.status_code == 403
    assert response.json()["error"]["message"] == f"you are not a member of project {pid}"
    assert outsider.get(f"/projects/{pid}").status_code == 403
    listed = outsider.get("/projects").json()
    assert [p["name"] for p in listed["items"]] == ["outsider-project"]
    editor = Api(server.url, world["tokens"]["editor@x.org"])
    assert editor.get(f"/projects/{world['own']['id']}/datasets").status_code == 403


def test_missing_expired_and_forged_tokens_are_refused(server, world):
    pid = world["project"]["id"]
    bare = httpx.get(f"{server.url}/api/v1/projects/{pid}")
    assert bare.status_code == 401 and bare.headers["WWW-Authenticate"] == "Bearer"
    secret = (server.home / "secret_key").read_text()
    user_id = world["admin"]["user"]["id"]
    expired = issue_access_token(secret, user_id, frozenset({"projects:read"}), ttl=-10)
    response = Api(server.url, expired).get(f"/projects/{pid}")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]
    forged = issue_access_token("not-the-secret-key-" * 3, user_id, frozenset({"admin:all"}), ttl=60)
    response = Api(server.url, forged).get(f"/projects/{pid}")
    assert response.status_code == 401 and "Signature verification failed" in response.json()["error"]["message"]


def test_wrong_scope_is_refused(server, world):
    token = password_token(server.url, "editor@x.org", "password-editor@x.org", scope="projects:read")
    assert token["scope"] == "projects:read"
    api = Api(server.url, token["access_token"])
    pid = world["project"]["id"]
    assert api.get(f"/projects/{pid}").status_code == 200
    refused = api.get(f"/projects/{pid}/runs")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "insufficient_scope"
    assert refused.json()["error"]["details"] == {"required": "runs:read", "granted": ["projects:read"]}
    not_admin = httpx.post(f"{server.url}/api/v1/auth/token", data={
        "grant_type": "password", "username": "editor@x.org", "password": "password-editor@x.org",
        "scope": "admin:all"})
    assert not_admin.status_code == 400 and not_admin.json()["error"]["code"] == "invalid_scope"


def test_refresh_tokens_rotate_and_a_reused_one_revokes_the_family(server, world):
    first = password_token(server.url, "viewer@x.org", "password-viewer@x.org")
    refresh = httpx.post(f"{server.url}/api/v1/auth/token",
                         data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert refresh.status_code == 200
    second = refresh.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert Api(server.url, second["access_token"]).get("/users/me").json()["email"] == "viewer@x.org"
    replay = httpx.post(f"{server.url}/api/v1/auth/token",
                        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert replay.status_code == 401 and "already used" in replay.json()["error"]["message"]
    after = httpx.post(f"{server.url}/api/v1/auth/token",
                       data={"grant_type": "refresh_token", "refresh_token": second["refresh_token"]})
    assert after.status_code == 401  # the whole family was revoked


def test_api_keys_are_scoped_hashed_and_revocable(server, world):
    api = world["admin"]["api"]
    created = api.post("/api-keys", json={"name": "ci", "scopes": ["runs:read", "projects:read"]})
    assert created.status_code == 201
    key = created.json()["key"]
    assert key.startswith("rlk_") and len(key) >= 50
    assert "key" not in api.get("/api-keys").json()["items"][0]
    keyed = Api(server.url, key)
    pid = world["project"]["id"]
    assert keyed.get(f"/projects/{pid}/runs").status_code == 200
    assert keyed.post(f"/projects/{pid}/runs", json={}).json()["error"]["code"] == "insufficient_scope"
    exchanged = httpx.post(f"{server.url}/api/v1/auth/token",
                           data={"grant_type": "client_credentials", "client_secret": key})
    assert exchanged.status_code == 200 and exchanged.json()["scope"] == "projects:read runs:read"
    jwt_from_key = Api(server.url, exchanged.json()["access_token"])
    assert jwt_from_key.get(f"/projects/{pid}").status_code == 200
    with sqlite3.connect(server.home / "robustlit.db") as db:
        rows = db.execute("select prefix, secret_hash from api_keys").fetchall()
        dump = "\n".join(db.iterdump())
    secret = key.split("_", 2)[2]
    assert secret not in dump and key not in dump
    assert (key.split("_")[1], sha256_hex(secret)) in rows
    assert api.delete(f"/api-keys/{created.json()['id']}").json()["revoked_at"] is not None
    revoked = keyed.get(f"/projects/{pid}")
    assert revoked.status_code == 401 and revoked.json()["error"]["message"] == "this API key was revoked"
    assert jwt_from_key.get(f"/projects/{pid}").status_code == 401
    wrong = Api(server.url, key[:-4] + "AAAA").get(f"/projects/{pid}")
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid API key"


def test_passwords_are_stored_as_scrypt_hashes(server, world):
    with sqlite3.connect(server.home / "robustlit.db") as db:
        hashes = [row[0] for row in db.execute("select password_hash from users")]
    assert hashes and all(h.startswith("scrypt$") and "password-" not in h for h in hashes)


def _oidc_token(key, **claims):
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice-123", "aud": "robustlit", "email": "alice@idp.test", "iat": now,
            "exp": now + 300, "scope": "projects:read projects:write", **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "k1"})


def test_oidc_tokens_are_validated_against_the_jwks(server, world, oidc_key):
    api = Api(server.url, _oidc_token(oidc_key))
    me = api.get("/users/me")
    assert me.status_code == 200 and me.json()["email"] == "alice@idp.test"
    created = api.post("/projects", json={"name": "alice-project"})
    assert created.status_code == 201
    assert api.get(f"/projects/{created.json()['id']}/runs").json()["error"]["code"] == "insufficient_scope"
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = Api(server.url, _oidc_token(other_key)).get("/users/me")
    assert forged.status_code == 401 and "invalid OIDC token" in forged.json()["error"]["message"]
    expired = Api(server.url, _oidc_token(oidc_key, exp=int(time.time()) - 60)).get("/users/me")
    assert expired.status_code == 401 and expired.json()["error"]["message"] == "the OIDC token has expired"
    wrong_audience = Api(server.url, _oidc_token(oidc_key, aud="someone-else")).get("/users/me")
    assert wrong_audience.status_code == 401


def test_only_the_first_user_needs_no_credentials(server, world):
    anonymous = httpx.post(f"{server.url}/api/v1/users", json={"email": "late@x.org", "password": "password1"})
    assert anonymous.status_code == 401
    as_editor = Api(server.url, world["tokens"]["editor@x.org"]).post(
        "/users", json={"email": "late@x.org", "password": "password1"})
    assert as_editor.status_code == 403


def test_audit_log_records_changes(server, world):
    api = world["admin"]["api"]
    entries = api.get(f"/projects/{world['project']['id']}/audit").json()["items"]
    actions = {e["action"] for e in entries}
    assert {"project.create", "member.set", "dataset.create"} <= actions
    viewer = Api(server.url, world["tokens"]["viewer@x.org"])
    assert viewer.get(f"/projects/{world['project']['id']}/audit").status_code == 403
