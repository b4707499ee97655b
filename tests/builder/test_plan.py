"""The build plan and build identity: pure, deterministic, sensitive to every input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.builder.context import BuildContext, ContextEntry
from formarket.builder.plan import BaseRef, PlanError, plan_build
from formarket.formfile.parser import parse_formfile

BUSYBOX = BaseRef(
    name="busybox",
    digest="b" * 64,
    init="shell",
    accounts="busybox",
    package_manager="none",
    path="/usr/bin:/bin",
)
DEBIAN = BUSYBOX.model_copy(
    update={
        "name": "debian:bookworm",
        "digest": "d" * 64,
        "init": "systemd",
        "package_manager": "apt",
    }
)

RECIPE = """\
NAME svc
FROM {base}
COPY ./app /srv/app
{install}RUN echo one > /srv/one
ENV GREETING="hi there"
RUN {last}
EXPOSE 8080
ENTRYPOINT ["sh", "/srv/app/run.sh"]
"""

names = st.text("abcdefgh", min_size=1, max_size=8)
contents = st.binary(max_size=64)
file_sets = st.dictionaries(names, contents, min_size=1, max_size=6)
commands = st.text("abcdefghij xyz=", min_size=1, max_size=30).map(str.strip).filter(bool)


def _context(files: dict[str, bytes]) -> BuildContext:
    import hashlib

    entries = [ContextEntry(path="app", kind="dir", mode=0o755)]
    for name, data in sorted(files.items()):
        entries.append(
            ContextEntry(
                path=f"app/{name}",
                kind="file",
                mode=0o644,
                size=len(data),
                digest=hashlib.sha256(data).hexdigest(),
            )
        )
    return BuildContext(entries=tuple(entries))


def _plan(files: dict[str, bytes], last: str = "true", base: BaseRef = BUSYBOX, install: str = ""):
    text = RECIPE.format(base=base.name, last=last, install=install)
    return plan_build(parse_formfile(text), _context(files), base)


@given(file_sets, commands)
def test_the_same_inputs_give_the_same_build_id(files: dict[str, bytes], last: str) -> None:
    first, second = _plan(files, last), _plan(dict(reversed(files.items())), last)
    assert first.build_id == second.build_id
    assert [s.key for s in first.steps] == [s.key for s in second.steps]


@given(file_sets, st.data())
def test_one_changed_byte_of_a_copied_file_changes_the_build_id(
    files: dict[str, bytes], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(files)))
    original = files[name]
    position = data.draw(st.integers(0, max(len(original) - 1, 0)))
    changed = bytearray(original or b"\0")
    changed[position] ^= data.draw(st.integers(1, 255))
    other = {**files, name: bytes(changed)}
    before, after = _plan(files), _plan(other)
    assert before.build_id != after.build_id
    # COPY is the first step: it and every chained step after it change.
    assert before.steps[0].key != after.steps[0].key


@given(file_sets, commands, commands)
def test_changing_only_the_last_run_changes_only_its_step(
    files: dict[str, bytes], last: str, other: str
) -> None:
    before, after = _plan(files, last), _plan(files, other)
    changed = [a.name for a, b in zip(before.steps, after.steps, strict=True) if a.key != b.key]
    if last == other:
        assert changed == []
        assert before.build_id == after.build_id
    else:
        assert changed == ["04-run"]
        assert before.build_id != after.build_id


def test_the_base_digest_is_part_of_the_identity() -> None:
    files = {"run.sh": b"echo hi"}
    other = BUSYBOX.model_copy(update={"digest": "c" * 64})
    assert _plan(files).build_id != _plan(files, base=other).build_id
    assert all(
        a.key != b.key or a.kind in ("env", "service")
        for a, b in zip(_plan(files).steps, _plan(files, base=other).steps, strict=True)
    )


def test_layout_does_not_change_the_identity() -> None:
    files = {"run.sh": b"echo hi"}
    spaced = RECIPE.format(base="busybox", last="true", install="").replace("\n", "\n\n# note\n")
    plan = plan_build(parse_formfile(spaced), _context(files), BUSYBOX)
    assert plan.build_id == _plan(files).build_id


def test_steps_are_named_in_order_with_passwords_hidden() -> None:
    text = RECIPE.format(base="busybox", last="true", install="").replace(
        "EXPOSE", 'USER username:app passwd:"s3cret word"\nEXPOSE'
    )
    plan = plan_build(parse_formfile(text), _context({"a": b""}), BUSYBOX)
    assert [s.name for s in plan.steps] == [
        "01-copy",
        "02-run",
        "03-env",
        "04-run",
        "05-user",
        "06-service",
    ]
    assert "s3cret" not in plan.model_dump_json()
    assert "********" in plan.steps[4].title


def test_install_runs_apt_with_the_names_as_arguments_and_the_network() -> None:
    plan = _plan({"a": b""}, base=DEBIAN, install="INSTALL python3 ca-certificates\n")
    install = next(s for s in plan.steps if s.kind == "install")
    assert install.network
    argvs = [c.argv for c in install.commands]
    assert (
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "--",
        "python3",
        "ca-certificates",
    ) in argvs
    assert all(not s.network for s in plan.steps if s is not install)


def test_install_on_a_base_without_a_package_manager_is_refused() -> None:
    with pytest.raises(PlanError, match="no package manager"):
        _plan({"a": b""}, install="INSTALL curl\n")


def test_without_copy_the_whole_context_goes_into_workdir() -> None:
    text = "NAME svc\nFROM busybox\nWORKDIR /app\nRUN ls\n"
    plan = plan_build(parse_formfile(text), _context({"x": b"1"}), BUSYBOX)
    assert [s.kind for s in plan.steps] == ["workdir", "copy", "run", "service"]
    copy = plan.steps[1]
    assert {item.dst for item in copy.copies} == {"/app", "/app/app", "/app/app/x"}
    assert plan.steps[2].commands[0].cwd == "/app"


def test_env_scopes_go_to_their_own_files_and_system_env_reaches_run() -> None:
    text = (
        "NAME svc\nFROM busybox\nCOPY ./app /a\nENV A=1\nENV --scope=service:form-app B=2\n"
        "ENV --scope=user:app C='x y'\nRUN env\n"
    )
    plan = plan_build(parse_formfile(text), _context({"x": b""}), BUSYBOX)
    files = {f.path: f.content for s in plan.steps for f in s.files}
    assert "A='1'" in files["/etc/formfile/env"]
    assert "B='2'" in files["/etc/formfile/env.service.form-app"]
    assert "C='x y'" in files["/etc/formfile/env.user.app"]
    run_env = dict(plan.steps[-2].commands[0].env)
    assert run_env["A"] == "1"
    assert "B" not in run_env
    assert "C" not in run_env


def test_the_entrypoint_becomes_a_systemd_unit_on_systemd_bases() -> None:
    plan = _plan({"a": b""}, base=DEBIAN)
    files = {f.path: f for f in plan.steps[-1].files}
    unit = files["/etc/systemd/system/form-app.service"].content
    assert 'ExecStart="sh" "/srv/app/run.sh"' in unit
    assert "Restart=always" in unit
    wants = files["/etc/systemd/system/multi-user.target.wants/form-app.service"]
    assert wants.link == "/etc/systemd/system/form-app.service"
    shell = {f.path: f for f in _plan({"a": b""}).steps[-1].files}
    assert "exec sh /srv/app/run.sh" in shell["/etc/formfile/entrypoint"].content
