"""Model weights: fetched once per build host by their digest, verified, and laid out on a
read-only data disk for the VM.

    <cache>/weights/files/<sha256>        a verified file, named by its digest
    <cache>/weights/partial/<sha256>.part  a download under way; the next try resumes it
    <cache>/weights/disks/<id>.img         an ext4 data disk of a set of files (raw, read-only)
    <cache>/weights/locks/<sha256>.lock    one download of a file at a time on this host

A listing names each weight file by URL, SHA-256 and size (`WeightFile`). Fetching one:

- a file already in `files/` is not fetched again: two versions (or two listings) that share a
  file download it once. It was renamed into place only after its digest was checked;
- otherwise `url` and then each of `mirrors` is tried in turn. A download that broke off is
  resumed from where it stopped (an HTTP range request), and begins again when the server
  does not resume;
- the declared size is the limit: a server that announces or sends more is cut off. A size
  over `max_bytes` (the farm's limit per file) is refused before anything is fetched;
- the bytes are hashed as they arrive; a wrong digest discards them and tries the next URL;
- redirects are followed (at most five, http and https only), since weight hosts hand out
  CDN addresses. The content is checked by digest, so where it came from cannot change what
  the VM reads; but a URL comes from a listing's author, so by default no address on this
  host's private networks is fetched from (`allow_private` is for the tests' own servers).

A data disk holds a set of files at their `disk_path`s and is named by that set, so versions
with the same weights share one disk and a rebuild of the code copies nothing. It is raw ext4,
made by `mke2fs -d` from hard links to the cached files (no copy when they share a filesystem).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from formarket.builder.basecache import file_lock
from formarket.errors import FormarketError
from formarket.httpclient import Client, HTTPError
from formarket.process import ProcessError, Runner
from formarket.schemas.listing import WeightFile

__all__ = [
    "DEFAULT_MAX_BYTES",
    "Fetched",
    "WeightCache",
    "WeightsError",
    "data_disk",
    "disk_id",
    "fetch",
]

# The largest weight file a build host fetches unless told otherwise (the largest single
# safetensors shards published today are a few tens of GB).
DEFAULT_MAX_BYTES = 256 << 30
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20
_PROGRESS_SECONDS = 2.0
# Room on a data disk beyond its files: ext4's own metadata and a little slack.
_DISK_SLACK = 16 << 20
_PER_FILE_SLACK = 64 << 10

Progress = Callable[[str], None]
ClientFactory = Callable[[], Client]


class WeightsError(FormarketError):
    """A weight file could not be had, or was not what its listing says."""


class _Failed(Exception):
    """One URL did not give the file; the reason is said in the error that lists them all."""


@dataclass(frozen=True, slots=True)
class Fetched:
    path: Path
    downloaded: int  # bytes fetched now (0: it was in the cache)
    url: str | None  # where it came from now (None: the cache)


class WeightCache:
    """The weights kept on one build host, by digest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def file(self, sha256: str) -> Path:
        return self.root / "files" / sha256

    def partial(self, sha256: str) -> Path:
        return self.root / "partial" / f"{sha256}.part"

    def disk(self, disk: str) -> Path:
        return self.root / "disks" / f"{disk}.img"

    def locked(self, name: str) -> AbstractContextManager[None]:
        """One holder at a time on this host (other builds of the same file wait)."""
        return file_lock(self.root / "locks" / f"{name}.lock")


def fetch(
    weight: WeightFile,
    cache: WeightCache,
    *,
    client: ClientFactory = Client,
    max_bytes: int = DEFAULT_MAX_BYTES,
    allow_private: bool = False,
    progress: Progress | None = None,
) -> Fetched:
    """The verified file of `weight` in the cache, fetched if it is not there yet."""
    say = progress or (lambda _line: None)
    name = weight.disk_path
    if weight.size_bytes > max_bytes:
        raise WeightsError(
            f"{name}: {weight.size_bytes:,} bytes is more than this host fetches"
            f" ({max_bytes:,} bytes a file)",
            hint="split the weights into smaller files, or raise the farm's limit",
        )
    final = cache.file(weight.sha256)
    with cache.locked(weight.sha256):
        if _complete(final, weight.size_bytes):
            return Fetched(final, 0, None)
        partial = cache.partial(weight.sha256)
        partial.parent.mkdir(parents=True, exist_ok=True)
        failures: list[str] = []
        for url in (weight.url, *weight.mirrors):
            try:
                fetched = _download(url, weight, partial, client, allow_private, say)
            except _Failed as exc:
                failures.append(f"{url}: {exc}")
                say(f"{name}: {url}: {exc}")
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
            return Fetched(final, fetched, url)
    tried = "\n".join(f"  {line}" for line in failures)
    raise WeightsError(
        f"{name} ({weight.sha256[:12]}, {weight.size_bytes:,} bytes) could not be fetched"
        f" from any of its {len(failures)} URL(s):\n{tried}",
        hint="check the URLs, sha256 and size_bytes in listing.yaml; a download that broke"
        " off resumes on the next build",
    )


def _complete(path: Path, size: int) -> bool:
    try:
        return path.stat().st_size == size
    except FileNotFoundError:
        return False


