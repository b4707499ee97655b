"""The control plane's routes, as a user meets them: sign in, keys, deployments, usage."""

from __future__ import annotations

import json

from dulwich.repo import Repo

from formarket.control import openapi_document
from tests.control.conftest import Plane
from tests.gateway.helpers import Client
from tests.lifecycle import publish


def test_signing_in_makes_an_account_and_a_key(plane: Plane) -> None:
    key = plane.sign_in("alice")
    listed = plane.call(key, "GET", "/v1/keys").json()["keys"]
    assert len(listed) == 1
    assert listed[0]["shown"].endswith(key[-4:])
    assert key.split("_", 2)[2] not in json.dumps(listed)
    # Signing in again is the same account, with a second key.
    again = plane.sign_in("alice")
    assert len(plane.call(again, "GET", "/v1/keys").json()["keys"]) == 2


def test_a_github_token_github_does_not_know_signs_no_one_in(plane: Plane) -> None:
    reply = plane.call(None, "POST", "/v1/login/github", {"github_token": "gho_forged"})
    assert reply.status == 401
    assert reply.json()["error"]["code"] == "sign_in_failed"


def test_keys_are_created_listed_and_revoked(plane: Plane) -> None:
    key = plane.sign_in("alice")
    made = plane.call(key, "POST", "/v1/keys", {"name": "ci"})
    assert made.status == 201
    new_key, new_id = made.json()["key"], made.json()["details"]["id"]
    assert plane.call(new_key, "GET", "/v1/keys").status == 200
    revoked = plane.call(key, "DELETE", f"/v1/keys/{new_id}")
    assert revoked.status == 200
    assert revoked.json()["revoked_at"] is not None
    assert plane.call(new_key, "GET", "/v1/keys").status == 401


def test_deploying_plans_commits_and_shows(plane: Plane) -> None:
    key = plane.sign_in("alice")
    dry = plane.call(
        key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat", "dry_run": True}
    )
    assert dry.status == 201, dry.body
    assert dry.json()["committed"] is None
    assert any("tinyforge/echo-chat@1.1.0" in line for line in dry.json()["plan"])
    assert plane.call(key, "GET", "/v1/deployments").json() == {"deployments": []}
    made = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    assert made.status == 201, made.body
    assert made.json()["committed"]
    (dep,) = made.json()["deployments"]
    listed = plane.call(key, "GET", "/v1/deployments").json()["deployments"]
    assert [d["id"] for d in listed] == [dep["id"]]
    shown = plane.call(key, "GET", f"/v1/deployments/{dep['id']}").json()
    # git names the account by its pseudonym only.
    alice = plane.control.pseudonyms.of("alice")
    assert shown["desired"]["account"] == shown["desired"]["requester"] == alice
    assert shown["model"] == dep["id"]
    assert shown["endpoint"] is None  # the farm has not routed it yet
    stopped = plane.call(key, "DELETE", f"/v1/deployments/{dep['id']}")
    assert stopped.json()["stopped"] == [dep["id"]]
    assert stopped.json()["committed"]
    assert plane.call(key, "GET", f"/v1/deployments/{dep['id']}").json()["actual"] == "stopped"


def test_a_refused_deployment_lists_its_reasons(plane: Plane) -> None:
    key = plane.sign_in("alice")
    reply = plane.call(key, "POST", "/v1/deployments", {"model": "nobody/nothing"})
    assert reply.status == 422
    assert reply.json()["error"]["code"] == "refused"
    assert plane.call(key, "POST", "/v1/deployments", {}).status == 400


def test_usage_is_empty_before_any_call(plane: Plane) -> None:
    key = plane.sign_in("alice")
    reply = plane.call(key, "GET", "/v1/usage?since=2026-01-01")
    alice = plane.control.pseudonyms.of("alice")
    assert reply.json() == {"account": "alice", "pseudonym": alice, "rows": []}
    assert plane.call(key, "GET", "/v1/usage?since=yesterday").status == 422


