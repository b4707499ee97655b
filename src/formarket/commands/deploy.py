"""`formarket deploy`: check a deployment request, print its plan, commit it as the bot."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from formarket.commands._options import BRANCH_OPTION, REPO_OPTION, STATE_OPTION, farm_settings
from formarket.commands._remote import ModalCommand
from formarket.errors import FormarketError, UsageError

if TYPE_CHECKING:
    from formarket.deploy.forecast import MonthlyUsage
    from formarket.deploy.request import Planned
    from formarket.farm.settings import FarmSettings

__all__ = ["command"]


@click.command("deploy", cls=ModalCommand)
@click.argument("agent", required=False, metavar="[AGENT-ID]")
@click.option("--model", metavar="MODEL-ID", help="The model behind the agent, or alone.")
@click.option("--solution", metavar="ID", help="A ready-made agent + model pairing.")
@click.option(
    "--version",
    metavar="V",
    help="The version of the agent (or of the model or solution deployed alone); the current"
    " one when left out. Any published version that is not yanked can be deployed; ID@VERSION"
    " says the same.",
)
@click.option("--vcpus", type=click.IntRange(1, 128), help="vCPUs of the deployment you name.")
@click.option("--memory", "memory_mib", type=click.IntRange(128, 1048576), help="Memory, MiB.")
@click.option("--gpu", metavar="MODEL:COUNT", help="GPUs, such as H100:1.")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting of the deployment you name (the agent, or the model deployed alone).",
)
@click.option(
    "--secret",
    "secret_refs",
    multiple=True,
    metavar="NAME=REF",
    help="A secret by reference: env:NAME, file:/path or vault:path (never the value).",
)
@click.option(
    "--account",
    help="Who pays for the usage (default: you): a login, which git names only by its"
    " pseudonym (FORMARKET_PSEUDONYM_KEY).",
)
@click.option(
    "--idle-after",
    metavar="DURATION",
    help="Scale to zero: stop the VM after this long without a call (such as 15m), keeping"
    " its disk; the next call starts it again and waits for it. Instance time is billed only"
    " while it runs.",
)
@click.option(
    "--forecast-calls",
    type=click.IntRange(0, 10**12),
    metavar="N",
    help="Forecast what a month would cost at N calls a month, by each listing's terms.",
)
@click.option(
    "--forecast-input-tokens",
    type=click.IntRange(0, 10**8),
    default=0,
    metavar="T",
    help="Input tokens of an average call, for --forecast-calls (default 0).",
)
@click.option(
    "--forecast-output-tokens",
    type=click.IntRange(0, 10**8),
    default=0,
    metavar="T",
    help="Output tokens of an average call, for --forecast-calls (default 0).",
)
@REPO_OPTION
@BRANCH_OPTION
@STATE_OPTION
@click.option("--dry-run", is_flag=True, help="Check and print the plan; commit nothing.")
@click.option("--wait", is_flag=True, help="Follow progress until the endpoint answers.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=1800.0,
    show_default=True,
    help="Seconds --wait waits.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def command(
    agent: str | None,
    model: str | None,
    solution: str | None,
    version: str | None,
    vcpus: int | None,
    memory_mib: int | None,
    gpu: str | None,
    sets: tuple[str, ...],
    secret_refs: tuple[str, ...],
    account: str | None,
    idle_after: str | None,
    forecast_calls: int | None,
    forecast_input_tokens: int,
    forecast_output_tokens: int,
    repo: Path,
    branch: str,
    state: Path | None,
    dry_run: bool,
    wait: bool,
    timeout: float,
    as_json: bool,
) -> None:
    """Deploy an agent (with a model), a model alone, or a solution.

    Everything is checked before anything is committed: that the listings exist at the given
    versions, agent–model compatibility, resources within the listings' bounds, settings
    against the settings schema of the listing you name. Resources and settings are for the
    deployment you name (the agent, or the model deployed alone); an agent's model runs at
    its recommended size with its settings' defaults. An agent without --model gets its first
    compatible preferred model.

    \b
      formarket deploy tinyforge/faq-bot --model tinyforge/echo-chat --set min_match=0.5
      formarket deploy --model tinyforge/echo-chat --dry-run
      formarket deploy --model acme/my-model --set context_length=8192 --set parallel_requests=4
      formarket deploy --solution tinyforge/faq-demo --wait
      formarket deploy --model tinyforge/echo-chat --idle-after 15m
      formarket deploy tinyforge/faq-bot@1.0.0 --model tinyforge/echo-chat@1.0.0
      formarket deploy --model northwind-ai/northwind-chat-8b --dry-run \
          --forecast-calls 100000 --forecast-input-tokens 500 --forecast-output-tokens 200

    The plan shows each listing's price per unit; --forecast-calls adds what a month would
    cost at that many calls of that many tokens each (per-instance-hour listings as running
    all month, subscriptions at their cheapest tier that covers it).

    Every published version stays deployable unless its owners yanked it; a deprecated
    version deploys with a warning that gives their message.

    Signed in (`formarket login`) and outside a marketplace clone, it deploys for your account
    through the control plane, from any machine (client mode); in a clone, or with --repo, it
    commits to the clone as the bot (operator mode).
    """
    from formarket.commands._remote import remote, remote_deploy
    from formarket.deploy.forecast import MonthlyUsage
    from formarket.deploy.request import DeployOptions, RefusedError, build_request, plan, run
    from formarket.farm.status import farm_pseudonyms

    usage = None
    if forecast_calls is not None:
        usage = MonthlyUsage(forecast_calls, forecast_input_tokens, forecast_output_tokens)
    elif forecast_input_tokens or forecast_output_tokens:
        raise UsageError(
            "--forecast-input-tokens and --forecast-output-tokens need --forecast-calls"
        )
    if dry_run and wait:
        raise UsageError("--wait follows a committed deployment; leave out --dry-run")
    client = remote()
    if client is not None:
        if secret_refs or account:
            raise UsageError("--secret and --account are for operator mode, in the clone")
        body: dict[str, Any] = {
            "agent": agent, "model": model, "solution": solution, "version": version,
            "vcpus": vcpus, "memory_mib": memory_mib, "gpu": gpu, "settings": list(sets),
            "idle_after": idle_after, "dry_run": dry_run,
        }  # fmt: skip
        if usage is not None:
            body["forecast"] = {
                "calls": usage.calls,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
            }
        remote_deploy(client, body, as_json=as_json, wait=timeout if wait else None)
        return
    settings = farm_settings(repo, branch, state)
    options = DeployOptions(
        agent,
        model,
        solution,
        version,
        vcpus,
        memory_mib,
        gpu,
        sets,
        secret_refs,
        account,
        idle_after=idle_after,
        usage=usage,
    )
    if as_json:
        try:
            if dry_run:
                planned = plan(
                    settings, build_request(options, farm_pseudonyms(settings)), usage=usage
                )
            else:
                planned = run(settings, options, echo=lambda _line: None)
        except RefusedError as exc:
            click.echo(json.dumps({"refused": list(exc.reasons)}, indent=2))
            raise SystemExit(1) from exc
        click.echo(json.dumps(_as_json(planned, committed=not dry_run, usage=usage), indent=2))
    else:
        planned = run(settings, options, dry_run=dry_run, echo=click.echo)
    if wait:
        _wait(settings, planned.resolved.all[-1].id, timeout, echo=not as_json)


def _as_json(
    planned: Planned, *, committed: bool, usage: MonthlyUsage | None = None
) -> dict[str, Any]:
    from formarket.deploy.forecast import forecast

    resolved = planned.resolved
    month = None
    if usage is not None:
        month = [
            {
                "listing": f.listing,
                "currency": f.currency,
                "amount": None if f.amount is None else str(f.amount),
                "basis": f.basis,
            }
            for f in forecast(resolved.prices, usage)
        ]
    return {
        "forecast": month,
        "committed": committed,
        "deployments": [
            {**d.model_dump(mode="json"), "runs": planned.where.get(d.id)}
            for d in resolved.deployments
        ],
        "reused": [d.id for d in resolved.reused],
        "warnings": list(resolved.warnings),
        "prices": [
            {
                "listing": p.listing,
                "currency": p.currency,
                "per_unit": [{"unit": unit, "amount": str(amount)} for amount, unit in p.charges],
            }
            for p in resolved.prices
        ],
    }


def _wait(settings: FarmSettings, deployment_id: str, timeout: float, *, echo: bool) -> None:
    from formarket.farm.status import endpoint, progress

    deadline = time.monotonic() + timeout
    delay = 1.0
    said = ""
    if echo:
        click.echo(f"Waiting for {deployment_id} to answer...")
    while True:
        url = endpoint(settings, deployment_id)
        if url:
            break
        now = progress(settings, deployment_id)
        if echo and now != said:
            click.echo(f"  {now}")
            said = now
        if now.startswith("refused"):
            raise FormarketError(f"{deployment_id} is {now}")
        if time.monotonic() > deadline:
            raise FormarketError(
                f"{deployment_id} did not answer within {timeout:.0f}s (last: {now})",
                hint="the farm may still be building it; `formarket deployments show` follows it",
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)
    click.echo(f"Endpoint: {url}  (the VM itself; call it through the gateway to be metered)")
    click.echo(
        "Call it through the gateway:\n"
        '  curl -s http://127.0.0.1:8080/v1/chat/completions -H "Authorization: Bearer $KEY"'
        " -H 'Content-Type: application/json' -d '{\"model\": \""
        + deployment_id
        + '", "messages": [{"role": "user", "content": "Hello"}]}\''
    )
