"""The deployment requests of `formarket demo`: one through an issue, one from the CLI.

The issue goes through the real issue flow against the GitHub stand-in (opened by a login on
governance.yaml's deployers list); the CLI request takes the code path of `formarket deploy`.
The farm builds and runs what they commit.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from formarket.deploy.issue_flow import REQUEST_LABEL, handle_event
from formarket.deploy.request import DeployOptions, run
from formarket.errors import FormarketError
from formarket.farm.settings import FarmSettings
from formarket.github import GitHub
from formarket.standins.github import StandIn

__all__ = ["DEMO_CLI_ACCOUNT", "DEMO_DEPLOYER", "demo_requests"]

DEMO_REPO = "formarket/marketplace"
DEMO_DEPLOYER = "dana-deployer"
DEMO_CLI_ACCOUNT = "demo-cli"  # the account an operator deploys for from the command line
_BOT_TOKEN = "demo-bot-token"  # noqa: S105 - the stand-in's own token, not a secret
AGENT = "tinyforge/faq-bot"
MODEL = "tinyforge/echo-chat"

_BODY = """### Agent

{agent}

### Model

{model}

### Solution

_No response_

### Resources

vcpus=1 memory=512

### Settings

```yaml
min_match: 0.34
handoff_message: A person will follow up.
```
"""


def demo_requests(
    repo_path: Path,
    echo: Callable[[str], None],
    *,
    settings: FarmSettings | None = None,
    model: str = MODEL,
) -> list[str]:
    """Request tinyforge/faq-bot with `model` twice (issue, then CLI); returns the ids of the
    deployments committed (or already there from an earlier run)."""
    settings = settings or FarmSettings(repo=repo_path)
    ids: list[str] = []
    with StandIn({_BOT_TOKEN: "formarket-bot"}) as standin, tempfile.TemporaryDirectory() as tmp:
        number = standin.open_issue(
            DEMO_REPO,
            DEMO_DEPLOYER,
            f"Deploy: {AGENT}",
            _BODY.format(agent=AGENT, model=model),
            labels=(REQUEST_LABEL,),
        )
        echo(f"Issue #{number} opened by @{DEMO_DEPLOYER} on the GitHub stand-in ({standin.url})")
        payload = standin.payload(DEMO_REPO, number, "opened", DEMO_DEPLOYER)
        event = standin.write_payload(Path(tmp) / "event.json", payload)
        with GitHub(standin.url, _BOT_TOKEN) as github:
            outcome = handle_event(event, settings, github, repo_slug=DEMO_REPO)
        if outcome.action not in ("deployed", "unchanged"):
            raise FormarketError(
                f"the demo's issue request was {outcome.action}: {'; '.join(outcome.reasons)}"
            )
        echo(f"The bot answered on issue #{number}: {outcome.action} {outcome.deployment_ids}")
        ids += outcome.deployment_ids
    echo(f"formarket deploy {AGENT} --model {model} --account {DEMO_CLI_ACCOUNT}")
    account = DEMO_CLI_ACCOUNT
    planned = run(
        settings,
        DeployOptions(agent=AGENT, model=model, account=account, requester=account),
        echo=echo,
    )
    ids += [d.id for d in planned.resolved.all if d.id not in ids]
    return ids
