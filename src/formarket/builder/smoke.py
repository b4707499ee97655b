"""Running a listing's smoke test: build its image, boot it under qemu, make the test's one
request, judge the answer, stop the VM.

    listing folder (a working tree, or exported from the commit that published a version)
      -> build in the builder's sandbox (network only for INSTALL)
      -> boot (direct kernel boot, TCG by default, the published disk never written)
      -> wait for the boot marker -> the request, read with a size and a time limit
      -> judge (formarket.registry.smoke) -> stop -> a report

Nothing of the listing runs outside its VM but its build steps, in the builder's sandbox. The
VM is hostile until proven otherwise: its answer is read at most `max_answer` bytes and
`timeout_seconds` long, and a garbled one is a failed test, not a crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from dulwich.objects import ObjectID
from dulwich.repo import Repo

from formarket.builder.build import Builder, BuildResult
from formarket.builder.vm import BOOT_MARKER, boot
from formarket.errors import InputError, NotFoundError
from formarket.httpclient import Client, HTTPError
from formarket.market.refs import first_parent_chain, resolve_rev
from formarket.market.repository import open_repository
from formarket.market.trees import changed_paths, commit_tree, export_folder, find, read_path
from formarket.process import Runner
from formarket.registry.cache import ResultCache
from formarket.registry.history import version_history
from formarket.registry.smoke import SmokeCall, compile_pattern, judge, smoke_call
from formarket.schemas.listing import AgentListing, ModelListing
from formarket.schemas.smoke import SmokeTest
from formarket.yamldoc import YamlError, load_yaml

__all__ = [
    "BuiltTest",
    "SmokeReport",
    "SmokeSettings",
    "build_for_test",
    "call_until_answered",
    "changed_listings",
    "console_tail",
    "export_version",
    "listing_folder",
    "load_listing",
    "read_answer",
    "run_built",
    "run_smoke_test",
    "wait_for_marker",
]

Progress = Callable[[str], None]
_KINDS = ("models", "agents")
_CONSOLE_LINES = 25
_TAIL_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SmokeSettings:
    """How a smoke test runs its VM and reads its answer."""

    accel: str = "tcg"
    boot_timeout: float = 240.0
    # A runner cannot give every listing its production memory (a 32 GiB model); the smoke test
    # checks that the service starts and answers, so the VM gets at most this much.
    memory_cap_mib: int = 2048
    max_answer: int = 1024 * 1024
    # What the VM may write to its console before it boots: a listing may replace its image's
    # init, and one that floods the console would fill the runner's disk.
    max_console: int = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SmokeReport:
    """What a smoke test did and found; `problems` is empty when it passed."""

    listing: str
    version: str
    build_id: str
    call: SmokeCall | None  # None: the listing declares no test, and was built and booted only
    status: int | None
    body: bytes
    problems: tuple[str, ...]
    console_tail: str
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems

    def render(self) -> str:
        """The report a person reads: on failure, what was expected, what came, the console."""
        timing = ", ".join(f"{name} {secs:.1f}s" for name, secs in self.seconds.items())
        head = f"{self.listing} {self.version} ({self.build_id[:16]})"
        what = (
            f"{self.call.method} {self.call.path}"
            if self.call is not None
            else "built and booted; it declares no smoke test (add `test:` to its listing.yaml)"
        )
        if self.passed:
            return f"passed: {head}: {what} ({timing})"
        shown = self.body[:2000].decode("utf-8", "replace")
        lines = [
            f"FAILED: {head}: {what}",
            *(f"  {problem}" for problem in self.problems),
            f"  status: {self.status if self.status is not None else 'no answer'}",
            "  body"
            + (f" (first 2000 of {len(self.body)} bytes):" if len(self.body) > 2000 else ":"),
            *(f"    | {line}" for line in (shown.splitlines() or ["(empty)"])),
            "  the VM's console ended with:",
            *(f"    | {line}" for line in (self.console_tail.splitlines() or ["(nothing)"])),
        ]
        if timing:
            lines.append(f"  ({timing})")
        return "\n".join(lines)


def load_listing(folder: Path) -> ModelListing | AgentListing:
    """The listing in `folder`/listing.yaml, validated; its first problem at its line."""
    path = folder / "listing.yaml"
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise NotFoundError(f"{path}: no listing here") from exc
    doc = load_yaml(raw, str(path))
    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    if kind == "agent":
        return doc.validated(AgentListing, "listing")
    return doc.validated(ModelListing, "listing")


def listing_folder(repo: Path, listing_id: str) -> Path:
    """The working tree's folder of a listing id."""
    for kind in _KINDS:
        folder = repo / "registry" / kind / listing_id
        if (folder / "listing.yaml").is_file():
            return folder
    raise NotFoundError(
        f"no listing {listing_id} under {repo / 'registry'}",
        hint="pass --repo with the marketplace repository, or a listing's folder",
    )


