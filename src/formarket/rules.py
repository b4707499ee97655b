"""Every diagnostic code of formarket, in one table: its id, severity, title, why it exists,
an example that breaks it and the fix.

    REG  registry rules    `formarket validate`, `formarket check`   an error blocks a pull request
    FF   Formfile errors   `formarket formfile parse`, builds, REG008   an error blocks the build
    USG  usage set aside   `formarket royalties close`   the usage is not counted, stays in git

Ids are stable forever: tests, tools and old reports match on them. A new code takes the next
number of its family; a code that is withdrawn moves to `RETIRED` and its id is never given
again. `formarket rules` and docs/rules.md are made from this table; the registry's `RULES`, the
Formfile parser's `FormfileCode` and the usage reader's `CODES` are views of it.

The module is data, which is why it is long, and imports nothing: `formarket validate` loads it
on every run.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = ["FAMILIES", "RETIRED", "RULES", "Family", "Rule", "Severity", "rules_of"]


class Severity(StrEnum):
    ERROR = "error"  # blocks: the pull request (REG), the build and the listing's check (FF)
    WARNING = "warning"  # advises; never blocks
    SET_ASIDE = "set-aside"  # usage that is not counted, and stays in git as it was


# Named tuples rather than dataclasses: `formarket validate` loads this table on every run, and
# making one dataclass takes longer than making the whole table of tuples.
class Family(NamedTuple):
    prefix: str
    title: str
    raised_by: str
    severities: str  # what each severity does in this family


class Rule(NamedTuple):
    id: str
    severity: Severity
    title: str
    explanation: str
    example: str
    fix: str
    # The name code uses for the rule, where a family names its codes (`FormfileCode.<name>`).
    name: str = ""
    # Where the family's commands do not all raise it.
    raised_by: str = ""

    @property
    def family(self) -> str:
        return self.id.rstrip("0123456789")


def _lines(*lines: str) -> str:
    return "\n".join(lines)


FAMILIES: tuple[Family, ...] = (
    Family(
        "REG",
        "Registry rules",
        "`formarket validate` (a working tree) and `formarket check` (a pull request: what it"
        " changes); CI runs both on every pull request",
        "An error blocks the pull request; a warning is shown and advises.",
    ),
    Family(
        "FF",
        "Formfile errors",
        "`formarket formfile parse`, `formarket build`, and the registry's checks, which report"
        " each as REG008 with the FF code in the message",
        "An error blocks: the Formfile is not built, and its listing does not pass the registry"
        " check. Every error is reported, with line and column, not only the first.",
    ),
    Family(
        "USG",
        "Usage set aside",
        "`formarket royalties close` (and `preview` and `verify`), reading registry/usage/",
        "Set aside: the line or file is not counted, so nobody is charged for it and it earns"
        " no royalty. It stays in git as it was, and the close lists it with its file and line"
        " in royalties/YYYY-MM/summary.json and README.md; the good lines around it still"
        " count. A file rewritten or deleted after a close read it (USG015, USG016) is"
        " reported the same way, and what that close counted stays counted; so is a closed period"
        " changed after its close (USG019), which also stops the next close until restored.",
    ),
)

_REGISTRY: tuple[Rule, ...] = (
    Rule(
        "REG001",
        Severity.ERROR,
        "document does not match its JSON Schema",
        "Every registry document (listing.yaml, a publisher, a solution) is checked against"
        " its JSON Schema in schemas/, generated from formarket's models, and then against the"
        " model itself: unknown fields (with a did-you-mean), missing fields, wrong types,"
        " values out of range, text that breaks a pattern. The schema is the registry's"
        " contract: the site, the builder, the farm and the royalty close all read these"
        " fields, and a document they cannot read would break them after it is merged.\n\n"
        'Money is a quoted decimal string ("0.10"), never a number: a float\'s binary'
        " rounding would change what is charged. A currency is an ISO 4217 code (USD), a"
        " version is semver (1.0.0), `royalty_percent` lies from 0 to 100, and `readme` and"
        " `formfile` are paths inside the listing's folder. Editors that read JSON Schema"
        " (yaml-language-server) check these as you type.",
        _lines(
            "# registry/models/acme/tiny-llm/listing.yaml",
            'version: "1.0"',
            "pricing: {model: per_request, currency: usd, per_request: 0.10}",
        ),
        _lines(
            "version: 1.0.0",
            'pricing: {model: per_request, currency: USD, per_request: "0.10"}',
        ),
    ),
    Rule(
        "REG002",
        Severity.ERROR,
        "file cannot be read as YAML data",
        "Registry files come from anyone who opens a pull request, so they are read as plain"
        " data and refused, with line and column, when they are not: not UTF-8 or holding"
        " control characters, over 1 MiB, a YAML syntax error, more than one document, tags"
        " (`!!python/object`, custom tags), merge keys (`<<`), duplicate keys, keys that are"
        " not strings, nesting deeper than 64, or aliases that expand past a budget (the"
        ' "billion laughs"). Each is a way for a file to mean different things to different'
        " readers, or to make reading it dangerous or slow: a duplicate key keeps the first"
        " value in one parser and the last in another. The message ends with the reader's own"
        " code (YAML001 to YAML008).",
        _lines(
            "# registry/models/acme/tiny-llm/listing.yaml",
            "name: Tiny LLM",
            "name: Tiny LLM 2",
        ),
        _lines("name: Tiny LLM 2"),
    ),
    Rule(
        "REG003",
        Severity.ERROR,
        "id does not match the file's path",
        "A listing's id is `<publisher>/<slug>` and its folder is"
        " `registry/models/<publisher>/<slug>/` (or agents/); a solution's id matches"
        " `registry/solutions/<publisher>/<slug>.yaml`; a publisher's id is its file's name."
        " The path decides who may change a document (ownership goes by the publisher's"
        " folder) and the id is what users, deployments and usage refer to: if they could"
        " differ, a publisher could publish under another's name from its own folder.",
        _lines("# registry/models/acme/tiny-llm/listing.yaml", "id: acme/huge-llm"),
        _lines(
            "id: acme/tiny-llm",
            "# or move the folder to registry/models/acme/huge-llm/",
        ),
    ),
    Rule(
        "REG004",
        Severity.ERROR,
        "id is not unique",
        "Models and agents share one space of ids: a solution, a deployment, a usage event"
        " and a royalty statement name a listing by its id alone. If acme/tiny-llm were both"
        " a model and an agent, a deployment or a charge could go to the wrong one. The"
        " finding is reported on the agent.",
        _lines(
            "registry/models/acme/tiny-llm/listing.yaml    id: acme/tiny-llm",
            "registry/agents/acme/tiny-llm/listing.yaml    id: acme/tiny-llm",
        ),
        _lines(
            "registry/models/acme/tiny-llm/listing.yaml    id: acme/tiny-llm",
            "registry/agents/acme/tiny-agent/listing.yaml  id: acme/tiny-agent",
        ),
    ),
    Rule(
        "REG005",
        Severity.ERROR,
        "publisher is not registered",
        "Every listing and solution belongs to the publisher named by the first part of its"
        " id, and that publisher needs `registry/publishers/<publisher>.yaml`: the file names"
        " the owners who may change its listings (the pull-request check reads it) and says"
        " where its royalties are paid. A listing without one would have nobody to own it"
        " and nobody to pay. Add the publisher file in the same pull request.",
        _lines("# registry/models/ghost/phantom/listing.yaml", "id: ghost/phantom"),
        _lines(
            "# registry/publishers/ghost.yaml",
            "id: ghost",
            "name: Ghost Models",
            "owners: [ghost-dev]",
        ),
    ),
    Rule(
        "REG006",
        Severity.ERROR,
        "reference does not resolve",
        "A reference names a listing that is not there: an agent's"
        " `compatibility.requires_model` that is not a model listing, a solution's `agent.id`"
        " or `model.id` that is not an agent or a model listing, or a solution that pins a"
        " `version` newer than the listing's newest. Deployments start what solutions and"
        " agents name, so a dangling reference would otherwise be found only when someone"
        " tries to deploy it.",
        _lines(
            "# registry/solutions/acme/helper-with-tiny.yaml",
            "agent: {id: acme/nobody}",
            "model: {id: acme/tiny-llm, version: 2.0.0}   # the newest is 1.0.0",
        ),
        _lines(
            "agent: {id: acme/helper-agent}",
            "model: {id: acme/tiny-llm, version: 1.0.0}",
        ),
    ),
    Rule(
        "REG007",
        Severity.ERROR,
        "agent and model are not compatible",
        "A solution pairs an agent with a model, and the model must satisfy the agent's"
        " `compatibility`: it is the `requires_model`, if the agent names one; its `task` is"
        " one of `model_tasks`; its `context_length` is at least `min_context_length`; it has"
        " every one of `capabilities`. Also reported: an agent whose `preferred_models` names"
        " a model other than its `requires_model`. Otherwise the farm would deploy a pair"
        " that cannot work, and its users would pay for it. A solution that pins an older"
        " version is judged at that version by the pull-request check (REG032).",
        _lines(
            "# registry/agents/acme/helper-agent/listing.yaml",
            "compatibility: {min_context_length: 2048}",
            "# registry/models/acme/tiny-llm/listing.yaml",
            "context_length: 1024",
            "# registry/solutions/acme/helper-with-tiny.yaml",
            "model: {id: acme/tiny-llm}",
        ),
        _lines(
            "# registry/solutions/acme/helper-with-tiny.yaml: a model with the context",
            "model: {id: acme/long-llm}",
        ),
    ),
    Rule(
        "REG008",
        Severity.ERROR,
        "Formfile is missing or does not parse",
        "Every listing is built from its Formfile (the `formfile` field, Formfile by default,"
        " in the listing's folder), and a listing that cannot be built cannot be deployed. A"
        " missing Formfile, one that is not UTF-8, or one with any Formfile error is reported"
        " here, at the Formfile's own line, with the FF code in the message: `formarket rules"
        " FF001` explains each. FROM and GPU are checked against the farm's bases"
        " (builder/bases/) and GPU models, so a base the farm does not have fails here rather"
        " than at build time.",
        _lines(
            "# registry/models/acme/tiny-llm/Formfile",
            "NAME tiny-llm",
            "FROM busybox",
            "MEMROY 512",
        ),
        _lines("NAME tiny-llm", "FROM busybox", "MEMORY 512"),
    ),
    Rule(
        "REG009",
        Severity.ERROR,
        "Formfile disagrees with the listing",
        "The listing is what users read and pay for; the Formfile is what the farm boots."
        " They must say the same: VCPU, MEMORY and DISK lie between `resources.minimum` and"
        " `resources.recommended` (which defaults to the minimum); the GPU lines give at least"
        " the GPUs of `resources.minimum.gpu`, and none when the listing needs none; an"
        " agent's `MODEL required:<id>` is its `compatibility.requires_model`; a model listing"
        " has no MODEL line.",
        _lines(
            "# listing.yaml",
            "resources:",
            "  minimum: {vcpus: 1, memory_mib: 512, disk_gib: 5}",
            "  recommended: {vcpus: 2, memory_mib: 1024, disk_gib: 5}",
            "# Formfile",
            "VCPU 8",
        ),
        _lines("# Formfile", "VCPU 2"),
    ),
    Rule(
        "REG010",
        Severity.ERROR,
        "README is missing",
        "The README (the `readme` field, README.md by default, in the listing's folder) is the"
        " listing's page on the site: what it does, how to use it, what it cannot do. Users"
        " cannot judge a listing without one.",
        _lines(
            "registry/models/acme/tiny-llm/listing.yaml",
            "registry/models/acme/tiny-llm/Formfile",
        ),
        _lines(
            "registry/models/acme/tiny-llm/listing.yaml",
            "registry/models/acme/tiny-llm/Formfile",
            "registry/models/acme/tiny-llm/README.md",
        ),
    ),
    Rule(
        "REG011",
        Severity.ERROR,
        "a published version was rewritten",
        "Once a version is on the main branch it is published: deployments run it, usage is"
        " charged at its price and royalty, and statements cite it. Any change to what is"
        " built or sold (listing.yaml, the Formfile, files the Formfile copies, a solution)"
        " needs a new `version`; a README fix does not, unless the Formfile copies the README"
        " into the image. A version is compared with its first publication in the main"
        " branch's history, so a listing withdrawn and added again, or a version rewritten"
        " earlier, comes back only with its first content. Otherwise one version would mean"
        " two different things, and past charges could no longer be checked against it.",
        _lines(
            "# listing.yaml, published as 1.0.0",
            "version: 1.0.0",
            'monetization: {metered: [requests], royalty_percent: "99"}   # was "70"',
        ),
        _lines(
            "version: 1.0.1",
            'monetization: {metered: [requests], royalty_percent: "99"}',
        ),
        raised_by="`formarket check` only: it compares the pull request with its base",
    ),
    Rule(
        "REG012",
        Severity.ERROR,
        "version does not increase",
        "Versions only go up, by semver precedence (a pre-release such as 1.1.0-rc.1 comes"
        " before 1.1.0). Deployments follow the newest version and royalty statements name"
        " each version they charged for; going back would make an old number stand for new"
        " content.",
        _lines("# listing.yaml, published as 1.0.0", "version: 0.9.0"),
        _lines("version: 1.0.1"),
        raised_by="`formarket check` only: it compares the pull request with its base",
    ),
    Rule(
        "REG013",
        Severity.WARNING,
        "pricing looks wrong",
        "Prices that are almost always a slip: both token prices zero (write `model: free`);"
        " a price far above the usual, more than 10 per request, 1,000 per million tokens or"
        " 500 per instance hour (is the decimal point in the right place?); a free listing"
        " with a `royalty_percent` above 0. The royalty is the publisher's share of what the"
        " listing earns, the platform keeping the rest, and a free listing earns nothing. A"
        " warning, because the price may be what you mean.",
        _lines("pricing: {model: free}", 'monetization: {royalty_percent: "30"}'),
        _lines("pricing: {model: free}", 'monetization: {royalty_percent: "0"}'),
    ),
    Rule(
        "REG014",
        Severity.ERROR,
        "pricing charges for a metric that is not metered",
        "`monetization.metered` says what is recorded for every call of the listing, and a"
        " price may charge only for what is recorded: `per_token` needs `input_tokens` and"
        " `output_tokens`, `per_request` and `subscription` need `requests`,"
        " `per_instance_hour` needs `instance_hours`. A charge must be something a user can"
        " check against recorded usage.",
        _lines(
            "pricing:",
            "  model: per_token",
            "  currency: EUR",
            '  input_per_million: "1"',
            '  output_per_million: "2"',
            "monetization:",
            "  metered: [requests]",
        ),
        _lines("monetization:", "  metered: [requests, input_tokens, output_tokens]"),
    ),
    Rule(
        "REG015",
        Severity.WARNING,
        "name is confusingly close to another listing's",
        "Two listings whose slugs look alike (once case, separators and look-alike letters"
        " such as rn and m, vv and w, cl and d, 0 and o, 1, i and l, 5 and s are folded),"
        " under the same publisher or under publishers whose names are one slip apart"
        " (acme, acrne), are each reported. Look-alike names are how users are led to deploy"
        " and pay for the wrong listing. A warning: the maintainers who review the pull"
        " request decide.",
        _lines(
            "registry/models/acme/tiny-llm/     (listed)",
            "registry/models/acrne/tiny-llm/    (new)",
        ),
        _lines("registry/models/acrne/pocket-llm/  (a name of its own)"),
    ),
    Rule(
        "REG016",
        Severity.ERROR,
        "change to a publisher the author does not own",
        "A pull request may change only the listings, solutions and publisher file of"
        " publishers whose `owners` include its author, as the publisher file stands on the"
        " base branch: adding yourself as an owner and using it in the same pull request does"
        " not work. A listing added under a new publisher whose file does not name the author"
        " is reported here too. When the publisher file is invalid or gone on the base, its"
        " owners are those of its last valid version in history; a publisher file that never"
        " was valid may be changed by maintainers only. Maintainers may change anything.",
        _lines(
            "# registry/publishers/acme.yaml on the base branch",
            "owners: [acme-dev]",
            "# a pull request by zeta-dev changes",
            "registry/models/acme/tiny-llm/README.md",
        ),
        _lines(
            "# first, a pull request of its own, by an owner, merged:",
            "owners: [acme-dev, zeta-dev]",
        ),
        raised_by="`formarket check` only: it knows the pull request's author",
    ),
    Rule(
        "REG017",
        Severity.ERROR,
        "change to a path only the bot may write",
        "registry/deployments/, registry/usage/ and royalties/ (but for royalties/policy.yaml,"
        " which is the maintainers') are written only by the farm's bot, the `bot` of"
        " registry/governance.yaml: desired deployments, metered usage and closed royalty"
        " periods. A change there by anyone else could forge a deployment, a charge or a"
        " payout. Ask for a deployment with `formarket deploy` or a deployment issue.",
        _lines(
            "# a pull request by acme-dev adds",
            "registry/usage/2026/03/10/gateway/gw-1-000009.jsonl.gz",
        ),
        _lines("formarket deploy acme/helper-agent --model acme/tiny-llm"),
        raised_by="`formarket check` only: it knows the pull request's author",
    ),
    Rule(
        "REG018",
        Severity.ERROR,
        "change to a path only maintainers may write",
        "Everything outside the publishers' own files and the bot's paths belongs to the"
        " maintainers (`maintainers` in registry/governance.yaml): governance.yaml itself,"
        " schemas/, builder/, .github/, royalties/policy.yaml, the docs. These set the rules"
        " every pull request is checked by, the bases images are built from and the"
        " platform's terms, so a publisher's pull request may not touch them.",
        _lines("# a pull request by acme-dev changes", "builder/bases/busybox.yaml"),
        _lines(
            "# open an issue for the maintainers, or send the base change as its own pull",
            "# request for them to review and merge",
        ),
        raised_by="`formarket check` only: it knows the pull request's author",
    ),
    Rule(
        "REG019",
        Severity.ERROR,
        "new publisher does not name its author as owner",
        "Anyone may register a publisher, but its file's `owners` must include the author of"
        " the pull request that adds it. Otherwise a publisher could be registered in someone"
        " else's name, taking a name its owners never asked for and listings they never made.",
        _lines(
            "# a pull request by mallory adds registry/publishers/newco.yaml",
            "id: newco",
            "name: NewCo",
            "owners: [victim]",
        ),
        _lines("owners: [mallory]"),
        raised_by="`formarket check` only: it knows the pull request's author",
    ),
    Rule(
        "REG020",
        Severity.ERROR,
        "file is not where the registry layout allows",
        "registry/ has a fixed layout (registry/README.md draws it): governance.yaml,"
        " README.md, `publishers/<publisher>.yaml`, `models/<publisher>/<slug>/` and"
        " `agents/<publisher>/<slug>/` with listing.yaml and the listing's files,"
        " `solutions/<publisher>/<slug>.yaml`, and the bot's deployments/ and usage/. Anything"
        " else is reported: a stray file, a listing folder without listing.yaml, a publisher"
        " file that is not .yaml, a link where a document should be. Nothing would read it,"
        " so a misplaced listing would silently not be published, and ownership is decided"
        " by path.",
        _lines("registry/models/acme/notes.txt"),
        _lines("registry/models/acme/tiny-llm/README.md   (notes belong in a README)"),
    ),
    Rule(
        "REG021",
        Severity.WARNING,
        "license is not a known SPDX identifier",
        "`license` is an SPDX identifier spelled exactly (Apache-2.0, MIT, CC-BY-4.0),"
        " `LicenseRef-<name>` for a license of your own, or `proprietary`. Users filter and"
        " decide by license, and tools recognise only the exact spelling. The list of"
        " identifiers ships with formarket; the hint gives the right spelling.",
        _lines("license: apache-2.0"),
        _lines("license: Apache-2.0"),
    ),
    Rule(
        "REG022",
        Severity.ERROR,
        "settings schema is not a valid JSON Schema",
        "A listing's `settings_schema` says which settings a deployment may give it (an"
        " agent's options; a model's context length or parallel requests). It must be a valid"
        " JSON Schema whose `type` is `object`, as settings are a mapping of names. Solutions"
        " and deployments are checked against it (REG023), and a broken schema would accept"
        " or refuse settings by accident.",
        _lines("settings_schema: {type: 12}"),
        _lines(
            "settings_schema:",
            "  type: object",
            "  properties:",
            "    temperature: {type: number, minimum: 0, maximum: 2}",
            "  additionalProperties: false",
        ),
    ),
    Rule(
        "REG023",
        Severity.ERROR,
        "settings do not match the agent's settings schema",
        "A solution's `settings` are given to the agent when it is deployed. They must be"
        " valid against the agent's `settings_schema`, and an agent without one takes no"
        " settings. Otherwise the agent would start with settings it does not understand, or"
        " with values it never meant to accept.",
        _lines(
            "# the agent: temperature from 0 to 2, nothing else",
            "settings: {temperature: 9, shell: rm -rf /}",
        ),
        _lines("settings: {temperature: 0.2}"),
    ),
    Rule(
        "REG024",
        Severity.ERROR,
        "unsafe file in a listing (link, or too large)",
        "A listing's folder is its build context: the Formfile COPYs from it into the image."
        " Links and other special files are refused, because they could point outside the"
        " folder at the build machine's own files. Files over 10 MiB are refused, because"
        " weights and other large data do not belong in git: list them under `weights` with"
        " their URL, SHA-256 and size, and the builder downloads and verifies them.",
        _lines("registry/models/acme/tiny-llm/www/model.bin   (11 MiB)"),
        _lines(
            "# listing.yaml",
            "weights:",
            "  - url: https://models.example/tiny-llm/model.bin",
            "    sha256: 3b4c2f0e9a1d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b",
            "    size_bytes: 11534336",
        ),
    ),
    Rule(
        "REG025",
        Severity.WARNING,
        "Formfile NAME differs from the listing's slug",
        "NAME is the image's name. When it is the listing's slug, images, builds and listings"
        " are easy to match in the builder's store and the farm's logs.",
        _lines("# registry/models/acme/tiny-llm/Formfile", "NAME tiny-model"),
        _lines("NAME tiny-llm"),
    ),
    Rule(
        "REG026",
        Severity.WARNING,
        "preferred model does not resolve",
        "An agent's `preferred_models` are the models it works best with: `formarket deploy`"
        " without `--model` takes the first that is listed and compatible. One that is not a"
        " model listing (a typo, or a model that was withdrawn) is never picked. A warning,"
        " because the agent still runs with any compatible model.",
        _lines("preferred_models: [acme/tiny-lm]"),
        _lines("preferred_models: [acme/tiny-llm]"),
    ),
    Rule(
        "REG027",
        Severity.ERROR,
        "governance file is missing or invalid",
        "registry/governance.yaml names the maintainers, who may change everything outside"
        " the publishers' files, and the farm's bot, the only writer of deployments, usage"
        " and royalties (`deployers` may ask for deployments without a maintainer's"
        " approval). Without it, or with it invalid, nobody is a maintainer and no commit can"
        " be told from the bot's, so the pull-request check cannot decide who may change"
        " what. Its schema problems are reported under this code rather than REG001.",
        _lines("# registry/governance.yaml", "maintainers: []"),
        _lines("maintainers: [mara-maintainer]", "bot: formarket-bot"),
    ),
    Rule(
        "REG028",
        Severity.ERROR,
        "the model's tokenizer cannot be used",
        "A model listing that declares `tokenizer` has its calls counted by the gateway with"
        " that file, a Hugging Face tokenizer.json in the listing's folder, so the file must be"
        " there, at most 10 MiB, and one the `tokenizers` library loads. The publisher is paid"
        " by the token and writes the file, so it must also count a fixed sample of text"
        " (English, accented, CJK, emoji, code) at no more than one token per UTF-8 byte, as"
        " every real tokenizer does. Without a usable tokenizer the gateway would have to fall"
        " back to estimates while the listing's page promised exact counts.",
        _lines(
            "# listing.yaml, with no tokenizer.json beside it",
            "tokenizer: {file: tokenizer.json, per_message: 4, per_reply: 2}",
        ),
        _lines(
            "# copy the model's own tokenizer.json into the listing's folder, or leave out",
            "# `tokenizer` (the gateway then estimates counts, and the page says so)",
            "tokenizer: {file: tokenizer.json, per_message: 4, per_reply: 2}",
        ),
    ),
    Rule(
        "REG029",
        Severity.ERROR,
        "README is larger than 1 MiB",
        "The README becomes the listing's page on the site, and rendering Markdown costs time"
        " and memory that grow with its size: a 10 MB README took 88 seconds and 2.5 GB to"
        " render. A README over 1 MiB (1,048,576 bytes) is refused, and the site leaves out"
        " any listing the check refuses. A README says what the listing does and how to use"
        " it; long reference material belongs on the publisher's own site, linked from it.",
        _lines("registry/models/acme/tiny-llm/README.md   (3 MiB)"),
        _lines(
            "# README.md",
            "Tiny LLM answers short questions. Full reference:",
            "https://docs.acme.example/tiny-llm",
        ),
    ),
    Rule(
        "REG030",
        Severity.ERROR,
        "a version mark names a version that was never published",
        "An owner marks a published version deprecated (still deployable, with a warning"
        " wherever it is shown) or yanked (no new deployments) under `version_marks` in the"
        " listing file of the current version, by pull request. A mark is about a version"
        " that deployments, solutions and statements may name; one for a version that was"
        " never on the main branch marks nothing and is most likely a typo for another. A"
        " mark may be changed or removed later (un-yanking is allowed), and editing marks is"
        " not a rewrite of the current version (REG011).",
        _lines(
            "# listing.yaml of tinyforge/echo-chat, published 1.0.0 and 1.1.0",
            "version_marks:",
            '  1.0.1: {status: yanked, message: "answers garbled"}',
        ),
        _lines(
            "version_marks:",
            '  1.0.0: {status: yanked, message: "answers garbled; use 1.1.0"}',
        ),
        raised_by="`formarket check` only: it needs the main branch's history",
    ),
    Rule(
        "REG031",
        Severity.ERROR,
        "a solution or agent names a version that cannot be deployed",
        "A solution pins an agent and a model (or takes their newest versions), and an agent"
        " names the model it requires or prefers. When a pull request yanks a version, or a"
        " pin names a version that was never published, what depends on it can no longer be"
        " deployed: every solution and agent naming a changed listing is checked again, so"
        " the pull request that strands them is the one that is stopped.",
        _lines(
            "# registry/solutions/tinyforge/faq-demo.yaml, after echo-chat 1.0.0 is yanked",
            "model: {id: tinyforge/echo-chat, version: 1.0.0}",
        ),
        _lines("model: {id: tinyforge/echo-chat, version: 1.1.0}"),
        raised_by="`formarket check` only: it needs the main branch's history",
    ),
    Rule(
        "REG032",
        Severity.ERROR,
        "a solution's or agent's model no longer fits at the version it would get",
        "A solution without a pin deploys the newest version that is not yanked; an agent is"
        " deployed with the newest version of the model it requires or prefers. When a new"
        " version drops what the agent needs (a task, a capability, context length), the"
        " solution or agent stops working at its next deployment, so the pull request that"
        " brings the new version is stopped instead.",
        _lines(
            "# tinyforge/echo-chat 2.0.0 drops `chat`, which tinyforge/faq-bot needs;",
            "# registry/solutions/tinyforge/faq-demo.yaml pins nothing:",
            "model: {id: tinyforge/echo-chat}",
        ),
        _lines("model: {id: tinyforge/echo-chat, version: 1.1.0}"),
        raised_by="`formarket check` only: it needs the main branch's history",
    ),
    Rule(
        "REG033",
        Severity.WARNING,
        "a newer compatible version could be used",
        "A solution pinned to an older version keeps working: every published version that is"
        " not yanked can be deployed. When a pull request publishes a newer version that fits"
        " the solution's other half, its publisher is told it could move, so that users get"
        " the fixes. A warning: staying on the pin is a choice.",
        _lines(
            "# tinyforge/echo-chat 1.1.0 is published;",
            "# registry/solutions/tinyforge/faq-demo.yaml:",
            "model: {id: tinyforge/echo-chat, version: 1.0.0}",
        ),
        _lines("model: {id: tinyforge/echo-chat, version: 1.1.0}"),
        raised_by="`formarket check` only: it needs the main branch's history",
    ),
    Rule(
        "REG034",
        Severity.WARNING,
        "a solution pins a deprecated version",
        "A deprecated version can still be deployed, with a warning wherever it is shown; a"
        " solution pinned to one passes on that warning to every user who deploys it. Its"
        " publisher is told, with the owner's message, when the version is deprecated.",
        _lines(
            "# echo-chat's listing: version_marks: {1.0.0: {status: deprecated, ...}}",
            "model: {id: tinyforge/echo-chat, version: 1.0.0}",
        ),
        _lines("model: {id: tinyforge/echo-chat, version: 1.1.0}"),
        raised_by="`formarket check` only: it needs the main branch's history",
    ),
    Rule(
        "REG035",
        Severity.ERROR,
        "the smoke test's pattern is not one RE2 accepts",
        "A listing's `test.expect.pattern` is matched against its VM's answer by `formarket"
        " test`, on the pull request's runner. Patterns are RE2's syntax, which matches in time"
        " linear in the answer's length, so no pattern can keep the runner busy for hours:"
        " backreferences and lookaround, which need backtracking, are refused, and so is a"
        " pattern whose compiled program would need more than 8 MiB (large counted"
        " repetitions, nested).",
        _lines("test:", "  expect:", '    pattern: "(\\w+) said \\1"'),
        _lines("test:", "  expect:", '    pattern: "You said: \\w+"'),
    ),
    Rule(
        "REG036",
        Severity.ERROR,
        "the smoke test calls a port the Formfile does not expose",
        "The smoke test's request goes to a port of the VM that the host can reach, and only"
        " the Formfile's EXPOSEd ports are forwarded. A test of a Formfile that exposes none,"
        " or with a `port` it does not expose, could never be answered.",
        _lines("# Formfile: EXPOSE 8080", "test:", "  port: 8000"),
        _lines("# Formfile: EXPOSE 8080", "test:", "  port: 8080     # or leave port out"),
    ),
)

_FORMFILE: tuple[Rule, ...] = (
    Rule(
        "FF001",
        Severity.ERROR,
        "an instruction formarket does not know",
        "A Formfile line starts with one of NAME, DESCRIPTION, FROM, MODEL, VCPU (CPU,"
        " CORES), MEMORY (MEM, MBS), DISK (STORAGE), GPU, USER, COPY, INSTALL, RUN, ENV,"
        " WORKDIR, ENTRYPOINT or EXPOSE (docs/formfile.md). Anything else is an error, not a"
        " line to skip: a misspelled line that is ignored builds another image than the one"
        " written. The message suggests the closest instruction.",
        _lines("NAME typo", "MEMROY 1024"),
        _lines("NAME typo", "MEMORY 1024"),
        name="UNKNOWN_INSTRUCTION",
    ),
    Rule(
        "FF002",
        Severity.ERROR,
        "a known instruction written in lower or mixed case",
        "Instructions are upper case. A lower-case one is still read as the instruction, so"
        " the rest of the line is checked too, but it is an error: one spelling keeps"
        " Formfiles easy to read and to search.",
        _lines("memory 1024"),
        _lines("MEMORY 1024"),
        name="KEYWORD_CASE",
    ),
    Rule(
        "FF003",
        Severity.ERROR,
        "an instruction with nothing after it",
        "Every instruction takes an argument, and an ENV needs a variable after its scope. An"
        " instruction alone says nothing, and taking a default for it would hide the"
        " mistake.",
        _lines("VCPU"),
        _lines("VCPU 2"),
        name="MISSING_ARGUMENT",
    ),
    Rule(
        "FF004",
        Severity.ERROR,
        "a count or size that is not a plain decimal integer",
        "VCPU, MEMORY (in MiB), DISK (in GiB) and a GPU count are plain whole numbers: the"
        " instruction fixes the unit, so a suffix such as `2G` (GB or GiB?) or a fraction is"
        " refused rather than guessed.",
        _lines("MEMORY 2G"),
        _lines("MEMORY 2048"),
        name="BAD_NUMBER",
    ),
    Rule(
        "FF005",
        Severity.ERROR,
        "a count or size outside its limits",
        "VCPU takes 1 to 128, MEMORY 512 to 256000 MiB, DISK 5 to 65535 GiB and a GPU count 1"
        " to 8: the sizes a VM of the farm can boot with and a host can hold. A number outside"
        " them is refused here rather than by a host at deployment.",
        _lines("MEMORY 256"),
        _lines("MEMORY 512"),
        name="OUT_OF_RANGE",
    ),
    Rule(
        "FF006",
        Severity.ERROR,
        "a second NAME, DESCRIPTION, FROM, VCPU, MEMORY, DISK or WORKDIR",
        "These instructions say one thing about the image, so each may appear once, under"
        " any of its spellings (VCPU and CORES are one instruction). Formation keeps the"
        " first and drops the rest without a word; formarket reports the second, because the"
        " file then says two things and only one can be meant.",
        _lines("NAME twice", "VCPU 2", "CORES 4"),
        _lines("NAME twice", "VCPU 4"),
        name="REPEATED_INSTRUCTION",
    ),
    Rule(
        "FF007",
        Severity.ERROR,
        "no NAME line in the file",
        "NAME is required: it names the image, and the registry expects it to be the"
        " listing's slug (REG025). Reported for the whole file, at line 0.",
        _lines("FROM busybox", "VCPU 2"),
        _lines("NAME my-agent", "FROM busybox", "VCPU 2"),
        name="MISSING_NAME",
    ),
    Rule(
        "FF008",
        Severity.ERROR,
        "a NAME that is not `[a-z0-9][a-z0-9._-]{0,62}`",
        "A NAME becomes the name of files, images and VMs, so it is 1 to 63 characters of"
        " lower-case letters, digits, `.`, `_` and `-`, starting with a letter or digit: safe"
        " in a path, a host name and a shell.",
        _lines("NAME Hello_World"),
        _lines("NAME hello-world"),
        name="BAD_NAME",
    ),
    Rule(
        "FF009",
        Severity.ERROR,
        "a FROM base that the farm does not have",
        "FROM names a base image from the farm's builder/bases/ (busybox, debian:bookworm;"
        " Debian bookworm when there is no FROM). A base it does not have cannot be built;"
        " the hint lists the known ones.",
        _lines("FROM ubuntu:22.04"),
        _lines("FROM debian:bookworm"),
        name="UNKNOWN_BASE",
    ),
    Rule(
        "FF010",
        Severity.ERROR,
        "a GPU model that the farm does not have, or a malformed GPU spec",
        "GPU is `<model>[:<count>]` with a model the farm knows (RTX5090, H100, H200, B200,"
        " L4, L40S, A100 by default). A VM asking for a GPU no host has could never be"
        " placed.",
        _lines("GPU V100:2"),
        _lines("GPU H100:2"),
        name="UNKNOWN_GPU",
    ),
    Rule(
        "FF011",
        Severity.ERROR,
        "a MODEL line that is not `required:<id>` or `preferred:<id>` with a valid id",
        "MODEL says which model an agent needs (`required:`) or works best with"
        " (`preferred:`), by listing id. Anything else cannot be matched to a model listing"
        " when the agent is deployed. Model ids may hold `:`; only the first one separates.",
        _lines("MODEL needed:acme/tiny-llm"),
        _lines("MODEL required:acme/tiny-llm"),
        name="BAD_MODEL",
    ),
    Rule(
        "FF012",
        Severity.ERROR,
        "a USER item that is not `field:value`/`field=value`, or an unknown field",
        "USER creates an account in the image from `field:value` items: username, passwd,"
        " ssh_authorized_keys, groups, sudo, lock_passwd, ssh_pwauth, disable_root,"
        " chpasswd_expire, shell. An unknown field is refused, not ignored: an account"
        " without the setting you wrote could be less locked down than you think. A word"
        " without a field is not echoed, since it is often a password that lost its"
        " `passwd:`.",
        _lines("USER username:agent passwd:secret home:/srv"),
        _lines("USER username:agent passwd:secret"),
        name="BAD_USER_FIELD",
    ),
    Rule(
        "FF013",
        Severity.ERROR,
        "a USER line without `username` or `passwd`",
        "USER creates an account, and an account needs a name and a password (stored in the"
        " image only as a SHA-512 crypt hash, never in clear). Both are required rather than"
        " given defaults, so that no account is made with a name or a password nobody chose.",
        _lines("USER username:agent sudo:true"),
        _lines('USER username:agent passwd:"s3cret" sudo:true'),
        name="MISSING_USER_FIELD",
    ),
    Rule(
        "FF014",
        Severity.ERROR,
        "a USER value that is invalid: username, empty password, group, relative shell",
        "User and group names are `[a-z_][a-z0-9_-]{0,31}`, as Linux tools accept them;"
        " `passwd` is not empty; `shell` is a clean absolute path. A value outside these"
        " would fail or be mangled when the account is created in the image.",
        _lines("USER username:Root passwd:secret"),
        _lines("USER username:root2 passwd:secret"),
        name="BAD_USER_VALUE",
    ),
    Rule(
        "FF015",
        Severity.ERROR,
        "a USER flag that is not true/yes/1/on or false/no/0/off",
        "sudo, lock_passwd, ssh_pwauth, disable_root and chpasswd_expire are yes or no. A"
        " value such as `maybe` is refused rather than read as one or the other, since each"
        " decides who can log in or become root.",
        _lines("USER username:agent passwd:secret sudo:maybe"),
        _lines("USER username:agent passwd:secret sudo:false"),
        name="BAD_BOOLEAN",
    ),
    Rule(
        "FF016",
        Severity.ERROR,
        "a COPY source that is absolute or leaves the build context with `..`",
        "COPY takes its source from the build context, the listing's folder, and from"
        " nowhere else: an absolute path or a `..` would copy the build machine's own files"
        " (/etc/shadow, a key) into an image anyone can deploy.",
        _lines("COPY ../../etc/passwd /x"),
        _lines("COPY ./app /srv/app"),
        name="COPY_ESCAPES_CONTEXT",
    ),
    Rule(
        "FF017",
        Severity.ERROR,
        "a COPY destination that is relative or has `.`/`..` components",
        "A COPY destination is a clean absolute path in the image: a relative one would"
        " depend on a working folder, and `.` or `..` make the path say something other than"
        " where the file lands.",
        _lines("COPY ./app app"),
        _lines("COPY ./app /app"),
        name="BAD_COPY_DESTINATION",
    ),
    Rule(
        "FF018",
        Severity.ERROR,
        "an instruction with too many or too few words (COPY takes two, VCPU one, ...)",
        "COPY takes a source and a destination; NAME, FROM, MODEL, VCPU, MEMORY, DISK and GPU"
        " take one word. Extra or missing words are refused rather than dropped or guessed;"
        ' quote a path that holds spaces (`COPY "my dir" /app`).',
        _lines("COPY ./app"),
        _lines("COPY ./app /app"),
        name="WRONG_ARGUMENT_COUNT",
    ),
    Rule(
        "FF019",
        Severity.ERROR,
        "an INSTALL argument that is not a package name",
        "INSTALL takes package names (`python3`, `curl`, `pkg=1.2-1`, `pkg:arch`), which are"
        " given to the package manager, never to a shell. Anything else, such as `;` or `|`,"
        " is refused; commands belong in RUN.",
        _lines('INSTALL "pkg; rm -rf /"'),
        _lines("INSTALL pkg"),
        name="BAD_PACKAGE",
    ),
    Rule(
        "FF020",
        Severity.ERROR,
        "an ENV item that is not `KEY=value` with a valid key",
        "Each ENV item is `KEY=value`, the key letters, digits and `_`, not starting with a"
        " digit: the only keys a shell and a service file can hold. Quote values with spaces:"
        ' `KEY="a value"`.',
        _lines("ENV 1KEY=value"),
        _lines("ENV KEY1=value"),
        name="BAD_ENV",
    ),
    Rule(
        "FF021",
        Severity.ERROR,
        "an ENV scope that is not `system`, `user:<name>` or `service:<name>`, or not first",
        "ENV sets variables for the whole system (the default), for one user's logins, or for"
        " one service; the scope comes first, as `--scope=...`. Any other scope would set"
        " the variable nowhere anyone expects.",
        _lines("ENV --scope=group:staff A=b"),
        _lines("ENV --scope=user:agent A=b"),
        name="BAD_ENV_SCOPE",
    ),
    Rule(
        "FF022",
        Severity.ERROR,
        "a quote opened and never closed on the instruction",
        "A quote (`\"` or `'`) must close on the same instruction; use a trailing `\\` to"
        " continue an instruction on the next line. An open quote would otherwise swallow the"
        " rest of the line into one value.",
        _lines('ENV GREETING="hello'),
        _lines('ENV GREETING="hello"'),
        name="UNTERMINATED_QUOTE",
    ),
    Rule(
        "FF023",
        Severity.ERROR,
        "a WORKDIR that is relative or has `.`/`..` components",
        "WORKDIR is the image's working folder, where the whole build context goes when there"
        " is no COPY, so it is a clean absolute path in the image.",
        _lines("WORKDIR /app/../etc"),
        _lines("WORKDIR /app"),
        name="BAD_WORKDIR",
    ),
    Rule(
        "FF024",
        Severity.ERROR,
        "an ENTRYPOINT whose JSON form is not a non-empty array of strings, or that is empty",
        "ENTRYPOINT is the service the VM runs at boot, either as a JSON array of strings"
        ' (`["python3", "app.py"]`) or as plain words. A JSON form that does not parse, holds'
        " something other than strings or names no command would leave the VM running"
        " nothing.",
        _lines('ENTRYPOINT ["python3", 1]'),
        _lines('ENTRYPOINT ["python3", "app.py"]'),
        name="BAD_ENTRYPOINT",
    ),
    Rule(
        "FF025",
        Severity.ERROR,
        "an EXPOSE item that is not `<port>` or `<port>/tcp` with a port in 1..65535",
        "EXPOSE names the TCP ports the service listens on: the deployer forwards them and"
        " health-checks the first. UDP and ports out of range cannot be forwarded.",
        _lines("EXPOSE 70000 8080/udp"),
        _lines("EXPOSE 8080"),
        name="BAD_PORT",
    ),
    Rule(
        "FF026",
        Severity.ERROR,
        "a line ending in `\\` with no line after it (end of file, or a blank line)",
        "A trailing `\\` continues the instruction on the next line. When the file or the"
        " instruction ends there (a blank line follows), the continuation is cut short, and"
        " what was meant to follow is missing.",
        _lines("RUN echo hello \\"),
        _lines("RUN echo hello"),
        name="DANGLING_CONTINUATION",
    ),
    Rule(
        "FF027",
        Severity.ERROR,
        "a NUL byte, another control character, or a bidirectional override in the text",
        "A Formfile is plain UTF-8 text. Control characters (but tab) mean the file is not a"
        " recipe, and bidirectional overrides (U+202E and its kin) make a line display"
        ' differently from what it runs ("trojan source"): a recipe that runs as root must'
        " read as it runs. Each such line is reported, and nothing else is checked.",
        _lines("RUN echo safe <U+202E>; rm -rf / #"),
        _lines("RUN echo safe"),
        name="CONTROL_CHARACTER",
    ),
    Rule(
        "FF028",
        Severity.ERROR,
        "a file over the size or line-count limit",
        "A Formfile is at most 1 MiB and 10,000 lines; real ones are a few dozen lines. The"
        " limits keep hostile input cheap to refuse. Data belongs in the build context, to"
        " be copied with COPY.",
        _lines("NAME big", "DESCRIPTION <a megabyte of text>"),
        _lines("NAME big", "COPY ./data /srv/data"),
        name="TOO_LARGE",
    ),
    Rule(
        "FF029",
        Severity.ERROR,
        "the same GPU model, model id, port, username, USER field or ENV key given twice",
        "Each of these names one thing once: a second GPU H100 line, a model both required"
        " and preferred, a port exposed twice, two accounts with one username, a USER field"
        " or an ENV key repeated on a line. Keeping one silently would drop what the other"
        " said.",
        _lines("EXPOSE 8080 8080"),
        _lines("EXPOSE 8080"),
        name="DUPLICATE_VALUE",
    ),
)

# An event line as the gateway writes it, shortened: `...` stands for fields that do not matter.
_EVENT = '{"specversion":"1.0","id":"call-1","source":"gateway/gw-1",'

_USAGE: tuple[Rule, ...] = (
    Rule(
        "USG001",
        Severity.SET_ASIDE,
        "the file cannot be read (not gzip, truncated, too large)",
        "A usage file is gzip-compressed JSON lines, written by a collector (the gateway's"
        " flush, the farm's meter). One that is not gzip, whose stream is cut short, or that"
        " inflates to more than 256 MiB (a gzip bomb) cannot be read whole, so all of it is"
        " set aside rather than part of a flush counted. The other files are still read.",
        _lines("registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz   (plain text, not gzip)"),
        _lines(
            "# leave the file as it is: usage is append-only (USG015, USG016). Find what",
            "# wrote it; only the bot writes under registry/usage/ (REG017).",
        ),
    ),
    Rule(
        "USG003",
        Severity.SET_ASIDE,
        "a line is longer than the limit",
        "An event is a few hundred bytes; a line over 16 KiB, spaces included, is not one,"
        " and bounding lines keeps a hostile file cheap to read.",
        _lines(_EVENT + "...}<17,000 spaces>"),
        _lines(_EVENT + "...}"),
    ),
    Rule(
        "USG004",
        Severity.SET_ASIDE,
        "a line is not JSON",
        "Each line of a usage file is one JSON document (blank lines are skipped). A line cut"
        " short or binary junk is set aside on its own; the lines around it still count.",
        _lines('{"specversion": "1.0", "id": '),
        _lines(_EVENT + '"type":"dev.formarket.usage.call",...}'),
    ),
    Rule(
        "USG005",
        Severity.SET_ASIDE,
        "a line is not a usage event (unknown field, wrong type, out of range, bad id)",
        "A line must be a usage event exactly as schemas/usage-event.schema.json describes"
        " it: a CloudEvents 1.0 document with no unknown fields, counts that are whole"
        " numbers in range (not strings, not floats, not negative), ids, accounts and"
        " deployments that match their patterns, listing ids with semantic versions, an RFC"
        " 3339 time. Every line is money, so it is read exactly or not at all.",
        _lines(_EVENT + '...,"data":{...,"input_tokens":"5",...}}'),
        _lines(_EVENT + '...,"data":{...,"input_tokens":5,...}}'),
    ),
    Rule(
        "USG006",
        Severity.SET_ASIDE,
        "the event's time is not in UTC",
        "Periods are calendar months in UTC, and an event's time decides its period. A time"
        " with another offset, or with none, could fall in one month for one reader and in"
        " the next for another. Write it in UTC, ending in Z.",
        _lines(_EVENT + '...,"time":"2026-03-10T12:00:00+02:00",...}'),
        _lines(_EVENT + '...,"time":"2026-03-10T10:00:00Z",...}'),
    ),
    Rule(
        "USG007",
        Severity.SET_ASIDE,
        "the event's time is after its file's day ended (a timestamp from the future)",
        "A usage file belongs to a day (its path says which), and a collector writes what"
        " happened up to when it wrote. An event later than the end of that day, past the"
        " clock skew that royalties/policy.yaml allows (`clock_skew_minutes`), comes from a"
        " clock that is wrong, and could move usage into a period not yet closed.",
        _lines(
            "# registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz",
            _EVENT + '...,"time":"2026-03-12T00:00:00Z",...}',
        ),
        _lines(_EVENT + '...,"time":"2026-03-10T12:00:00Z",...}'),
    ),
    Rule(
        "USG008",
        Severity.SET_ASIDE,
        "the event names a listing that does not exist",
        "Usage is charged at the price of the listing version that served it, as published"
        " when the usage was committed. An event naming an agent or a model that is not a"
        " listing has no price and no publisher to pay.",
        _lines(_EVENT + '...,"model":{"id":"acme/ghost","version":"1.0.0"},...}'),
        _lines(_EVENT + '...,"model":{"id":"acme/chat","version":"1.0.0"},...}'),
    ),
    Rule(
        "USG009",
        Severity.SET_ASIDE,
        "the event names a version of a listing that was never published",
        "The listing exists, but not at that version, as published when the usage was"
        " committed: there is no price and royalty to charge it at.",
        _lines(_EVENT + '...,"model":{"id":"acme/chat","version":"9.9.9"},...}'),
        _lines(_EVENT + '...,"model":{"id":"acme/chat","version":"1.0.0"},...}'),
    ),
    Rule(
        "USG010",
        Severity.SET_ASIDE,
        "the event's source is not the source of its file",
        "Each collector writes only its own files, `registry/usage/.../<kind>/<name>-<seq>"
        ".jsonl.gz`, and its events' `source` is that `<kind>/<name>`. An event's identity is"
        " its source and id, so an event written in another collector's name could pass for"
        " one of its events, and duplicates could no longer be told apart.",
        _lines(
            "# registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz",
            '{"specversion":"1.0","id":"call-1","source":"gateway/gw-9",...}',
        ),
        _lines('{"specversion":"1.0","id":"call-1","source":"gateway/gw-1",...}'),
    ),
    Rule(
        "USG011",
        Severity.SET_ASIDE,
        "the event's data does not fit its type",
        "A call names an agent, a model or both, and carries no instance_seconds; an"
        " instance-hours event names what ran, with instance_seconds above 0 and no requests"
        " or tokens. An event that mixes them could be charged twice or at the wrong price.",
        _lines(
            _EVENT + '"type":"dev.formarket.usage.call",...,"data":{...,"instance_seconds":60}}'
        ),
        _lines(_EVENT + '"type":"dev.formarket.usage.call",...,"data":{...,"instance_seconds":0}}'),
    ),
    Rule(
        "USG013",
        Severity.SET_ASIDE,
        "the event is older than late usage may be",
        "Usage that arrives after its period was closed is posted as an adjustment in the"
        " next close, if its period is at most `late_usage_months` (royalties/policy.yaml)"
        " before the one being closed. Older usage is set aside and reported, never dropped"
        " in silence: the statements of its period were settled long ago.",
        _lines(
            "# closing 2026-03 with late_usage_months: 3",
            _EVENT + '...,"time":"2025-06-01T00:00:00Z",...}',
        ),
        _lines(
            "# flush the collectors' spools as they go, so no usage arrives months late:",
            "formarket usage flush --every 60",
        ),
    ),
    Rule(
        "USG014",
        Severity.SET_ASIDE,
        "a file under registry/usage/ is not named as a usage file",
        "A usage file is `registry/usage/YYYY/MM/DD/<kind>/<name>-<seq>.jsonl.gz`, with a real"
        " date. The path gives the day its events must fall in (USG007) and the source they"
        " must have (USG010), so a file named otherwise cannot be judged and is not read.",
        _lines("registry/usage/2026/03/10/notes.txt"),
        _lines("registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz"),
    ),
    Rule(
        "USG015",
        Severity.SET_ASIDE,
        "a usage file was rewritten after a close had read it",
        "Usage files are append-only: a close records what it read, and its statements are"
        " checked against that. When a file it read changes, the copy that close read stays"
        " counted and the new content is read as a new file (an event already counted is"
        " counted once). The rewrite is reported because it should not have happened.",
        _lines(
            "# after 2026-03 was closed",
            "git commit -m 'fix usage' registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz",
        ),
        _lines("# new usage goes in a new file: gateway/gw-1-000002.jsonl.gz"),
        raised_by="`formarket royalties close`, comparing with the files the previous close read",
    ),
    Rule(
        "USG016",
        Severity.SET_ASIDE,
        "a usage file was deleted after a close had read it",
        "Deleting a usage file cannot undo what it recorded: the copy that the previous close"
        " read is still read from git, and the deletion is reported.",
        _lines(
            "# after 2026-03 was closed",
            "git rm registry/usage/2026/03/10/gateway/gw-1-000001.jsonl.gz",
        ),
        _lines("# usage files stay; a correction is made in the next close"),
        raised_by="`formarket royalties close`, comparing with the files the previous close read",
    ),
    Rule(
        "USG017",
        Severity.SET_ASIDE,
        "a usage file arrived in a commit that is not the bot's",
        "Usage counts only when the bot committed it: the first-parent commit that first"
        " brought the file must have the bot that registry/governance.yaml names (before that"
        " commit) as its author and committer, and, when governance.yaml names the bot's key"
        " (`bot_key`), be signed with that key in git's SSH signature format. Anything else is"
        " set aside whole, with the commit and why in the message: anyone can push a file,"
        " only the bot's key signs it.",
        _lines(
            "git -c user.name=mallory commit -m 'usage' \\",
            "    registry/usage/2026/03/10/gateway/gw-1-000009.jsonl.gz",
        ),
        _lines(
            "# the gateway's flush commits usage as the bot, signed with FORMARKET_BOT_KEY;",
            "# check a commit with: git -c gpg.ssh.allowedSignersFile=FILE verify-commit REV",
        ),
        raised_by="`formarket royalties close`, from the history of each usage file",
    ),
    Rule(
        "USG018",
        Severity.SET_ASIDE,
        "an event holds more than a gateway can produce",
        "Each event is one call or one instance-hour: its requests, input and output tokens"
        " and instance seconds are bounded by what a gateway or a meter can produce, the"
        " ceilings in the platform's terms (`ceilings` in royalties/policy.yaml). An event above"
        " any of them is set aside, never paid.",
        _lines('{"type": "dev.formarket.usage.call", "data": {"output_tokens": 1000000000000}}'),
        _lines('{"type": "dev.formarket.usage.call", "data": {"output_tokens": 512}}'),
    ),
    Rule(
        "USG019",
        Severity.SET_ASIDE,
        "a closed period was changed or removed after its close",
        "A closed period never changes and is never paid again. `close` and `verify` find"
        " every close in the branch's first-parent history, not only at the tip: when a later"
        " commit changes or removes royalties/YYYY-MM/, the change is set aside (the close as"
        " it was committed stays the record: its balances open the next period), `verify`"
        " reports it naming that commit, and `close` stops until the period is restored. The"
        " period is never closed, or paid, again.",
        _lines("git rm -r royalties/2026-10 && git commit -m 'clean up'"),
        _lines(
            "git checkout <the closing commit> -- royalties/2026-10",
            "git commit -m 'Restore the close of 2026-10'",
        ),
        raised_by="`formarket royalties close` (refuses) and `formarket royalties verify`",
    ),
)


def _by_id(rules: tuple[Rule, ...]) -> dict[str, Rule]:
    table: dict[str, Rule] = {}
    for rule in rules:
        if rule.id in table:
            raise ValueError(f"{rule.id} is in the table twice")
        table[rule.id] = rule
    return table


# Every code, by id, in family order.
RULES: dict[str, Rule] = _by_id((*_REGISTRY, *_FORMFILE, *_USAGE))

# Ids that are not rules and are never given: retired codes, and numbers skipped.
RETIRED: dict[str, str] = {
    "USG002": "never assigned: skipped when the usage codes were first numbered",
    "USG012": "never assigned: skipped when the usage codes were first numbered",
}


def rules_of(prefix: str) -> tuple[Rule, ...]:
    """The rules of one family (REG, FF, USG), in id order."""
    return tuple(rule for rule in RULES.values() if rule.family == prefix)
