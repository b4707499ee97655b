"""The settings table: its parsers, that it names every FORMARKET_* variable, that the CLI's
shared options are made from it, and that docs/settings.md and the example env file agree."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from formarket import settings as table
from formarket.cli import main
from formarket.commands import COMMANDS
from formarket.commands._options import DEPRECATED, SHARED, farm_settings, option_help
from formarket.errors import UsageError
from formarket.farm.settings import FarmSettings
from tests.gateway.helpers import make_market

ROOT = Path(__file__).parent.parent
SRC = ROOT / "src" / "formarket"
VARIABLE = re.compile(r"FORMARKET_[A-Z][A-Z0-9_]*")
REGENERATE = "formarket settings --markdown > docs/settings.md"


def _invoke(args: list[str], env: dict[str, str] | None = None) -> click.testing.Result:
    return CliRunner().invoke(main, args, env=env)


# The parsers.


@pytest.mark.parametrize(
    ("setting", "raw", "value"),
    [
        (table.REPO, "/srv/market", Path("/srv/market")),
        (table.BRANCH, "release/2026-01", "release/2026-01"),
        (table.BUILD_TIME_LIMIT, "120", 120),
        (table.RECONCILE_SECONDS, "2.5", 2.5),
        (table.RECONCILE_SECONDS, "1e1", 10.0),
        (table.BROKER_URL, "redis://:pw@farm-redis:6379/0", "redis://:pw@farm-redis:6379/0"),
        (
            table.RESULT_BACKEND,
            "db+sqlite:///tmp/results.sqlite",
            "db+sqlite:///tmp/results.sqlite",
        ),
        (table.GITHUB_REPO, "acme/market.place", "acme/market.place"),
        (table.DEBUG, "1", True),
        (table.DEBUG, "0", True),  # any value turns it on, as it always did
    ],
)
def test_good_values_are_read(setting: table.Setting[Any], raw: str, value: object) -> None:
    assert setting.read({setting.variable: f" {raw} "}) == value


def test_unset_or_empty_means_the_default() -> None:
    for environ in ({}, {"FORMARKET_BRANCH": ""}, {"FORMARKET_BRANCH": "  "}):
        assert table.BRANCH.read(environ) == "main"
        assert table.BUILD_TIME_LIMIT.get(environ) == 3600
        assert table.HOSTS.read(environ) is None
        assert table.DEBUG.get(environ) is False
    with pytest.raises(LookupError):
        table.HOSTS.get({})


@pytest.mark.parametrize(
    ("setting", "raw"),
    [
        (table.BUILD_TIME_LIMIT, "soon"),
        (table.BUILD_TIME_LIMIT, "0"),
        (table.BUILD_TIME_LIMIT, "-5"),
        (table.BUILD_TIME_LIMIT, "1.5"),
        (table.BUILD_TIME_LIMIT, "1_000"),
        (table.BUILD_TIME_LIMIT, "\u0663"),  # a digit, but not 0-9
        (table.RECONCILE_SECONDS, "nan"),
        (table.RECONCILE_SECONDS, "inf"),
        (table.RECONCILE_SECONDS, "1e400"),
        (table.RECONCILE_SECONDS, "0"),
        (table.BROKER_URL, "localhost:6379"),
        (table.BROKER_URL, "://localhost"),
        (table.GATEWAY_URL, "http://a b"),
        (table.BRANCH, "--upload-pack=x"),
        (table.BRANCH, "a..b"),
        (table.BRANCH, "topic.lock"),
        (table.BRANCH, "a b"),
        (table.BRANCH, "@"),
        (table.GITHUB_REPO, "acme"),
        (table.GITHUB_REPO, "acme/market; rm -rf /"),
        (table.GITHUB_REPO, "../../etc/passwd"),
        (table.GITHUB_REPO, "acme/.."),
        (table.STATE, "a\0b"),
    ],
)
def test_malformed_values_say_which_variable_what_value_and_what_was_expected(
    setting: table.Setting[Any], raw: str
) -> None:
    with pytest.raises(UsageError) as caught:
        setting.read({setting.variable: raw})
    error = caught.value
    assert error.message.startswith(f"{setting.variable}={raw!r} is not {setting.kind.expected}")
    assert setting.shown_default in error.hint


@given(st.integers(min_value=1, max_value=10**15))
def test_whole_numbers_above_zero_read_back(n: int) -> None:
    assert table.BUILD_TIME_LIMIT.read({"FORMARKET_BUILD_TIME_LIMIT": str(n)}) == n


@given(st.integers(max_value=0))
def test_whole_numbers_below_one_are_refused(n: int) -> None:
    with pytest.raises(UsageError):
        table.BUILD_TIME_LIMIT.read({"FORMARKET_BUILD_TIME_LIMIT": str(n)})


@given(st.text(max_size=12))
def test_any_text_is_a_whole_number_only_when_it_is_digits(raw: str) -> None:
    try:
        value = table.SECONDS.parse(raw)
    except ValueError:
        assert not (raw.isascii() and raw.isdigit() and int(raw) > 0)
    else:
        assert raw.isascii()
        assert raw.isdigit()
        assert value == int(raw) > 0


@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False))
def test_positive_numbers_read_back(x: float) -> None:
    assert table.RECONCILE_SECONDS.read({"FORMARKET_RECONCILE_SECONDS": repr(x)}) == x


@given(st.floats(max_value=0) | st.just(math.nan) | st.just(math.inf))
def test_numbers_not_above_zero_are_refused(x: float) -> None:
    with pytest.raises(UsageError):
        table.RECONCILE_SECONDS.read({"FORMARKET_RECONCILE_SECONDS": repr(x)})


_SCHEME = st.from_regex(r"[a-z][a-z0-9+.-]{0,10}", fullmatch=True)
_REST = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


@given(_SCHEME, _REST)
def test_urls_read_back(scheme: str, rest: str) -> None:
    url = f"{scheme}://{rest}"
    assert table.BROKER_URL.read({"FORMARKET_BROKER_URL": url}) == url


@given(st.text(min_size=1, max_size=40).filter(lambda t: "://" not in t and t.strip()))
def test_text_without_a_scheme_is_not_a_url(raw: str) -> None:
    with pytest.raises(UsageError):
        table.BROKER_URL.read({"FORMARKET_BROKER_URL": raw})


_PART = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,12}", fullmatch=True).filter(
    lambda p: not p.endswith(".lock")
)


@given(st.lists(_PART, min_size=1, max_size=4))
def test_branch_names_read_back(parts: list[str]) -> None:
    name = "/".join(parts)
    assert table.BRANCH.read({"FORMARKET_BRANCH": name}) == name


@given(st.lists(_PART, min_size=1, max_size=3), st.sampled_from(" ~^:?*[\\\t"), st.data())
def test_branch_names_with_a_forbidden_character_are_refused(
    parts: list[str], bad: str, data: st.DataObject
) -> None:
    name = "/".join(parts)
    at = data.draw(st.integers(0, len(name)))
    with pytest.raises(UsageError):
        table.BRANCH.parse(name[:at] + bad + name[at:])


def test_a_url_password_is_never_shown() -> None:
    shown = table.shown_value(table.BROKER_URL, "redis://:s3cret@farm-redis:6379/0")
    assert shown == "redis://:***@farm-redis:6379/0"
    assert table.shown_value(table.BROKER_URL, "redis://u:p@h/0") == "redis://u:***@h/0"
    assert table.shown_value(table.BROKER_URL, "redis://h:6379/0") == "redis://h:6379/0"
    assert table.shown_value(table.REPO, "/a:b@c") == "/a:b@c"


# The table names every variable, and the code reads them only through it.


def _mentions(folder: Path, patterns: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    for pattern in patterns:
        for path in sorted(folder.rglob(pattern)):
            if ".venv" in path.parts or "build" in path.parts:
                continue
            for variable in VARIABLE.findall(path.read_text(errors="replace")):
                yield path, variable


def test_every_variable_in_the_source_is_in_the_table() -> None:
    missing = {
        f"{path.relative_to(ROOT)}: {variable}"
        for path, variable in _mentions(SRC, ("*.py",))
        if table.by_variable(variable) is None
    }
    assert missing == set(), "add these to src/formarket/settings.py's TABLE"


def test_every_variable_in_the_docs_tests_and_listings_is_in_the_table() -> None:
    places = [
        (ROOT, ("README.md", "Makefile", "BENCHMARKS.md")),
        (ROOT / "docs", ("*.md", "*.env", "*.service", "*.timer", "*.yaml")),
        (ROOT / ".github", ("*.yml",)),
        (ROOT / "tests", ("*.py",)),
        (ROOT / "benchmarks", ("*.py",)),
        (ROOT / "registry", ("*.md",)),
    ]
    missing = {
        f"{path.relative_to(ROOT)}: {variable}"
        for folder, patterns in places
        for path, variable in _mentions(folder, patterns)
        if table.by_variable(variable) is None
    }
    assert missing == set()


def test_the_table_has_each_variable_once_and_names_real_commands() -> None:
    variables = [s.variable for s in table.TABLE]
    assert len(variables) == len(set(variables))
    assert len({s.name for s in table.TABLE}) == len(variables)
    for setting in table.TABLE:
        assert VARIABLE.fullmatch(setting.variable)
        assert setting.help.endswith(".")
        assert set(setting.commands) <= set(COMMANDS) | {table.EVERY_COMMAND}
        assert (setting.role == "read") == bool(setting.commands)


_ENVIRON_READ = re.compile(r"(environ\.get|environ\[|getenv)\(?\s*[\"']FORMARKET_")


def test_only_the_table_reads_the_environment_for_a_formarket_variable() -> None:
    readers = sorted(
        str(path.relative_to(ROOT))
        for path in SRC.rglob("*.py")
        if path != SRC / "settings.py" and _ENVIRON_READ.search(path.read_text())
    )
    assert readers == []


# The CLI's options are the table's.


def _commands() -> Iterator[tuple[str, str, click.Command]]:
    """(top-level name, full name, command) for every command and subcommand."""

    def walk(
        top: str, name: str, command: click.Command
    ) -> Iterator[tuple[str, str, click.Command]]:
        yield top, name, command
        if isinstance(command, click.Group):
            for sub_name, sub in command.commands.items():
                yield from walk(top, f"{name} {sub_name}", sub)

    ctx = click.Context(main)
    for top in COMMANDS:
        command = main.get_command(ctx, top)
        assert command is not None
        yield from walk(top, top, command)


def _options() -> Iterator[tuple[str, str, click.Option]]:
    for top, name, command in _commands():
        for param in command.params:
            if isinstance(param, click.Option):
                yield top, name, param


def test_the_same_option_is_the_same_in_every_command() -> None:
    seen: dict[str, set[str]] = {}
    for top, name, option in _options():
        if option.hidden:
            continue
        flag = option.opts[0]
        setting = SHARED.get(flag)
        envvar = option.envvar if isinstance(option.envvar, str) else None
        if setting is None:
            assert not (envvar or "").startswith("FORMARKET_"), f"{name} {flag}: not in the table"
            assert not set(option.opts) & set(SHARED), f"{name}: {option.opts}"
            continue
        assert option.opts == [flag], f"{name} {flag}"
        assert option.name == setting.name, f"{name} {flag}"
        assert envvar == setting.variable, f"{name} {flag}"
        assert option.default == setting.default, f"{name} {flag}"
        assert option.help == option_help(setting), f"{name} {flag}"
        assert option.type.name == setting.kind.name, f"{name} {flag}"
        assert top in setting.commands, f"{name} has {flag}: add {top!r} to the table's commands"
        seen.setdefault(flag, set()).add(name)
    # The options the issue is about, where people look for them.
    assert {"usage flush", "usage show", "deploy", "royalties close"} <= seen["--branch"]
    assert {"site build", "check", "gateway serve", "usage flush", "deploy"} <= seen["--repo"]
    assert {"farm worker", "deploy", "deployments list"} <= seen["--state"]
    assert {"gateway serve", "usage flush"} <= seen["--gateway-dir"]
    assert "gateway serve" not in seen["--state"]


def test_hidden_options_are_the_deprecated_flags_only() -> None:
    hidden = {(name, option.opts[0]) for _top, name, option in _options() if option.hidden}
    assert {flag for _name, flag in hidden} == set(DEPRECATED)
    assert ("site build", "--registry") in hidden
    assert ("usage flush", "--state") in hidden
    # Where --state is the old name of the gateway's folder, the farm's --state is absent.
    for name, flag in hidden:
        if flag == "--state":
            assert name.startswith(("gateway", "usage")), name


def test_site_build_registry_still_works_and_says_what_replaces_it(tmp_path: Path) -> None:
    (tmp_path / "market").mkdir()  # no registry/: the command gets as far as reading it
    old = CliRunner().invoke(main, ["site", "build", "--registry", str(tmp_path / "market")])
    assert old.exit_code == 2
    assert "--registry is deprecated" in old.stderr
    assert "use --repo" in old.stderr
    assert f"{tmp_path / 'market'} has no registry/ folder" in old.stderr
    new = CliRunner().invoke(main, ["site", "build", "--repo", str(tmp_path / "market")])
    assert new.exit_code == 2
    assert "deprecated" not in new.stderr
    assert f"{tmp_path / 'market'} has no registry/ folder" in new.stderr


def test_the_gateways_old_state_flag_still_names_its_folder(tmp_path: Path) -> None:
    made = _invoke(["gateway", "keys", "create", "acme", "--state", str(tmp_path / "gw")])
    assert made.exit_code == 0, made.output
    assert "--state is deprecated here: use --gateway-dir" in made.stderr
    assert (tmp_path / "gw" / "keys.json").is_file()
    listed = _invoke(["gateway", "keys", "list", "--gateway-dir", str(tmp_path / "gw")])
    assert "acme" in listed.stdout
    assert listed.stderr == ""
    via_env = _invoke(
        ["gateway", "keys", "list"], env={"FORMARKET_GATEWAY_DIR": str(tmp_path / "gw")}
    )
    assert "acme" in via_env.stdout


def test_usage_and_royalties_take_their_branch_from_the_environment(tmp_path: Path) -> None:
    make_market(tmp_path / "market").close()
    env = {"FORMARKET_REPO": str(tmp_path / "market"), "FORMARKET_BRANCH": "elsewhere"}
    shown = _invoke(["usage", "show"], env=env)
    assert shown.exit_code == 1
    assert "elsewhere" in shown.stderr
    assert _invoke(["usage", "show", "--branch", "main"], env=env).exit_code == 0
    preview = _invoke(["royalties", "preview", "--period", "2026-01"], env=env)
    assert preview.exit_code != 0
    assert "elsewhere" in preview.stderr


def test_a_malformed_variable_behind_an_option_is_refused_by_name(tmp_path: Path) -> None:
    result = _invoke(["usage", "show"], env={"FORMARKET_BRANCH": "--upload-pack=x"})
    assert result.exit_code == 2
    assert "FORMARKET_BRANCH='--upload-pack=x' is not a branch name" in result.stderr
    given = _invoke(["usage", "show", "--branch", "a..b"])
    assert given.exit_code == 2
    assert "'a..b' is not a branch name" in given.stderr
    assert "FORMARKET_BRANCH" not in given.stderr


def test_options_given_replace_their_variables_in_the_farms_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORMARKET_STATE", str(tmp_path / "from-env"))
    monkeypatch.setenv("FORMARKET_HOSTS", str(tmp_path / "hosts.yaml"))
    settings = farm_settings(tmp_path / "repo", "farm", tmp_path / "given")
    assert settings.repo == tmp_path / "repo"
    assert settings.branch == "farm"
    assert settings.state == tmp_path / "given"
    assert settings.store == tmp_path / "given" / "store"  # follows the state given
    assert settings.hosts == tmp_path / "hosts.yaml"
    assert farm_settings(tmp_path, "main").state == tmp_path / "from-env"


def test_the_farms_defaults_are_the_tables(tmp_path: Path) -> None:
    settings = FarmSettings.from_env(tmp_path, {})
    assert FarmSettings(repo=tmp_path) == FarmSettings(
        repo=tmp_path, state=Path("build/farm"), visibility_timeout=4500
    )
    assert settings.branch == table.BRANCH.default
    assert settings.build_time_limit == table.BUILD_TIME_LIMIT.default
    assert settings.reconcile_seconds == table.RECONCILE_SECONDS.default
    assert settings.gateway_url == table.GATEWAY_URL.default
    assert str(settings.visibility_timeout) in table.VISIBILITY_TIMEOUT.shown_default


# What people read agrees with the table.


def test_docs_settings_md_is_fresh() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == table.render_markdown(), f"docs/settings.md is stale: run `{REGENERATE}`"
    assert REGENERATE in committed
    for setting in table.TABLE:
        assert f"`{setting.variable}`" in committed


def test_the_settings_command_shows_values_and_hides_passwords() -> None:
    env = {
        "FORMARKET_BROKER_URL": "redis://:s3cret@farm-redis:6379/0",
        "FORMARKET_BUILD_TIME_LIMIT": "soon",
        "FORMARKET_BRANCH": "release",
    }
    text = _invoke(["settings"], env=env)
    assert text.exit_code == 0, text.output
    assert "s3cret" not in text.output
    assert "redis://:***@farm-redis:6379/0" in text.output
    assert "FORMARKET_BUILD_TIME_LIMIT='soon' is not a whole number" in text.output
    rows = {
        row["variable"]: row for row in json.loads(_invoke(["settings", "--json"], env=env).output)
    }
    assert set(rows) == {s.variable for s in table.TABLE}
    assert rows["FORMARKET_BRANCH"]["value"] == "release"
    assert rows["FORMARKET_BRANCH"]["option"] == "--branch"
    assert rows["FORMARKET_BUILD_TIME_LIMIT"]["problem"]
    assert rows["FORMARKET_HOSTS"]["value"] is None
    assert "s3cret" not in json.dumps(rows)
    assert _invoke(["settings", "--markdown"]).output == table.render_markdown()


_ASSIGNMENT = re.compile(r"^#?(FORMARKET_[A-Z0-9_]+)=(.*)$", re.MULTILINE)


@pytest.mark.parametrize("path", sorted((ROOT / "docs" / "operations" / "examples").glob("*.env")))
def test_the_example_env_file_agrees_with_the_table(path: Path) -> None:
    text = path.read_text()
    assigned = dict(_ASSIGNMENT.findall(text))
    for variable, raw in assigned.items():
        setting = table.by_variable(variable)
        assert setting is not None, variable
        assert setting.role == "read", variable
        if raw:
            setting.read({variable: raw})  # a value the farm would refuse is a bad example
    farm = {s.variable for s in table.TABLE if "farm" in s.commands}
    assert farm - set(assigned) == set(), f"{path.name} leaves out variables the farm reads"
    # Checked as a whole, as the farm reads it.
    FarmSettings.from_env(Path("/"), {k: v for k, v in assigned.items() if v})


def test_formarket_debug_shows_a_bugs_traceback() -> None:
    from formarket.cli import _Root

    @click.command("boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    class Root(_Root):
        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            return boom

    root = Root("formarket")
    plain = CliRunner().invoke(root, ["boom"], env={"FORMARKET_DEBUG": ""})
    assert plain.exit_code == 70
    assert "internal error: RuntimeError: a bug" in plain.stderr
    debug = CliRunner().invoke(root, ["boom"], env={"FORMARKET_DEBUG": "1"})
    assert isinstance(debug.exception, RuntimeError)