def export_version(repo_path: Path, listing_id: str, version: str, rev: str, target: Path) -> str:
    """Write the listing's folder as it was at the commit that first published `version` (on
    the first-parent history of `rev`) into `target`; that commit's id.

    The smoke test is the one the listing file last had while it was at `version`: a test
    added to or mended in a published version tests that version's image, which a test
    written for a later version might not."""
    repo = open_repository(repo_path)
    try:
        tip = resolve_rev(repo, rev)
        published = version_history(repo, tip, ResultCache(None, "smoke")).first(
            listing_id, version
        )
        if published is None:
            raise NotFoundError(
                f"{listing_id} {version} was never published on {rev}",
                hint="name a version from the listing's history, or leave @VERSION out to test"
                " the working tree's listing",
            )
        first = ObjectID(published.commit.encode())
        root = commit_tree(repo, first)
        for kind in _KINDS:
            path = f"registry/{kind}/{listing_id}"
            if find(repo, root, path, folder=True) is not None:
                export_folder(repo, root, path, target)
                last = _last_test(repo, tip, first, f"{path}/listing.yaml", version)
                if last is not None:
                    _replace_test(target / "listing.yaml", last)
                return published.commit
        raise NotFoundError(f"{published.commit[:12]} has no folder for {listing_id}")
    finally:
        repo.close()


def _last_test(
    repo: Repo, tip: ObjectID, first: ObjectID, path: str, version: str
) -> dict[str, Any] | None:
    """The `test` of the newest listing file at `path` that still says `version`, from `tip`
    back to the commit that published it; None when none has a test."""
    for commit_id in reversed(first_parent_chain(repo, tip, stop={first})):
        raw = read_path(repo, commit_tree(repo, commit_id), path)
        if raw is None:
            continue
        try:
            data = load_yaml(raw, path).data
        except YamlError:
            continue
        if isinstance(data, dict) and str(data.get("version")) == version:
            test = data.get("test")
            if isinstance(test, dict):
                return test
    return None


def _replace_test(listing: Path, test: dict[str, Any]) -> None:
    # A scratch copy that only this run reads: written back as plain YAML, its lines renumbered.
    data = load_yaml(listing.read_bytes(), str(listing)).data
    if not isinstance(data, dict):
        raise InputError(f"{listing}: a listing must be a mapping")
    data["test"] = test
    listing.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def wait_for_marker(
    console: Path, alive: Callable[[], bool], timeout: float, max_bytes: int
) -> str:
    """Wait until the boot marker is on the console; empty when it came, else why not. The
    console is read once, as it grows, and given up on past `max_bytes`."""
    deadline = time.monotonic() + timeout
    seen = 0
    carry = b""
    while time.monotonic() < deadline:
        try:
            with console.open("rb") as stream:
                stream.seek(seen)
                new = stream.read(max_bytes + 1 - seen)
        except FileNotFoundError:
            new = b""
        seen += len(new)
        if BOOT_MARKER in carry + new:
            return ""
        carry = (carry + new)[-len(BOOT_MARKER) :]
        if seen > max_bytes:
            return f"the VM wrote over {max_bytes} bytes to its console before its boot marker"
        if not alive():
            return "qemu exited while the VM was booting"
        time.sleep(0.1)
    return f"no boot marker on the console after {timeout:g}s"