def test_oversized_and_malformed_bodies(plane: Plane) -> None:
    key = plane.sign_in("alice")
    client = Client(plane.url, key)
    huge = client.request("POST", "/v1/keys", raw=b"{" + b" " * (70 << 10) + b"}")
    assert huge.status == 413
    for raw in (b"{", b"[]", b'{"name": 5}', b'{"name": "x", "extra": 1}', b"\xff\xfe"):
        assert client.request("POST", "/v1/keys", raw=raw).status == 422, raw


def test_the_openapi_document_names_every_route() -> None:
    doc = json.loads(openapi_document())
    assert set(doc["paths"]) == {
        "/v1/login/config",
        "/v1/login/github",
        "/v1/balance",
        "/v1/topups",
        "/v1/payments/webhook",
        "/v1/keys",
        "/v1/keys/{key_id}",
        "/v1/deployments",
        "/v1/deployments/{deployment_id}",
        "/v1/deployments/{deployment_id}/upgrade",
        "/v1/usage",
        "/v1/subscriptions",
        "/v1/subscriptions/{subscription_id}",
        "/v1/invoices",
        "/v1/invoices/{period}",
    }


def test_a_model_an_agent_calls_is_stopped_only_with_it(plane: Plane) -> None:
    key = plane.sign_in("alice")
    made = plane.call(
        key,
        "POST",
        "/v1/deployments",
        {"agent": "tinyforge/faq-bot", "model": "tinyforge/echo-chat"},
    )
    assert made.status == 201, made.body
    model, agent = (d["id"] for d in made.json()["deployments"])
    refused = plane.call(key, "DELETE", f"/v1/deployments/{model}")
    assert refused.status == 409
    assert agent in refused.json()["error"]["message"]
    assert plane.call(key, "GET", f"/v1/deployments/{model}").json()["desired"]["state"] == (
        "running"
    )
    both = plane.call(key, "DELETE", f"/v1/deployments/{model}?cascade=true")
    assert both.status == 200, both.body
    assert sorted(both.json()["stopped"]) == sorted([model, agent])


def test_a_deployment_is_upgraded_through_the_api(plane: Plane) -> None:
    key = plane.sign_in("alice")
    made = plane.call(key, "POST", "/v1/deployments", {"model": "tinyforge/echo-chat"})
    assert made.status == 201, made.body
    (dep,) = made.json()["deployments"]
    assert dep["version"] == "1.1.0"
    repo = Repo(str(plane.market.repo))
    try:
        publish(repo, "tinyforge/echo-chat", "1.2.0")
    finally:
        repo.close()
    path = f"/v1/deployments/{dep['id']}/upgrade"
    dry = plane.call(key, "POST", path, {"dry_run": True})
    assert dry.status == 200, dry.body
    assert (dry.json()["old_version"], dry.json()["new_version"]) == ("1.1.0", "1.2.0")
    assert dry.json()["committed"] is None
    assert plane.call(key, "POST", path, {"to": "9.9.9"}).status == 422
    done = plane.call(key, "POST", path, {})
    assert done.json()["committed"]
    shown = plane.call(key, "GET", f"/v1/deployments/{dep['id']}").json()
    assert shown["desired"]["listing"]["version"] == "1.2.0"


def test_a_deployment_plan_forecasts_a_month(plane: Plane) -> None:
    key = plane.sign_in("alice")
    body = {
        "agent": "tinyforge/faq-bot",
        "dry_run": True,
        "forecast": {"calls": 2000, "input_tokens": 100, "output_tokens": 50},
    }
    dry = plane.call(key, "POST", "/v1/deployments", body)
    assert dry.status == 201, dry.body
    month = {f["listing"]: f for f in dry.json()["forecast"]}
    assert month["tinyforge/faq-bot@1.1.0"]["amount"] == "2.000"
    assert any(line.startswith("A month at 2,000 calls") for line in dry.json()["plan"])
    bad = {**body, "forecast": {"calls": -1}}
    assert plane.call(key, "POST", "/v1/deployments", bad).status == 422
