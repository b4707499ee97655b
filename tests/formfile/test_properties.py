"""Properties of the Formfile parser and renderer, over generated models and arbitrary text."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formarket.errors import LocatedError
from formarket.formfile.instructions import KEYWORDS
from formarket.formfile.parser import (
    DEFAULT_BASES,
    DEFAULT_GPUS,
    canonical_json,
    check_formfile,
    parse_formfile,
    render_formfile,
)
from formarket.schemas.formfile import (
    ENV_KEY_PATTERN,
    MODEL_ID_PATTERN,
    NAME_PATTERN,
    PACKAGE_PATTERN,
    SERVICE_PATTERN,
    USERNAME_PATTERN,
    CopyStep,
    EnvStep,
    EnvVar,
    Formfile,
    FormfileUser,
    GpuRequest,
    InstallStep,
    RunStep,
    UserStep,
    WorkdirStep,
    raw_text_problem,
    text_problem,
)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters a Formfile may hold, weighted towards the ones its syntax gives meaning to.
_SYNTAX = st.sampled_from(list(" \t\"'\\#:=,/[]{}.-_$"))
_ANY = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"))
_CHAR = st.one_of(_SYNTAX, _ANY, st.sampled_from(list("aZ09")))


def _regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


def _text(min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[str]:
    return st.text(_CHAR, min_size=min_size, max_size=max_size).filter(
        lambda value: text_problem(value) is None
    )


_RAW = _text(1).map(str.strip).filter(lambda value: raw_text_problem(value) is None)
_SEGMENT = _text(1, 8).filter(lambda s: "/" not in s and s not in {".", ".."})
_ABSOLUTE = st.lists(_SEGMENT, max_size=3).map(lambda parts: "/" + "/".join(parts))
_RELATIVE = st.lists(st.one_of(_SEGMENT, st.just(".")), min_size=1, max_size=3).map("/".join)
_WORKDIR = _ABSOLUTE.map(str.strip).filter(lambda path: raw_text_problem(path) is None)
_USERNAME = _regex(USERNAME_PATTERN)
_LIST_ITEM = _text(1, 12).map(str.strip).filter(lambda s: s and "," not in s)


@st.composite
def _users(draw: st.DrawFn) -> tuple[FormfileUser, ...]:
    names = draw(st.lists(_USERNAME, max_size=3, unique=True))
    users = []
    for name in names:
        flags = {
            flag: draw(st.booleans())
            for flag in ("sudo", "lock_passwd", "ssh_pwauth", "disable_root", "chpasswd_expire")
        }
        users.append(
            FormfileUser(
                username=name,
                passwd=draw(_text(1)),
                ssh_authorized_keys=tuple(draw(st.lists(_LIST_ITEM, max_size=2))),
                groups=tuple(draw(st.lists(_USERNAME, max_size=2))),
                shell=draw(st.one_of(st.just("/bin/bash"), _ABSOLUTE)),
                **flags,
            )
        )
    return tuple(users)


_ENV_SCOPE = st.one_of(
    st.just(("system", None)),
    st.tuples(st.just("user"), _USERNAME),
    st.tuples(st.just("service"), _regex(SERVICE_PATTERN)),
)


@st.composite
def _env(draw: st.DrawFn) -> EnvStep:
    scope, name = draw(_ENV_SCOPE)
    keys = draw(st.lists(_regex(ENV_KEY_PATTERN), min_size=1, max_size=3, unique=True))
    variables = tuple(EnvVar(key=key, value=draw(_text())) for key in keys)
    return EnvStep(scope=scope, scope_name=name, variables=variables)


_STEP = st.one_of(
    st.builds(CopyStep, src=_RELATIVE, dst=_ABSOLUTE),
    st.builds(
        InstallStep,
        packages=st.lists(_regex(PACKAGE_PATTERN), min_size=1, max_size=3).map(tuple),
    ),
    st.builds(RunStep, command=_RAW),
    _env(),
)


@st.composite
def formfiles(draw: st.DrawFn) -> Formfile:
    users = draw(_users())
    steps: list[Any] = draw(st.lists(_STEP, max_size=5))
    position = 0
    for user in users:  # USER steps keep the order of `users`
        position = draw(st.integers(position, len(steps)))
        steps.insert(position, UserStep(username=user.username))
        position += 1
    if draw(st.booleans()):
        path = draw(_WORKDIR)
        steps.insert(draw(st.integers(0, len(steps))), WorkdirStep(path=path))
    model_ids = draw(st.lists(_regex(MODEL_ID_PATTERN), max_size=3, unique=True))
    required = draw(st.lists(st.booleans(), min_size=len(model_ids), max_size=len(model_ids)))
    gpus = draw(st.lists(st.sampled_from(sorted(DEFAULT_GPUS)), max_size=2, unique=True))
    return Formfile(
        name=draw(_regex(NAME_PATTERN)),
        description=draw(st.none() | _RAW),
        base=draw(st.none() | st.sampled_from(sorted(DEFAULT_BASES))),
        vcpus=draw(st.integers(1, 128)),
        memory_mib=draw(st.integers(512, 256_000)),
        disk_gib=draw(st.none() | st.integers(5, 65_535)),
        gpus=tuple(GpuRequest(model=gpu, count=draw(st.integers(1, 8))) for gpu in gpus),
        model_required=tuple(m for m, r in zip(model_ids, required, strict=True) if r),
        model_preferred=tuple(m for m, r in zip(model_ids, required, strict=True) if not r),
        users=users,
        steps=tuple(steps),
        entrypoint=draw(
            st.none()
            | st.tuples(_text(1), st.lists(_text(), max_size=3)).map(lambda p: (p[0], *p[1]))
        ),
        expose=tuple(draw(st.lists(st.integers(1, 65_535), max_size=3, unique=True))),
    )


@PROPERTY
@given(formfiles())
def test_render_then_parse_gives_an_equal_model(formfile: Formfile) -> None:
    text = render_formfile(formfile)
    assert parse_formfile(text) == formfile
    assert canonical_json(parse_formfile(text)) == canonical_json(formfile)


def _assert_only_documented_outcomes(text: str) -> None:
    result = check_formfile(text)
    assert (result.formfile is None) == bool(result.errors)
    assert (result.source_map is None) == bool(result.errors)
    try:
        formfile = parse_formfile(text)
    except LocatedError as exc:
        assert result.errors
        assert exc.location == result.errors[0].location
        return
    assert formfile == result.formfile
    # The parser builds the model without validating it again, its own checks being the
    # model's: validating what it holds, all the way down, must give it back.
    assert Formfile.model_validate(formfile.model_dump()) == formfile
    # Whatever parses, renders to text that parses back to the same meaning.
    assert parse_formfile(render_formfile(formfile)) == formfile


@PROPERTY
@given(st.text())
def test_arbitrary_text_gives_a_result_or_a_located_error(text: str) -> None:
    _assert_only_documented_outcomes(text)


@PROPERTY
@given(
    st.binary(),
    st.sampled_from(
        [("utf-8", "surrogateescape"), ("latin-1", "strict"), ("utf-16-le", "replace")]
    ),
)
def test_decoded_bytes_give_a_result_or_a_located_error(
    data: bytes, codec: tuple[str, str]
) -> None:
    # surrogateescape smuggles undecodable bytes in as lone surrogates, as `open(errors=...)` can.
    _assert_only_documented_outcomes(data.decode(*codec))


_KEYWORD = st.sampled_from(sorted(KEYWORDS)).flatmap(
    lambda k: st.sampled_from([k, k.lower(), k.title()])
)
# Lines of valid Formfiles mixed with near-misses, so handlers see both good and broken input.
_VALID_LINE = formfiles().flatmap(lambda f: st.sampled_from(render_formfile(f).splitlines()[1:]))
_FRAGMENT = st.one_of(
    _CHAR,
    st.sampled_from(
        [
            *('""', "''", "--scope=", "user:", "service:", "required:", "preferred:"),
            *("username:", "passwd:", "sudo=", '["', '"]', "[]", "/tcp", " \\", ".."),
            *("$6$", "H100:", "+"),
        ]
    ),
)
_ARGS = st.lists(_FRAGMENT, max_size=12).map("".join)
_LINE = st.one_of(
    st.tuples(_KEYWORD, _ARGS).map(" ".join),
    st.text(_CHAR, max_size=30),
    st.just("\\"),
    _VALID_LINE,
)


@PROPERTY
@given(st.lists(_LINE, max_size=12), st.sampled_from(["\n", "\r\n", " \\\n"]))
def test_instruction_shaped_text_gives_a_result_or_a_located_error(
    lines: list[str], newline: str
) -> None:
    _assert_only_documented_outcomes("NAME fuzz\n" + newline.join(lines))


def _edit(line: str, at: int, how: str, char: str) -> str:
    at %= len(line) + 1
    if how == "insert":
        return line[:at] + char + line[at:]
    return line[:at] + (char if how == "replace" else "") + line[at + 1 :]


def _edited(texts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    how = st.sampled_from(["insert", "replace", "delete"])
    return st.builds(_edit, texts, st.integers(0, 200), how, _CHAR)


# A name that is valid or nearly, and a line of a valid Formfile with one character inserted,
# replaced or removed: many such texts are accepted, each close to what is refused. Lines of
# steps, which have the most rules, come as often as all the others.
_NEAR_NAME = st.one_of(_regex(NAME_PATTERN), _edited(_regex(NAME_PATTERN)))
_STEP_LINE = st.one_of(_STEP, _WORKDIR.map(lambda path: WorkdirStep(path=path))).map(
    lambda step: render_formfile(Formfile(name="n", steps=(step,))).splitlines()[-1]
)
_EDITED_LINE = _edited(st.one_of(_VALID_LINE, _STEP_LINE))


@settings(PROPERTY, max_examples=500)
@given(_NEAR_NAME, _EDITED_LINE)
def test_what_the_parser_accepts_its_models_accept(name: str, line: str) -> None:
    # The parser builds the model without validating it again, so every rule of the model
    # must be one the parser checks itself: `_assert_only_documented_outcomes` validates
    # whatever is accepted anew.
    _assert_only_documented_outcomes(f"NAME {name}\n{line}")


_FILLER = st.sampled_from(["", "   ", "\t", "#", "# a comment", "  # indented \\", "#NAME other"])
_TRAILING = st.sampled_from(["", " ", "\t", "  \t "])


@PROPERTY
@given(formfiles(), st.data())
def test_layout_does_not_change_the_meaning(formfile: Formfile, data: st.DataObject) -> None:
    laid_out = []
    for line in render_formfile(formfile).splitlines():
        laid_out += data.draw(st.lists(_FILLER, max_size=2))
        laid_out.append(line + data.draw(_TRAILING))
    laid_out += data.draw(st.lists(_FILLER, max_size=2))
    assert parse_formfile("\n".join(laid_out)) == formfile


@PROPERTY
@given(formfiles(), st.data())
def test_splitting_a_line_with_a_continuation_keeps_the_meaning(
    formfile: Formfile, data: st.DataObject
) -> None:
    lines = render_formfile(formfile).splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    line = lines[index]
    # A cut is only a continuation where `\` lands after a character other than `\`, and
    # where the next piece is neither blank nor a comment.
    cuts = [
        cut
        for cut in range(1, len(line))
        if line[cut - 1] != "\\" and line[cut:].strip() and not line[cut:].lstrip().startswith("#")
    ]
    if cuts:
        cut = data.draw(st.sampled_from(cuts))
        lines[index : index + 1] = [line[:cut] + "\\", line[cut:]]
    assert parse_formfile("\n".join(lines)) == formfile
