"""Deployment requests name the account and the requester by their pseudonyms, whichever way
they come (the command line, an issue); a login shaped as a pseudonym, an overlong one or one
with odd characters never reaches git."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.accounts.pseudonym import Pseudonyms, is_pseudonym
from formarket.cli import main
from formarket.deploy.request import DeployOptions, build_request
from formarket.errors import InputError
from formarket.farm.settings import FarmSettings
from formarket.farm.status import farm_pseudonyms
from tests.deploy.conftest import GOOD_BODY, MAINTAINER, REPO, Desk, deployments, tip
from tests.deploy.test_cli import CLEAN_ENV, deploy
from tests.git_names import places_naming

PSEUDONYMS = Pseudonyms(b"0123456789abcdef0123456789abcdef")
MODEL = "tinyforge/echo-chat"


def test_the_request_names_both_by_pseudonym() -> None:
    request = build_request(
        DeployOptions(model=MODEL, account="Acme-Corp", requester="ops-bob"), PSEUDONYMS
    )
    assert request.account == PSEUDONYMS.of("acme-corp")
    assert request.requester == PSEUDONYMS.of("ops-bob")
    # Without a requester: the local user, hashed as well.
    alone = build_request(DeployOptions(model=MODEL), PSEUDONYMS)
    assert is_pseudonym(alone.requester)
    assert alone.account == alone.requester


def test_an_account_given_by_its_pseudonym_is_kept() -> None:
    pseudonym = PSEUDONYMS.of("ada")
    request = build_request(DeployOptions(model=MODEL, account=pseudonym), PSEUDONYMS)
    assert request.account == pseudonym


@pytest.mark.parametrize(
    "name",
    [
        "x" * 129,  # longer than any account name
        "ada lovelace",
        "ada\nlovelace",
        "../../etc/passwd",
        "ada;rm -rf /",
        "-ada",
        "ädа",  # not ASCII (the last letter is Cyrillic)
        "ada\x00",
        "$(touch canary)",
    ],
)
def test_a_name_that_is_no_account_is_refused_before_hashing(name: str) -> None:
    for options in (
        DeployOptions(model=MODEL, account=name, requester="ops"),
        DeployOptions(model=MODEL, requester=name),
    ):
        with pytest.raises(InputError, match="is not an account name"):
            build_request(options, PSEUDONYMS)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=200))
def test_whatever_the_name_the_request_holds_a_pseudonym_only(name: str) -> None:
    try:
        request = build_request(DeployOptions(model=MODEL, account=name), PSEUDONYMS)
    except InputError:
        return
    assert is_pseudonym(request.account)
    assert request.account == PSEUDONYMS.of(name)
    if not is_pseudonym(name):
        assert request.account != name


@pytest.mark.parametrize("author", ["<carol's pseudonym>", "x" * 200, "carol smith", "c\u0430rol"])
def test_an_issue_author_that_is_no_login_is_refused(desk: Desk, author: str) -> None:
    # Someone else's pseudonym: were it taken as a login, its deployments would be theirs.
    if author == "<carol's pseudonym>":
        author = farm_pseudonyms(desk.settings).of("carol")
    before = tip(desk.settings)
    number = desk.open(author, GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)

    outcome = desk.fire(number, "labeled", MAINTAINER, label="approved")

    assert outcome.action == "refused"
    assert any("is not a GitHub login" in reason for reason in outcome.reasons)
    assert tip(desk.settings) == before


def test_an_issue_deploys_for_its_authors_pseudonym(desk: Desk) -> None:
    number = desk.open("Carol-Smith", GOOD_BODY)
    desk.standin.add_label(REPO, number, "approved", MAINTAINER)

    outcome = desk.fire(number, "labeled", MAINTAINER, label="approved")

    assert outcome.action == "deployed"
    carol = farm_pseudonyms(desk.settings).of("carol-smith")
    assert {(d.account, d.requester) for d in deployments(desk.settings).values()} == {
        (carol, carol)
    }


def test_the_operator_lists_an_accounts_deployments_by_its_login(market: FarmSettings) -> None:
    # Distinctive logins, so that the search over git cannot meet them in other words.
    for account in ("Ada-Byron", "bob-builder"):
        made = deploy(market, "--model", MODEL, "--account", account)
        assert made.exit_code == 0, made.output
    ada = farm_pseudonyms(market).of("ada-byron")
    assert places_naming(market.repo, ["ada-byron", "bob-builder"]) == []  # nor in messages

    def listed(*args: str) -> str:
        result = CliRunner().invoke(
            main, ["deployments", "list", "--repo", str(market.repo), *args], env=CLEAN_ENV
        )
        assert result.exit_code == 0, result.output
        return result.output

    everyone = listed()
    assert ada in everyone
    assert "ada-byron" not in everyone.lower()
    only_ada = listed("--account", "ADA-BYRON")
    assert ada in only_ada
    assert farm_pseudonyms(market).of("bob-builder") not in only_ada
    assert (
        listed("--account", "carol").strip() == "no deployments running (--all shows stopped ones)"
    )
