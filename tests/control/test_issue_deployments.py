"""A deployment asked for by a GitHub issue belongs to the issue's author: signed in with the
same GitHub login, they see it and can stop it through the control plane; no one else can."""

from __future__ import annotations

from formarket.github import GitHub
from tests.control.conftest import Plane
from tests.deploy.conftest import BOT_TOKEN, DEPLOYER, GOOD_BODY, Desk


def test_an_issues_deployment_is_its_authors(plane: Plane) -> None:
    plane.github.tokens[BOT_TOKEN] = "formarket-bot"
    with GitHub(plane.github.url, BOT_TOKEN) as github:
        desk = Desk(plane.github, github, plane.market, plane.market.state)
        plane.market.state.mkdir(parents=True, exist_ok=True)
        number = desk.open(DEPLOYER, GOOD_BODY)
        desk.fire(number, "opened", DEPLOYER)
    author = plane.sign_in(DEPLOYER)
    listed = plane.call(author, "GET", "/v1/deployments").json()["deployments"]
    assert {d["listing"] for d in listed} == {"tinyforge/faq-bot", "tinyforge/echo-chat"}
    someone = plane.sign_in("someone-else")
    assert plane.call(someone, "GET", "/v1/deployments").json() == {"deployments": []}
    for d in listed:
        assert plane.call(someone, "DELETE", f"/v1/deployments/{d['id']}").status == 404
    agent = next(d for d in listed if d["kind"] == "agent")
    assert plane.call(author, "DELETE", f"/v1/deployments/{agent['id']}").status == 200
