"""A synthetic registry of any size, the same bytes for the same size and seed.

About 85% model and 15% agent listings, each a listing.yaml of about forty lines with a Formfile
on the tiny base and a README, spread over one publisher per fifty listings; a governance file and
a few solutions. Names are chosen so that no two listings look alike (the registry's look-alike
rule would otherwise warn). The registry is written both as a working tree and as a git repository
with one commit on `main`, and a branch `pr` that bumps the version and price of one listing,
authored by that publisher's owner.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from pathlib import Path

from benchmarks.gitwrite import Author, commit_files, write_repository
from benchmarks.harness import run
from formarket.registry.confusables import _one_edit, skeleton

__all__ = ["Synthetic", "generate", "registry_files"]

SOURCE = Path(__file__).resolve().parent.parent
MAINTAINER = "market-steward"
BOT = "formarket-bot"
LISTINGS_PER_PUBLISHER = 50


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_ADJECTIVES = _words(
    "amber azure bold brisk calm cedar civic coral crisp dapper eager early fable fancy "
    "fern frosty gentle golden grand hazel humble ivory jolly keen kind lively lucid "
    "lunar magic merry mighty misty noble ocean opal polar proud quiet rapid regal rosy "
    "rustic sage scarlet silent silver smart solar spry stark steady sunny swift tidal "
    "topaz tranquil urban velvet vivid warm wild windy witty young zesty"
)
_NOUNS = _words(
    "anchor aspen badger beacon bison canyon comet condor cypress delta ember falcon "
    "fjord galaxy garnet geyser glacier harbor heron island jaguar juniper kestrel lagoon "
    "lantern lynx magnet maple meadow mesa nebula orchid osprey otter pebble pine prairie "
    "quartz quasar raven reef ridge river sequoia sparrow summit tundra valley walrus "
    "willow yak zephyr"
)
_TASKS = ("chat", "text-generation", "embeddings", "summarization", "translation", "reranking")
_LICENSES = ("Apache-2.0", "MIT", "BSD-3-Clause", "LicenseRef-synthetic", "proprietary")


@dataclasses.dataclass(frozen=True, slots=True)
class Synthetic:
    """What was generated, and what the benchmarks need to know about it."""

    root: Path
    listings: int
    models: int
    agents: int
    publishers: int
    solutions: int
    files: int
    pr_listing: str
    pr_author: str


def _publisher_names(count: int, rng: random.Random) -> list[str]:
    """`count` publisher names, no two of which are one slip apart."""
    names: list[str] = []
    skeletons: list[str] = []
    combos = [f"{a}-{n}" for a in _ADJECTIVES for n in _NOUNS]
    rng.shuffle(combos)
    suffix = 0
    while len(names) < count:
        for combo in combos:
            name = combo if suffix == 0 else f"{combo}-{suffix}"
            skel = skeleton(name)
            if any(_one_edit(skel, other) for other in skeletons):
                continue
            names.append(name)
            skeletons.append(skel)
            if len(names) == count:
                break
        suffix += 1
    return sorted(names)


def _slug(index: int, rng: random.Random, taken: set[str]) -> str:
    while True:
        slug = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{index}"
        skel = skeleton(slug)
        if skel not in taken:
            taken.add(skel)
            return slug
        index += 100_000  # a look-alike of an earlier slug: try another number


def _resources(rng: random.Random) -> tuple[str, tuple[int, int, int]]:
    vcpus, memory, disk = rng.choice(((1, 512, 5), (1, 1024, 10), (2, 2048, 10), (2, 4096, 20)))
    text = (
        "resources:\n"
        "  minimum:\n"
        f"    vcpus: {vcpus}\n"
        f"    memory_mib: {memory}\n"
        f"    disk_gib: {disk}\n"
        "  recommended:\n"
        f"    vcpus: {vcpus * 2}\n"
        f"    memory_mib: {memory * 4}\n"
        f"    disk_gib: {disk * 2}\n"
    )
    return text, (vcpus * 2, memory * 2, disk)


def pricing_block(kind: str, step: int) -> str:
    """The pricing and monetization of a listing; `step` varies the price (the PR bumps it)."""
    cents = f"0.{10 + step % 80:02d}"
    if kind == "per_token":
        return (
            "pricing:\n  model: per_token\n  currency: USD\n"
            f'  input_per_million: "{cents}"\n  output_per_million: "1.{step % 90:02d}"\n'
            "monetization:\n  metered:\n    - requests\n    - input_tokens\n"
            '    - output_tokens\n  royalty_percent: "70"\n'
        )
    if kind == "per_request":
        return (
            "pricing:\n  model: per_request\n  currency: EUR\n"
            f'  per_request: "0.00{step % 9 + 1}"\n'
            'monetization:\n  metered:\n    - requests\n  royalty_percent: "65.5"\n'
        )
    if kind == "per_instance_hour":
        return (
            "pricing:\n  model: per_instance_hour\n  currency: USD\n"
            f'  per_hour: "{step % 7 + 1}.{step % 100:02d}"\n'
            'monetization:\n  metered:\n    - instance_hours\n  royalty_percent: "80"\n'
        )
    return 'pricing:\n  model: free\nmonetization:\n  royalty_percent: "0"\n'


def _common(ident: str, name: str, version: str, license_id: str, tags: list[str]) -> str:
    publisher, slug = ident.split("/")
    tag_lines = "".join(f"  - {t}\n" for t in tags)
    return (
        f"id: {ident}\n"
        f"name: {name}\n"
        f"version: {version}\n"
        "description: >-\n"
        f"  {name} is a synthetic listing made for benchmarks; it is published by\n"
        f"  {publisher} and is as long as a real listing's description.\n"
        f"license: {license_id}\n"
        f"tags:\n{tag_lines}"
        "links:\n"
        f"  repository: https://git.example.com/{publisher}/{slug}\n"
        f"  homepage: https://{publisher}.example.com/\n"
    )


def _model(ident: str, rng: random.Random, task: str, pricing: str) -> tuple[str, str]:
    name = ident.split("/")[1].replace("-", " ").title()
    version = f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    resources, size = _resources(rng)
    caps = ["chat", "streaming", "tools"] if task in ("chat", "text-generation") else ["streaming"]
    text = (
        _common(ident, name, version, rng.choice(_LICENSES), ["synthetic", task])
        + resources
        + pricing
        + "kind: model\n"
        + f"task: {task}\n"
        + "capabilities:\n"
        + "".join(f"  - {c}\n" for c in caps)
        + f"parameters: {rng.randint(1, 70)}000000000\n"
        + "architecture: llama\n"
        + f"quantization: {rng.choice(('none', 'q4_k_m', 'int8', 'bf16'))}\n"
        + f"context_length: {rng.choice((4096, 8192, 32768))}\n"
        + "languages:\n  - en\n  - fr\n"
    )
    return text, _formfile(ident, size)


def _agent(
    ident: str, rng: random.Random, preferred: str, pricing: str, settings: bool
) -> tuple[str, str]:
    name = ident.split("/")[1].replace("-", " ").title()
    version = f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}"
    resources, size = _resources(rng)
    schema = (
        "settings_schema:\n  type: object\n  properties:\n    temperature:\n"
        "      type: number\n  additionalProperties: false\n"
        if settings
        else ""
    )
    text = (
        _common(ident, name, version, rng.choice(_LICENSES), ["synthetic", "agent"])
        + resources
        + pricing
        + "kind: agent\n"
        + f"agent_type: {rng.choice(('assistant', 'research', 'coding', 'workflow'))}\n"
        + f"framework: {rng.choice(('langgraph', 'crewai', 'custom'))}\n"
        + "runtime: python\n"
        + "tools:\n  - name: web_search\n    description: Searches the web.\n"
        + "permissions:\n  internet: true\n"
        + "compatibility:\n  model_tasks:\n    - chat\n    - text-generation\n"
        + "  capabilities:\n    - chat\n"
        + f"preferred_models:\n  - {preferred}\n"
        + schema
    )
    return text, _formfile(ident, size)


def _formfile(ident: str, size: tuple[int, int, int]) -> str:
    vcpus, memory, disk = size
    return (
        f"NAME {ident.split('/')[1]}\n"
        "FROM busybox\n"
        f"VCPU {vcpus}\n"
        f"MEMORY {memory}\n"
        f"DISK {disk}\n"
        'ENV GREETING="hello from a synthetic listing"\n'
        "EXPOSE 8080\n"
        "ENTRYPOINT httpd -f -p 8080 -h /srv/www\n"
    )


def _readme(ident: str) -> str:
    return (
        f"# {ident}\n\nA synthetic listing, generated for benchmarks.\n\n"
        "## Use\n\nDeploy it with `formarket deploy` and call it through the gateway.\n"
    )


def registry_files(listings: int, seed: int = 2024) -> tuple[dict[str, bytes], Synthetic]:
    """Every file of the registry (without schemas/ and builder/), and what it holds."""
    rng = random.Random(seed)
    publishers = _publisher_names(max(2, round(listings / LISTINGS_PER_PUBLISHER)), rng)
    agents = max(1, round(listings * 0.15))
    models = listings - agents
    files: dict[str, str] = {
        "registry/governance.yaml": f"maintainers:\n  - {MAINTAINER}\nbot: {BOT}\n",
        "README.md": "# A synthetic formarket registry, for benchmarks\n",
    }
    for pub in publishers:
        files[f"registry/publishers/{pub}.yaml"] = (
            f"id: {pub}\nname: {pub.replace('-', ' ').title()}\nowners:\n  - {pub}-owner\n"
            f"email: team@{pub}.example.com\nwebsite: https://{pub}.example.com/\n"
            f"payout:\n  method: stripe-connect\n  reference: acct-{pub}\n"
        )
    taken: set[str] = set()
    chat_models: list[str] = []
    pricings = ("per_token", "per_token", "per_request", "per_instance_hour", "free")
    pr_listing = ""
    for i in range(models):
        ident = f"{publishers[i % len(publishers)]}/{_slug(i, rng, taken)}"
        task = _TASKS[i % len(_TASKS)]
        price = "per_token" if i == models // 2 else pricings[i % len(pricings)]
        text, formfile = _model(ident, rng, task, pricing_block(price, i))
        folder = f"registry/models/{ident}"
        files[f"{folder}/listing.yaml"] = text
        files[f"{folder}/Formfile"] = formfile
        files[f"{folder}/README.md"] = _readme(ident)
        if task in ("chat", "text-generation"):
            chat_models.append(ident)
        if i == models // 2:
            pr_listing = ident
    with_settings: list[str] = []
    for j in range(agents):
        i = models + j
        ident = f"{publishers[i % len(publishers)]}/{_slug(i, rng, taken)}"
        settings = j % 10 == 0
        text, formfile = _agent(
            ident,
            rng,
            chat_models[j % len(chat_models)],
            pricing_block(pricings[j % 5], i),
            settings,
        )
        folder = f"registry/agents/{ident}"
        files[f"{folder}/listing.yaml"] = text
        files[f"{folder}/Formfile"] = formfile
        files[f"{folder}/README.md"] = _readme(ident)
        if settings:
            with_settings.append(ident)
    solutions = with_settings[: max(3, listings // 1000)]
    for k, agent in enumerate(solutions):
        pub = agent.split("/")[0]
        model = chat_models[(k * 7) % len(chat_models)]
        files[f"registry/solutions/{pub}/solution-{k}.yaml"] = (
            f"id: {pub}/solution-{k}\nname: Solution {k}\nversion: 1.0.0\n"
            "description: An agent and a model that work well together.\n"
            f"agent:\n  id: {agent}\nmodel:\n  id: {model}\n"
            "settings:\n  temperature: 0.2\ntags:\n  - synthetic\n"
        )
    owner = f"{pr_listing.split('/')[0]}-owner"
    info = Synthetic(
        Path(),
        listings,
        models,
        agents,
        len(publishers),
        len(solutions),
        len(files),
        pr_listing,
        owner,
    )
    return {path: text.encode() for path, text in files.items()}, info


def pr_change(listing_yaml: bytes) -> bytes:
    """The listing as the pull request leaves it: a new minor version and a new price."""
    lines = listing_yaml.decode().splitlines(keepends=True)
    out: list[str] = []
    for line in lines:
        if line.startswith("version: "):
            major, minor, _ = line.removeprefix("version: ").strip().split(".")
            line = f"version: {major}.{int(minor) + 1}.0\n"
        elif line.startswith("  input_per_million: "):
            line = '  input_per_million: "0.95"\n'
        out.append(line)
    changed = "".join(out).encode()
    assert changed != listing_yaml, "the pull request must change the listing"
    return changed


def _contract_files() -> dict[str, bytes]:
    """schemas/ and builder/bases/ of this checkout, which the registry is checked against."""
    out: dict[str, bytes] = {}
    for folder in ("schemas", "builder/bases"):
        base = SOURCE / folder
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[path.relative_to(SOURCE).as_posix()] = path.read_bytes()
    return out


def generate(root: Path, listings: int, seed: int = 2024) -> Synthetic:
    """Write the registry at `root` (which must not exist): a working tree and its git
    repository, `main` with everything and `pr` changing one listing."""
    if root.exists():
        shutil.rmtree(root)
    files, info = registry_files(listings, seed)
    files.update(_contract_files())
    for path, content in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    maintainer = Author(MAINTAINER, f"{MAINTAINER}@users.noreply.example.com")
    repo = write_repository(root, files, "Synthetic registry for benchmarks", maintainer)
    listing_path = f"registry/models/{info.pr_listing}/listing.yaml"
    author = Author(info.pr_author, f"{info.pr_author}@users.noreply.example.com")
    commit_files(
        repo,
        "main",
        "pr",
        {listing_path: pr_change(files[listing_path])},
        f"Bump {info.pr_listing}",
        author,
    )
    repo.close()
    # An index that matches main, so that `git status` in the registry is clean.
    run(["git", "-C", str(root), "reset", "-q"])
    return dataclasses.replace(info, root=root, files=len(files))
