"""The issue flow end to end: webhook payloads in GitHub's shape, the stand-in GitHub server,
a real git repository. Hostile and wrong requests are refused with a comment, nothing
committed; good ones are committed once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from formarket.deploy.issue_flow import handle_event
from formarket.deploy.issue_form import MAX_BODY_BYTES
from formarket.deploy.request import DeployOptions, run
from formarket.farm.status import farm_pseudonyms
from tests.deploy.conftest import (
    DEPLOYER,
    GOOD_BODY,
    MAINTAINER,
    REPO,
    Desk,
    deployments,
    form,
    tip,
)


def refused(desk: Desk, number: int, outcome_reasons: tuple[str, ...]) -> str:
    comments = desk.comments(number)
    assert len(comments) == 1
    assert comments[0].startswith("<!-- formarket:deploy -->\n**Not deployed.**")
    assert outcome_reasons
    return comments[0]


# --- hostile and wrong requests ------------------------------------------------------------

HOSTILE = [
    pytest.param(
        "Deploy $(touch {canary})",
        form(agent="tinyforge/faq-bot$(touch {canary})", model="tinyforge/echo-chat"),
        ["title contains shell", "is not a listing id"],
        id="shell-in-title-and-agent",
    ),
    pytest.param(
        "Deploy ${{{{ github.token }}}}",
        form(agent="${{{{ secrets.GITHUB_TOKEN }}}}", model="`touch {canary}`"),
        [
            "title contains shell",
            "Agent `${{{{ secrets.GITHUB_TOKEN }}}}` is not a listing id",
            "Model `'touch",
        ],
        id="expression-in-title-and-fields",
    ),
    pytest.param(
        "Deploy: faq-bot",
        form(agent="tinyforge/faq-bot; touch {canary}", resources="vcpus=1|touch {canary}"),
        ["is not a listing id", "is not vcpus=N, memory=MiB or gpu=MODEL:COUNT"],
        id="shell-in-body",
    ),
    pytest.param(
        "Deploy: faq-bot",
        form(agent="tinyforge/faq-bot") + "\n\n### Command\n\ntouch {canary}",
        ["The form has no field `Command`"],
        id="unknown-field",
    ),
]


@pytest.mark.parametrize(("title", "body", "expected"), HOSTILE)
def test_hostile_text_is_refused_and_never_run(
    desk: Desk, tmp_path: Path, title: str, body: str, expected: list[str]
) -> None:
    canary = tmp_path / "pwned"
    before = tip(desk.settings)
    number = desk.open(DEPLOYER, body.format(canary=canary), title.format(canary=canary))

    outcome = desk.fire(number, "opened", DEPLOYER)

    assert outcome.action == "refused"
    comment = refused(desk, number, outcome.reasons)
    for fragment in (f.format(canary=canary) for f in expected):
        assert any(fragment in reason for reason in outcome.reasons), (fragment, outcome.reasons)
        assert fragment in comment
    assert tip(desk.settings) == before
    assert not canary.exists()


def test_a_body_of_a_megabyte_is_refused_early(desk: Desk) -> None:
    before = tip(desk.settings)
    body = GOOD_BODY + "\n" + "x" * (1 << 20)
    number = desk.open(DEPLOYER, body)

    outcome = desk.fire(number, "opened", DEPLOYER)

    assert outcome.action == "refused"
    assert outcome.reasons == (
        f"The body is {len(body.encode()):,} bytes; a deployment request is at most"
        f" {MAX_BODY_BYTES:,}.",
    )
    refused(desk, number, outcome.reasons)
    assert tip(desk.settings) == before


def test_an_unauthorized_author_is_refused_until_a_maintainer_approves(desk: Desk) -> None:
    before = tip(desk.settings)
    number = desk.open("mallory", GOOD_BODY)

    outcome = desk.fire(number, "opened", "mallory")

    assert outcome.action == "refused"
    assert "@mallory is not on the deployers list" in outcome.reasons[0]
    assert "`approved` label" in refused(desk, number, outcome.reasons)
    assert tip(desk.settings) == before


def test_an_approved_label_from_a_non_maintainer_does_not_count(desk: Desk) -> None:
    before = tip(desk.settings)
    number = desk.open("mallory", GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", "mallory")

    outcome = desk.fire(number, "labeled", "mallory", label="approved")

    assert outcome.action == "refused"
    assert "added by @mallory, who is not a maintainer" in outcome.reasons[0]
    assert tip(desk.settings) == before


def test_a_maintainers_approval_deploys_the_body_it_approved(desk: Desk) -> None:
    number = desk.open("carol", GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)

    outcome = desk.fire(number, "labeled", MAINTAINER, label="approved")

    assert outcome.action == "deployed"
    found = deployments(desk.settings)
    assert sorted(found) == sorted(outcome.deployment_ids)
    agent = next(d for d in found.values() if d.kind == "agent")
    assert agent.requester == agent.account == farm_pseudonyms(desk.settings).of("carol")
    assert agent.origin.issue == number
    assert agent.settings["handoff_message"] == "A person will reply."
    assert "**Deployment accepted**" in desk.comments(number)[-1]


def test_a_body_edited_after_approval_is_refused_until_approved_again(desk: Desk) -> None:
    number = desk.open("carol", GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)
    approved = desk.standin.payload(REPO, number, "labeled", MAINTAINER, label="approved")
    # The author edits the body between the approval and the run that executes it.
    hostile = GOOD_BODY.replace("tinyforge/echo-chat", "openhearth/hearth-chat-1.7b")
    desk.standin.edit(REPO, number, body=hostile)
    before = tip(desk.settings)

    path = desk.tmp / "approved.json"
    path.write_text(json.dumps(approved), encoding="utf-8")

    outcome = handle_event(path, desk.settings, desk.github)
    assert outcome.action == "refused"
    assert "edited after @mara-maintainer approved it" in outcome.reasons[0]
    assert tip(desk.settings) == before
    # The `edited` event that follows is refused too.
    again = desk.fire(number, "edited", "carol")
    assert again.action == "refused"
    assert tip(desk.settings) == before

    # A maintainer approves the new body: now it runs, with its hash recorded.
    desk.standin.remove_label(REPO, number, "approved", MAINTAINER)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)
    outcome = desk.fire(number, "labeled", MAINTAINER, label="approved")
    assert outcome.action == "deployed"
    sha = hashlib.sha256(hostile.encode()).hexdigest()
    assert {d.origin.body_sha256 for d in deployments(desk.settings).values()} == {sha}


def test_an_edit_after_deployment_needs_a_new_approval(desk: Desk) -> None:
    number = desk.open("carol", GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)
    assert desk.fire(number, "labeled", MAINTAINER, label="approved").action == "deployed"
    before = tip(desk.settings)

    desk.standin.edit(REPO, number, body=GOOD_BODY.replace("A person", "Someone"))
    outcome = desk.fire(number, "edited", "carol")

    assert outcome.action == "refused"
    assert "edited after @mara-maintainer approved it" in outcome.reasons[0]
    assert tip(desk.settings) == before


WRONG = [
    pytest.param(
        form(agent="acme/does-not-exist", model="tinyforge/echo-chat"),
        ["There is no agent listing acme/does-not-exist in the registry."],
        id="listing-does-not-exist",
    ),
    pytest.param(
        form(
            agent="tinyforge/faq-bot", model="tinyforge/echo-chat", resources="vcpus=4 memory=8192"
        ),
        [
            "tinyforge/faq-bot may use at most 1 vCPUs; 4 were asked for.",
            "tinyforge/faq-bot may use at most 512 MiB of memory; 8192 were asked for.",
        ],
        id="resources-above-limits",
    ),
    pytest.param(
        form(agent="tinyforge/faq-bot", model="tinyforge/echo-chat", resources="gpu=H100:1"),
        ["tinyforge/faq-bot does not use GPUs; leave out the GPU request."],
        id="gpu-not-used",
    ),
    pytest.param(
        form(agent="tinyforge/faq-bot", settings="min_match: 5\nlanguage: fr\ncolour: red"),
        [
            "tinyforge/faq-bot settings: Additional properties are not allowed ('colour' was"
            " unexpected).",
            'tinyforge/faq-bot setting language: "fr" is not one of "en".',
            "tinyforge/faq-bot setting min_match: 5 is greater than the maximum of 1.",
        ],
        id="settings-fail-the-schema",
    ),
    pytest.param(
        form(agent="tinyforge/faq-bot", model="tinyforge/tiny-embed"),
        [
            "tinyforge/faq-bot needs a model for chat or text-generation; tinyforge/tiny-embed"
            " does embeddings.",
            "tinyforge/faq-bot needs a context of at least 2048 tokens; tinyforge/tiny-embed"
            " has 512.",
        ],
        id="incompatible-model",
    ),
    pytest.param(
        form(agent="tinyforge/faq-bot@9.9.9", model="tinyforge/echo-chat"),
        [
            "agent tinyforge/faq-bot has no published version 9.9.9; its versions: 1.1.0.",
        ],
        id="version-not-deployable",
    ),
]


@pytest.mark.parametrize(("body", "expected"), WRONG)
def test_wrong_requests_are_refused_with_every_reason(
    desk: Desk, body: str, expected: list[str]
) -> None:
    before = tip(desk.settings)
    number = desk.open(DEPLOYER, body)

    outcome = desk.fire(number, "opened", DEPLOYER)

    assert outcome.action == "refused"
    assert sorted(outcome.reasons) == sorted(expected)
    comment = refused(desk, number, outcome.reasons)
    for reason in expected:
        assert f"- {reason}" in comment
    assert tip(desk.settings) == before


# --- good paths ----------------------------------------------------------------------------


def test_an_allow_listed_author_is_deployed_once_and_reruns_change_nothing(desk: Desk) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)

    first = desk.fire(number, "opened", DEPLOYER)

    assert first.action == "deployed"
    assert len(first.deployment_ids) == 2
    committed = tip(desk.settings)
    found = deployments(desk.settings)
    model, agent = (found[i] for i in first.deployment_ids)
    assert (model.kind, agent.kind) == ("model", "agent")
    assert agent.model_deployment == model.id
    assert all(i.startswith("dep-") and len(i) == 16 for i in first.deployment_ids)
    comment = desk.comments(number)[-1]
    assert first.deployment_ids[0] in comment
    assert "USD 0.001 per request" in comment

    # The same event again (a re-run of the workflow), then an `edited` that changed nothing.
    again = desk.fire(number, "opened", DEPLOYER)
    edited = desk.fire(number, "edited", DEPLOYER)

    assert again.action == edited.action == "unchanged"
    assert again.deployment_ids == first.deployment_ids
    assert tip(desk.settings) == committed
    assert len(desk.comments(number)) == 2  # accepted, then one "already deployed"


def test_closing_the_issue_stops_its_deployments(desk: Desk) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)
    ids = desk.fire(number, "opened", DEPLOYER).deployment_ids
    desk.standin.edit(REPO, number, state="closed")

    outcome = desk.fire(number, "closed", DEPLOYER)

    assert outcome.action == "stopped"
    assert outcome.deployment_ids == ids
    assert {d.state for d in deployments(desk.settings).values()} == {"stopped"}
    assert "**Stopped**" in desk.comments(number)[-1]
    # Closing again (a re-run) stops nothing more and commits nothing.
    stopped_at = tip(desk.settings)
    assert desk.fire(number, "closed", DEPLOYER).action == "ignored"
    assert tip(desk.settings) == stopped_at


def test_a_solution_resolves_to_its_agent_model_and_settings(desk: Desk) -> None:
    number = desk.open(DEPLOYER, form(solution="tinyforge/faq-demo"))

    outcome = desk.fire(number, "opened", DEPLOYER)

    assert outcome.action == "deployed"
    agent = deployments(desk.settings)[outcome.deployment_ids[-1]]
    assert agent.listing.id == "tinyforge/faq-bot"
    assert agent.settings["handoff_message"].startswith("Sorry, I do not know")


@pytest.mark.parametrize(
    ("action", "extra"),
    [("labeled", {"label": "bug"}), ("assigned", {}), ("created", {"comment": {"body": "hi"}})],
)
def test_other_events_are_ignored(desk: Desk, action: str, extra: dict[str, object]) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)
    before = tip(desk.settings)

    assert desk.fire(number, action, DEPLOYER, **extra).action == "ignored"
    assert desk.comments(number) == []
    assert tip(desk.settings) == before


def test_an_allow_listed_edit_updates_the_one_deployment_in_place(desk: Desk) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)
    first = desk.fire(number, "opened", DEPLOYER)
    edited_body = GOOD_BODY.replace("A person will reply.", "Someone will reply.")
    desk.standin.edit(REPO, number, body=edited_body)

    outcome = desk.fire(number, "edited", DEPLOYER)

    assert outcome.action == "deployed"
    assert outcome.deployment_ids == first.deployment_ids  # the same ids: one per issue
    found = deployments(desk.settings)
    assert sorted(found) == sorted(first.deployment_ids)
    agent = found[first.deployment_ids[-1]]
    assert agent.settings["handoff_message"] == "Someone will reply."
    assert agent.origin.body_sha256 == hashlib.sha256(edited_body.encode()).hexdigest()


def test_a_deploy_comment_tries_the_request_again(desk: Desk) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)
    ids = desk.fire(number, "opened", DEPLOYER).deployment_ids
    comment = desk.standin.add_comment(REPO, number, DEPLOYER, "/deploy")

    outcome = desk.fire(number, "created", DEPLOYER, comment=comment)

    assert outcome.action == "unchanged"
    assert outcome.deployment_ids == ids


def test_closing_keeps_a_model_that_another_request_reuses(desk: Desk) -> None:
    number = desk.open(DEPLOYER, GOOD_BODY)
    model_id, agent_id = desk.fire(number, "opened", DEPLOYER).deployment_ids
    # The same account asks for a second agent from the CLI: it reuses the issue's model.
    run(desk.settings, DeployOptions(agent="tinyforge/faq-bot", account=DEPLOYER), echo=str)
    desk.standin.edit(REPO, number, state="closed")

    outcome = desk.fire(number, "closed", DEPLOYER)

    assert outcome.deployment_ids == (agent_id,)
    states = {d.id: d.state for d in deployments(desk.settings).values()}
    assert states[agent_id] == "stopped"
    assert states[model_id] == "running"