class _ConsoleWatch:
    """Stops the VM when its console grows past `max_bytes` while the test's request runs: the
    request's own limits bound what is read, not what the VM writes to the runner's disk."""

    def __init__(self, console: Path, max_bytes: int, stop: Callable[[], None]) -> None:
        self._console = console
        self._max = max_bytes
        self._stop = stop
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self.flooded = False

    def _watch(self) -> None:
        while not self._done.wait(0.5):
            try:
                size = self._console.stat().st_size
            except FileNotFoundError:
                continue
            if size > self._max:
                self.flooded = True
                self._stop()
                return

    def __enter__(self) -> _ConsoleWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def console_tail(console: Path, lines: int = _CONSOLE_LINES) -> str:
    """The console's last lines, from its last 64 KiB whatever its size."""
    try:
        with console.open("rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(max(0, size - _TAIL_BYTES))
            text = stream.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def changed_listings(repo_path: Path, base: str, head: str) -> list[str]:
    """The ids of the listings whose folders differ from `base` to `head` and that `head`
    still has: what a pull request asks to run."""
    repo = open_repository(repo_path)
    try:
        old, new = (commit_tree(repo, resolve_rev(repo, rev)) for rev in (base, head))
        ids: set[str] = set()
        for path in changed_paths(repo, old, new):
            parts = path.split("/")
            if len(parts) >= 5 and parts[0] == "registry" and parts[1] in _KINDS:
                folder = "/".join(parts[:4])
                if find(repo, new, f"{folder}/listing.yaml", folder=False) is not None:
                    ids.add("/".join(parts[2:4]))
        return sorted(ids)
    finally:
        repo.close()


def read_answer(
    url: str, call: SmokeCall, *, timeout: float, max_bytes: int
) -> tuple[int, bytes, str]:
    """(status, body, note) of one request; the body is cut at `max_bytes` and the read at
    `timeout` seconds, whatever the VM sends, and the note says so. HTTPError when no answer
    came."""
    deadline = time.monotonic() + timeout
    headers = {"Accept-Encoding": "identity"}
    if call.body is not None:
        headers["Content-Type"] = "application/json"
    parts: list[bytes] = []
    size = 0
    # Each read waits at most the time that is left; the loop checks the whole between reads,
    # so an answer trickled a byte at a time still ends on time.
    with (
        Client(timeout=max(0.5, min(timeout, 30.0))) as client,
        client.stream(url, method=call.method, content=call.body, headers=headers) as answer,
    ):
        for chunk in answer.chunks():
            parts.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                body = b"".join(parts)[:max_bytes]
                return answer.status_code, body, f"the answer is over {max_bytes} bytes; cut there"
            if time.monotonic() > deadline:
                note = f"the answer was still coming after {timeout:g}s; cut there"
                return answer.status_code, b"".join(parts), note
        return answer.status_code, b"".join(parts), ""


def call_until_answered(
    url: str, call: SmokeCall, expected: int, timeout: float, max_bytes: int
) -> tuple[int | None, bytes, str]:
    """The first real answer: no answer and a 502/503 while the service starts are tried
    again until `timeout`. An answer of another kind is final, right or wrong."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None, b"", f"no answer within {timeout:g}s ({last})"
        try:
            status, body, note = read_answer(url, call, timeout=left, max_bytes=max_bytes)
        except HTTPError as exc:
            last = exc.message
        else:
            starting = status in (502, 503) and expected not in (502, 503)
            if not starting or deadline - time.monotonic() <= 0.5:
                return status, body, note
            last = f"status {status}"
        time.sleep(0.5)


@dataclass(frozen=True, slots=True)
class BuiltTest:
    """A listing built and its test resolved: what a VM run needs."""

    listing: ModelListing | AgentListing
    test: SmokeTest | None  # None: the listing declares none, so it is built and booted only
    call: SmokeCall | None
    build: BuildResult
    build_seconds: float


def build_for_test(folder: Path, builder: Builder, progress: Progress) -> BuiltTest:
    """Build the listing in `folder` for its test. A test whose pattern RE2 refuses, or that
    calls a port the image does not expose, is an InputError: it could never pass. A listing
    without a test is built and booted only."""
    listing = load_listing(folder)
    test = listing.test
    if test is None:
        progress(f"building {listing.id} {listing.version} (it declares no smoke test)")
        started = time.monotonic()
        result = builder.build(folder / listing.formfile, folder)
        return BuiltTest(listing, None, None, result, time.monotonic() - started)
    if test.expect.pattern is not None:
        try:
            compile_pattern(test.expect.pattern)
        except ValueError as exc:
            raise InputError(
                f"{listing.id}: RE2 refuses the test's pattern: {exc} (REG035)",
                hint="write it in RE2's syntax: no backreferences or lookaround",
            ) from exc
    call = smoke_call(listing, test)
    started = time.monotonic()
    progress(f"building {listing.id} {listing.version}")
    result = builder.build(folder / listing.formfile, folder)
    expose = result.manifest.expose
    port = test.port or (expose[0] if expose else None)
    if port is None or port not in expose:
        raise InputError(
            f"{listing.id}: the test calls port {port}, which the Formfile does not EXPOSE",
            hint="EXPOSE the port the service listens on (REG036)",
        )
    call = SmokeCall(call.method, call.path, port, call.body)
    return BuiltTest(listing, test, call, result, time.monotonic() - started)


def run_built(
    built: BuiltTest,
    runner: Runner,
    settings: SmokeSettings,
    progress: Progress,
    *,
    scratch: Path,
) -> SmokeReport:
    """Boot a built listing, make its test's request, judge the answer, stop the VM."""
    manifest = built.build.manifest
    call, test = built.call, built.test
    seconds = {"build": built.build_seconds}
    memory = min(manifest.memory_mib, settings.memory_cap_mib)
    name = built.listing.id
    progress(f"{name}: booting under qemu ({settings.accel}, {memory} MiB)")
    scratch.mkdir(parents=True, exist_ok=True)
    status: int | None = None
    body = b""
    problems: list[str] = []
    started = time.monotonic()
    with boot(
        runner,
        built.build.image_dir,
        manifest,
        console=scratch / "console.log",
        accel=settings.accel,
        memory_mib=memory,
    ) as vm:
        failed = wait_for_marker(
            vm.console,
            lambda: vm.process.poll() is None,
            settings.boot_timeout,
            settings.max_console,
        )
        if failed:
            problems.append(f"boot: {failed}")
        seconds["boot"] = time.monotonic() - started
        if problems:
            pass
        elif call is None or test is None or call.port is None:
            progress(f"{name}: booted in {seconds['boot']:.1f}s; it declares no smoke test")
        else:
            progress(f"{name}: booted in {seconds['boot']:.1f}s; {call.method} {call.path}")
            mark = time.monotonic()
            url = f"http://127.0.0.1:{vm.ports[call.port]}{call.path}"
            with _ConsoleWatch(vm.console, settings.max_console, vm.stop) as watch:
                status, body, note = call_until_answered(
                    url, call, test.expect.status, test.timeout_seconds, settings.max_answer
                )
            seconds["call"] = time.monotonic() - mark
            if watch.flooded:
                problems.append(
                    f"console: the VM wrote over {settings.max_console} bytes to its console;"
                    " it was stopped"
                )
            if note:
                problems.append(f"call: {note}")
            if status is not None:
                problems.extend(judge(test, status, body))
        tail = console_tail(vm.console)
    return SmokeReport(
        listing=name,
        version=built.listing.version,
        build_id=manifest.build_id,
        call=call,
        status=status,
        body=body,
        problems=tuple(problems),
        console_tail=tail,
        seconds=seconds,
    )


def run_smoke_test(
    folder: Path,
    builder: Builder,
    runner: Runner,
    settings: SmokeSettings,
    progress: Progress,
    *,
    scratch: Path,
) -> SmokeReport:
    """Build, boot and test the listing in `folder`; the report, passed or not."""
    built = build_for_test(folder, builder, progress)
    return run_built(built, runner, settings, progress, scratch=scratch)