def _download(
    url: str,
    weight: WeightFile,
    partial: Path,
    client: ClientFactory,
    allow_private: bool,
    say: Progress,
) -> int:
    """Fetch into `partial` (resuming it) and check it; the bytes fetched now."""
    size = weight.size_bytes
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    digest = _hash_of(partial) if have else hashlib.sha256()
    fetched = 0
    with client() as http:
        target = url
        for _hop in range(_MAX_REDIRECTS + 1):
            _check_address(target, allow_private)
            headers = {"Range": f"bytes={have}-"} if have else {}
            try:
                with http.stream(target, headers=headers) as answer:
                    status = answer.status_code
                    if status in (301, 302, 303, 307, 308):
                        location = answer.headers.get("location")
                        if not location:
                            raise _Failed(f"HTTP {status} without a Location")
                        target = urljoin(target, location)
                        continue
                    if status == 416 and have == size:
                        break  # all of it is here already: check it below
                    if status == 206 and have:
                        begins = answer.headers.get("content-range", "")
                        if not begins.startswith(f"bytes {have}-"):
                            raise _Failed(f"the server resumed elsewhere ({begins!r})")
                    elif status == 200:
                        if have:  # the server does not resume: begin again
                            partial.unlink()
                            have, digest = 0, hashlib.sha256()
                    else:
                        raise _Failed(f"HTTP {status}")
                    announced = answer.headers.get("content-length", "")
                    if announced.isdigit() and have + int(announced) > size:
                        raise _Failed(
                            f"the server has {have + int(announced):,} bytes; the listing"
                            f" says {size:,}"
                        )
                    fetched += _receive(answer.chunks(), partial, digest, have, weight, say)
                    have = partial.stat().st_size
                    break
            except HTTPError as exc:
                raise _Failed(exc.message) from exc
        else:
            raise _Failed(f"more than {_MAX_REDIRECTS} redirects")
    if have != size:
        raise _Failed(f"the body ended at {have:,} of {size:,} bytes (kept, to resume)")
    if digest.hexdigest() != weight.sha256:
        partial.unlink()
        raise _Failed(f"wrong SHA-256: {digest.hexdigest()}, not {weight.sha256}")
    return fetched


def _receive(
    chunks: Iterator[bytes],
    partial: Path,
    digest: hashlib._Hash,
    have: int,
    weight: WeightFile,
    say: Progress,
) -> int:
    """Append what arrives to `partial`, hashing it; never past the declared size (a server
    that sends more is not believed about the rest either: what it sent is discarded)."""
    size = weight.size_bytes
    got = 0
    started = last = time.monotonic()
    overran = False
    with partial.open("ab") as out:
        try:
            for chunk in chunks:
                if have + got + len(chunk) > size:
                    overran = True
                    break
                out.write(chunk)
                digest.update(chunk)
                got += len(chunk)
                now = time.monotonic()
                if now - last >= _PROGRESS_SECONDS:
                    last = now
                    rate = got / max(now - started, 1e-6)
                    say(
                        f"{weight.disk_path}: {_mib(have + got)} of {_mib(size)}"
                        f" ({(have + got) / size:.0%}), {_mib(rate)}/s"
                    )
        finally:
            out.flush()
            os.fsync(out.fileno())
    if overran:
        partial.unlink()
        raise _Failed(f"the server sent more than the listing's {size:,} bytes")
    return got


def _hash_of(path: Path) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while block := source.read(_CHUNK):
            digest.update(block)
    return digest


def _mib(count: float) -> str:
    return f"{count / (1 << 20):,.1f} MiB"


def _check_address(url: str, allow_private: bool) -> None:
    """Refuse what is not http(s), and (unless allowed) a host on a private network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Failed(f"not an http(s) URL: {url[:200]!r}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise _Failed(f"{parts.hostname}: cannot be resolved ({exc})") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise _Failed(f"{parts.hostname} is on a private network ({address}): not fetched")


def disk_id(weights: Sequence[WeightFile]) -> str:
    """The data disk's name: a digest of the files it holds and where."""
    lines = sorted(f"{w.disk_path}\0{w.sha256}\n" for w in weights)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def data_disk(
    weights: Sequence[WeightFile],
    cache: WeightCache,
    runner: Runner,
    *,
    fetch_one: Callable[[WeightFile], Fetched],
) -> Path:
    """The read-only data disk of `weights` (fetched first, with `fetch_one`), made once."""
    seen: dict[str, str] = {}
    for weight in weights:
        other = seen.setdefault(weight.disk_path, weight.sha256)
        if other != weight.sha256:
            raise WeightsError(
                f"two weight files would lie at {weight.disk_path} on the data disk",
                hint="give one of them a `path:` of its own in listing.yaml",
            )
    name = disk_id(weights)
    target = cache.disk(name)
    files = [(w, fetch_one(w).path) for w in weights]
    with cache.locked(f"disk-{name}"):
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = cache.root / "tmp" / uuid.uuid4().hex
        image = staging.with_suffix(".img")
        try:
            tree = staging / "tree"
            for weight, path in files:
                place = tree / weight.disk_path
                place.parent.mkdir(parents=True, exist_ok=True)
                if not place.exists():
                    _link_or_copy(path, place)
            total = sum(w.size_bytes for w in weights) + _PER_FILE_SLACK * len(weights)
            mib = -(-(total + _DISK_SLACK + total // 20) // (1 << 20))
            runner.run(
                [
                    "mke2fs", "-q", "-t", "ext4", "-L", "weights", "-m", "0",
                    "-U", str(uuid.UUID(name[:32])), "-E", f"hash_seed={uuid.UUID(name[32:])}",
                    "-d", tree, "-F", image, f"{mib}M",
                ],
                timeout=3600,
                hint="mke2fs comes with e2fsprogs (`make` installs it)",
            )  # fmt: skip
            os.replace(image, target)
        except ProcessError as exc:
            raise WeightsError(
                f"the weights' data disk could not be made: {exc.message}", hint=exc.hint
            ) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            image.unlink(missing_ok=True)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
