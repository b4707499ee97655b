"""The pure parts: the frame cut from a built page, charts, compatibility, the browser's data."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from formarket.registry.cache import ResultCache
from formarket.registry.compatibility import incompatibilities
from formarket.registry.snapshot import WorkTreeSnapshot
from formarket.registry.validate import validate_snapshot
from formarket.site.catalog import Catalog, Entry, price_label, price_value
from formarket.site.charts import bar_chart, format_amount
from formarket.site.chrome import ChromeError, chrome_from_page, relative_url
from formarket.site.clientdata import SHARD, client_data, deltas, tokens
from formarket.site.compat import compatibility
from formarket.site.facets import entry_facets

from .conftest import ROOT

PAGE = """<html><head><!--fm:meta--><link rel="icon" href="../img/icon.png"><!--/fm:meta-->
<!--fm:title--><title>Models</title><!--/fm:title-->
<link rel="stylesheet" href="../assets/main.css">
<script>__md_scope=new URL("..",location)</script></head><body>
<div data-md-component="skip"><a href="#models" class="md-skip">Skip</a></div>
<div data-md-component="header-topic">
  <span class="md-ellipsis">Models</span></div>
<nav><a href="..">Home</a> <a href="./">Models</a> <a href="../agents/#x">Agents</a>
<a href="https://example.org/">out</a> <a href="#top">top</a></nav>
<!--fm:tocopen--><div hidden><!--/fm:tocopen--><!--fm:toc--><nav>toc</nav><!--/fm:toc--></div>
<article><!--fm:content--><h1 id="models">Models</h1><!--/fm:content--></article>
<script id="__config" type="application/json">{"base": "..", "search": "../w.js"}</script>
<script src="../assets/bundle.js"></script></body></html>"""


def test_relative_url_from_any_depth() -> None:
    assert relative_url(0, "/") == "./"
    assert relative_url(0, "/models/") == "models/"
    assert relative_url(3, "/") == "../../../"
    assert relative_url(2, "/assets/x.css") == "../../assets/x.css"


def test_a_frame_reused_deeper_has_its_urls_rewritten() -> None:
    chrome = chrome_from_page(PAGE, "/models/")

    html = chrome.render(3, {"content": "<h1 id='top'>X</h1>", "skip": "#top", "topic": "X"})

    assert 'href="../../../assets/main.css"' in html
    assert 'href="../../../">Home' in html
    assert 'href="../../../models/">Models' in html
    assert 'href="../../../agents/#x"' in html
    assert 'href="https://example.org/"' in html
    assert 'href="#top">top' in html
    assert 'new URL("../../../",location)' in html
    assert '"base": "../../.."' in html
    assert '"search": "../../../w.js"' in html
    assert 'src="../../../assets/bundle.js"' in html
    assert "<h1 id='top'>X</h1>" in html
    assert 'class="md-skip"' in html
    assert chrome.icon == "/img/icon.png"


def test_a_frame_rendered_at_its_own_depth_keeps_the_page() -> None:
    chrome = chrome_from_page(PAGE, "/models/")

    html = chrome.render(1, {})

    assert 'href="../assets/main.css"' in html
    assert 'href="../models/">Models' in html
    assert '<h1 id="models">Models</h1>' in html
    assert "<title>Models</title>" in html


def test_a_page_without_markers_is_refused() -> None:
    with pytest.raises(ChromeError, match="content"):
        chrome_from_page(PAGE.replace("<!--fm:content-->", ""), "/models/")


def test_chart_is_escaped_and_has_a_bar_per_point() -> None:
    svg = bar_chart(
        [("2026-01", 3), ("<b>", Decimal("1.5"))], title="A <title>", unit="x&y", chart_id="c"
    )

    assert svg.count("<rect") == 2
    assert "<b>" not in svg
    assert "&lt;b&gt;" in svg
    assert "A &lt;title&gt;" in svg
    assert 'aria-labelledby="c-t c-d"' in svg


def test_amounts_read_like_numbers() -> None:
    assert format_amount(1234567) == "1,234,567"
    assert format_amount(Decimal("1234.5")) == "1,234.5"
    assert format_amount(Decimal("0.0040")) == "0.004"


def test_prices_in_a_few_words() -> None:
    per_token = {
        "model": "per_token",
        "currency": "USD",
        "input_per_million": "0.20",
        "output_per_million": "0.60",
    }
    assert price_label(per_token) == "0.2 / 0.6 USD per M tokens"
    assert price_value(per_token) == Decimal("0.20")
    tiers = {"model": "subscription", "currency": "EUR", "tiers": [{"monthly": 9}, {"monthly": 3}]}
    assert price_label(tiers) == "from 3 EUR per month"
    assert price_label({"model": "free"}) == "Free"


def _starter() -> tuple[dict[str, Any], dict[str, Any]]:
    index = validate_snapshot(WorkTreeSnapshot(ROOT), ResultCache(None, "x")).index
    return (
        {k: v.data for k, v in index.agents.items()},
        {k: v.data for k, v in index.models.items()},
    )


def test_compatibility_agrees_with_the_pairwise_rule_on_the_starter_registry() -> None:
    agents, models = _starter()
    compat = compatibility(agents, models)

    for agent_id, agent in agents.items():
        expected = sorted(
            m for m, model in models.items() if not incompatibilities(agent_id, agent, m, model)
        )
        if agent_id in compat.standalone:
            assert not (agent.get("compatibility"))
            assert not ({})
            continue
        assert sorted(compat.models_for(agent_id)) == expected
        assert compat.model_count(agent_id) == len(expected)
        for model_id in models:
            assert compat.fits(agent_id, model_id) is (model_id in expected)
            assert (agent_id in compat.agents_for(model_id)) is (model_id in expected)


_TASKS = st.sampled_from(["chat", "embeddings", "text-generation"])
_CAPS = st.lists(st.sampled_from(["tools", "vision", "long-context"]), unique=True, max_size=3)
_MODEL = st.fixed_dictionaries(
    {"task": _TASKS, "capabilities": _CAPS},
    optional={"context_length": st.sampled_from([2048, 8192, 32768])},
)
_COMPAT = st.fixed_dictionaries(
    {},
    optional={
        "model_tasks": st.lists(_TASKS, unique=True, min_size=1, max_size=2),
        "min_context_length": st.sampled_from([1024, 4096, 16384]),
        "capabilities": _CAPS,
        "requires_model": st.sampled_from(["p/m0", "p/m1", "p/missing"]),
    },
)


@given(st.lists(_MODEL, min_size=1, max_size=6), st.lists(_COMPAT, min_size=1, max_size=5))
def test_grouped_compatibility_equals_every_pair_checked(
    models_data: list[dict[str, Any]], compats: list[dict[str, Any]]
) -> None:
    models = {f"p/m{i}": m for i, m in enumerate(models_data)}
    agents = {f"p/a{i}": {"compatibility": c} for i, c in enumerate(compats)}
    compat = compatibility(agents, models)

    for agent_id, agent in agents.items():
        if agent_id in compat.standalone:
            continue
        for model_id, model in models.items():
            fits = not incompatibilities(agent_id, agent, model_id, model)
            assert compat.fits(agent_id, model_id) is fits
            assert (model_id in compat.models_for(agent_id)) is fits
            assert (agent_id in compat.agents_for(model_id)) is fits


def test_deltas_and_search_words() -> None:
    assert deltas([9, 3, 5]) == [3, 2, 4]
    assert tokens("The Café <b>Chat-8B</b> is a model") == {"cafe", "chat", "8b", "model"}


def _catalog() -> Catalog:
    agents, models = _starter()
    return Catalog(
        models={
            k: Entry("model", k, v, f"registry/models/{k}/listing.yaml")
            for k, v in sorted(models.items())
        },
        agents={
            k: Entry("agent", k, v, f"registry/agents/{k}/listing.yaml")
            for k, v in sorted(agents.items())
        },
    )


def test_client_data_files_refer_to_ordinals_consistently() -> None:
    catalog = _catalog()
    agents = {k: e.data for k, e in catalog.agents.items()}
    models = {k: e.data for k, e in catalog.models.items()}
    data = client_data(catalog, compatibility(agents, models))

    assert data.ranges == {"model": (0, 9), "agent": (9, 16), "solution": (16, 16)}
    records = json.loads(data.files["catalog/records/0.json"])
    assert len(records) == 16 <= SHARD
    ordinal = {row[1]: i for i, row in enumerate(records)}
    terms = json.loads(data.files["catalog/terms/wh.json"])
    name_hits = [sum(terms["whisper"][0][: i + 1]) for i in range(len(terms["whisper"][0]))]
    assert name_hits == [ordinal["lumen-labs/lumen-whisper-small"]]
    task = next(f for f in data.facets["model"] if f.key == "task")
    chat = next(i for i, v in enumerate(task.values) if v.key == "chat")
    posting = json.loads(data.files[f"catalog/postings/model/task/{chat}.json"])
    chat_models = {records[o][1] for o in (sum(posting[: i + 1]) for i in range(len(posting)))}
    assert chat_models == {k for k, m in models.items() if m["task"] == "chat"}
    ids = json.loads(data.files["catalog/ids/tinyforge.json"])
    assert ids["agent:tinyforge/faq-bot"] == ordinal["tinyforge/faq-bot"]


def test_every_listing_has_the_facets_it_can_be_filtered_by() -> None:
    catalog = _catalog()
    coder = catalog.models["northwind-ai/northwind-coder-32b"]

    facets = {(f, k) for f, k, _, _ in entry_facets(coder)}

    assert ("task", "text-generation") in facets
    assert ("gpu", "H100") in facets
    assert ("pricing", "per_instance_hour") in facets
    assert any(f == "price" for f, _ in facets)
    assert any(f == "vcpus" for f, _ in facets)


def test_client_data_fits_in_memory_paths(tmp_path: Path) -> None:
    data = client_data(_catalog(), compatibility({}, {}))

    assert all(not p.startswith("/") and ".." not in p for p in data.files)
