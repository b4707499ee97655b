"""The reverse-dependency check as a pure function, against an oracle: for any versions a
model has published, any marks on them and any pin a solution holds, the findings are exactly
what the lifecycle's rules say."""

from __future__ import annotations

import yaml
from hypothesis import given
from hypothesis import strategies as st

from formarket.registry.history import VersionHistory
from formarket.registry.index import RegistryIndex, Summary
from formarket.registry.lifecycle import dependent_findings, mark_findings, version_key

MODEL, AGENT, SOLUTION = "acme/m", "acme/a", "acme/s"
MODEL_PATH = "registry/models/acme/m/listing.yaml"
SOLUTION_PATH = "registry/solutions/acme/s.yaml"
AGENT_PATH = "registry/agents/acme/a/listing.yaml"
VERSIONS = ("0.9.0", "1.0.0", "1.0.1-rc.1", "1.0.1", "1.1.0", "2.0.0")


def _model(version: str, fits: bool, marks: dict[str, dict[str, str]]) -> dict[str, object]:
    return {
        "id": MODEL,
        "version": version,
        "task": "chat" if fits else "embeddings",
        "version_marks": marks,
    }


@st.composite
def _cases(draw: st.DrawFn) -> tuple[list[str], str, set[str], dict[str, str], str | None]:
    published = sorted(draw(st.sets(st.sampled_from(VERSIONS), min_size=1)), key=version_key)
    current = published[-1]
    unfit = draw(st.sets(st.sampled_from(published)))
    marks = draw(
        st.dictionaries(st.sampled_from(published), st.sampled_from(["deprecated", "yanked"]))
    )
    pin = draw(st.none() | st.sampled_from(VERSIONS))
    return published, current, unfit, marks, pin


@given(_cases())
def test_findings_match_the_oracle(
    case: tuple[list[str], str, set[str], dict[str, str], str | None],
) -> None:
    published, current, unfit, marks, pin = case
    mark_docs = {v: {"status": s, "message": f"why {v}"} for v, s in marks.items()}
    history = VersionHistory(
        {f"{MODEL}@{v}": ("digest", f"commit-{v}") for v in published[:-1]}, {}
    )
    older = {
        f"commit-{v}": yaml.safe_dump(_model(v, v not in unfit, {})).encode() for v in published
    }
    agent = {
        "id": AGENT,
        "version": "1.0.0",
        "compatibility": {"model_tasks": ["chat"]},
        "preferred_models": [MODEL],
    }
    model_ref: dict[str, str] = {"id": MODEL, **({"version": pin} if pin else {})}
    index = RegistryIndex.build(
        [
            Summary(
                "model", MODEL, MODEL_PATH, True, _model(current, current not in unfit, mark_docs)
            ),
            Summary("agent", AGENT, AGENT_PATH, True, agent),
            Summary(
                "solution",
                SOLUTION,
                SOLUTION_PATH,
                True,
                {"id": SOLUTION, "version": "1.0.0", "agent": {"id": AGENT}, "model": model_ref},
            ),
        ]
    )

    found = dependent_findings({MODEL}, index, history, lambda c, _p: older.get(c))
    got = {(f.path, f.code) for f in found}

    deployable = [v for v in published if marks.get(v) != "yanked"]
    expected: set[tuple[str, str]] = set()
    if not deployable:
        expected.add((AGENT_PATH, "REG031"))
    elif deployable[-1] in unfit:
        expected.add((AGENT_PATH, "REG032"))
    resolved = None
    if pin is None:
        if deployable:
            resolved = deployable[-1]
        else:
            expected.add((SOLUTION_PATH, "REG031"))
    elif pin not in published:
        if version_key(pin) < version_key(current):
            expected.add((SOLUTION_PATH, "REG031"))
    elif marks.get(pin) == "yanked":
        expected.add((SOLUTION_PATH, "REG031"))
    else:
        resolved = pin
        if marks.get(pin) == "deprecated":
            expected.add((SOLUTION_PATH, "REG034"))
    if resolved is not None and resolved in unfit and resolved != current:
        expected.add((SOLUTION_PATH, "REG032"))
    if pin is not None and resolved is not None:
        newer = [v for v in deployable if version_key(v) > version_key(pin)]
        if any(v not in unfit for v in newer):
            expected.add((SOLUTION_PATH, "REG033"))
    assert got == expected


@given(
    published=st.sets(st.sampled_from(VERSIONS), min_size=1),
    marked=st.sets(st.sampled_from(VERSIONS)),
)
def test_a_mark_on_a_version_never_published_is_refused(
    published: set[str], marked: set[str]
) -> None:
    ordered = sorted(published, key=version_key)
    history = VersionHistory({f"{MODEL}@{v}": ("d", "c") for v in ordered[:-1]}, {})
    marks = {v: {"status": "yanked", "message": "m"} for v in marked}
    index = RegistryIndex.build(
        [Summary("model", MODEL, MODEL_PATH, True, _model(ordered[-1], True, marks))]
    )
    found = mark_findings({MODEL}, index, history)
    assert {f.where[1] for f in found} == marked - published
    assert all(f.code == "REG030" for f in found)
