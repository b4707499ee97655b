"""Reading YAML that comes from outside, safely and with every value's line.

What is refused, with the file, line and column: anything but UTF-8, NUL and other control
characters, files over a size limit, more than one document, explicit tags (no object
construction, no `!!binary`, no custom tags), merge keys, duplicate keys, non-string keys,
nesting deeper than a limit and alias expansion past a node budget (the "billion laughs").

Plain scalars resolve by YAML 1.2's core schema, so `no`, `on` and `yes` stay strings and a
version such as `1.10` is only a number where the schema asks for one.

Two parsers answer the same question. libyaml (through PyYAML's composer) is the reference and
gives positions. A much faster Rust parser (`yaml_rs`) is tried first on files that cannot hold
the constructs where the two differ (tags, anchors, merge keys, directives, several documents,
dates, `0b`/`0o` numbers, underscores in numbers); anything it refuses, or any file that could
differ, goes to the reference. Positions are computed lazily, by the reference parser, only when
a finding needs one: valid files never pay for them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from formarket.errors import LocatedError, Location

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "LoadedYaml",
    "YamlError",
    "load_yaml",
    "load_yaml_strict",
    "preload_fast_reader",
]

YamlPath = tuple[str | int, ...]


class YamlError(LocatedError):
    """A YAML file that cannot be read as data; `code` says which rule it broke."""

    def __init__(self, location: Location, message: str, *, code: str, hint: str = "") -> None:
        super().__init__(location, message, hint=hint)
        self.code = code


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int = 1 << 20
    max_depth: int = 64
    max_nodes: int = 200_000


DEFAULT_LIMITS = Limits()

# Codes (stable, referenced by the registry's rules).
ENCODING = "YAML001"
SYNTAX = "YAML002"
TOO_LARGE = "YAML003"
TAG = "YAML004"
DUPLICATE_KEY = "YAML005"
KEY_TYPE = "YAML006"
BOMB = "YAML007"
DOCUMENTS = "YAML008"

# The tag plain (unquoted, untagged) scalars get, so that `!!str 12` stays a string.
_PLAIN = "tag:formarket,2026:plain"
_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_EXPLICIT_OK = {
    _PLAIN,
    _STR,
    _SEQ,
    _MAP,
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1023-core-schema).
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_TRUE = re.compile(r"^(?:true|True|TRUE)$")
_FALSE = re.compile(r"^(?:false|False|FALSE)$")
_INT10 = re.compile(r"^[-+]?[0-9]+$")
_INT8 = re.compile(r"^0o[0-7]+$")
_INT16 = re.compile(r"^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INF = re.compile(r"^[-+]?\.(?:inf|Inf|INF)$")
_NAN = re.compile(r"^\.(?:nan|NaN|NAN)$")

# Bytes that may make the fast parser and the reference disagree, or that need the
# reference's checks: tags, anchors and aliases, merge keys, directives, tabs and control
# characters; and the multi-byte BOM and non-ASCII line breaks. A `translate` that deletes every
# other byte finds the single ones in well under a microsecond, where a regular expression took
# tens: every listing of a registry passes here.
_SPECIAL_BYTES = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20)) + b"\x7f!&*<%\t"
_ORDINARY_BYTES = bytes(b for b in range(256) if b not in _SPECIAL_BYTES)
_SPECIAL_SEQUENCES = (b"\xc2\x85", b"\xe2\x80\xa8", b"\xe2\x80\xa9", b"\xef\xbb\xbf")
# The fast parser reads numbers more widely than the core schema (`1_000`, `_1`, `0b10`):
# any token that could be such a number goes to the reference.
_TOKEN_EDGE = re.compile(rb"[\s,\[\]{}:#\"']")
_WIDE_NUMBER = re.compile(rb"[-+]?[0-9_.]*(?:[eE][-+]?[0-9_]*)?|[-+]?0[box][0-9a-fA-F_]*")
# Places where a token could be such a number: `_` next to a digit or a dot, or a `0b`, `0o`,
# `0x` prefix. (Any place in a token leads to that token: none of these characters ends one.)
# Two patterns, each starting with a fixed character that the regular expression engine looks
# for quickly: they take half the time of looking at every `_` in Python, where one pattern of
# three alternatives took longer than that.
_UNDERSCORE_BY_NUMBER = re.compile(rb"_(?:(?=[0-9.])|(?<=[0-9.]_))")
_PREFIXED = re.compile(rb"0[box]")
# What else the fast parser reads differently (dates, complex keys) it returns as values that
# are not plain data, and `_plain_data` sends those to the reference.


def _could_differ(data: bytes) -> bool:
    if data.translate(None, _ORDINARY_BYTES):
        return True
    if not data.isascii() and any(seq in data for seq in _SPECIAL_SEQUENCES):
        return True
    if data.startswith((b"---", b"...")) or b"\n---" in data or b"\n..." in data:
        return True
    return _has_wide_number(data)


def _has_wide_number(data: bytes) -> bool:
    suspects = chain(_UNDERSCORE_BY_NUMBER.finditer(data), _PREFIXED.finditer(data))
    return any(_wide_number_at(data, found.start()) for found in suspects)


def _wide_number_at(data: bytes, at: int) -> bool:
    start = at
    while start > 0 and not _TOKEN_EDGE.match(data, start - 1):
        start -= 1
    end = at + 1
    while end < len(data) and not _TOKEN_EDGE.match(data, end):
        end += 1
    return _WIDE_NUMBER.fullmatch(data, start, end) is not None


class _Loader(yaml.CSafeLoader):
    """libyaml's parser and composer with no implicit typing: plain scalars get a tag of their
    own and are typed afterwards by the core schema; explicitly tagged ones keep their tag."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


@dataclass
class _Builder:
    path: str
    limits: Limits
    positions: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    nodes: int = 0

    def fail(self, node: yaml.Node, code: str, message: str, hint: str = "") -> YamlError:
        mark = node.start_mark
        return YamlError(
            Location(self.path, mark.line + 1, mark.column + 1), message, code=code, hint=hint
        )

    def build(self, node: yaml.Node, where: YamlPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > self.limits.max_nodes:
            raise self.fail(
                node,
                BOMB,
                f"more than {self.limits.max_nodes} values after expanding aliases",
                "a listing never needs this many; anchors and aliases that multiply are refused",
            )
        if depth > self.limits.max_depth:
            raise self.fail(node, BOMB, f"nested deeper than {self.limits.max_depth} levels")
        self.positions.setdefault(where, (node.start_mark.line + 1, node.start_mark.column + 1))
        if node.tag not in _EXPLICIT_OK:
            raise self.fail(
                node,
                TAG,
                f"the tag {node.tag!r} is not allowed",
                "write plain values; formarket reads YAML as data only",
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, where, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != _SEQ:
                raise self.fail(node, TAG, f"a sequence cannot be tagged {node.tag!r}")
            return [self.build(item, (*where, i), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, where: YamlPath, depth: int) -> dict[str, Any]:
        if node.tag != _MAP:
            raise self.fail(node, TAG, f"a mapping cannot be tagged {node.tag!r}")
        out: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, KEY_TYPE, "a key must be a plain string")
            if key_node.value == "<<" and key_node.tag == _PLAIN:
                raise self.fail(
                    key_node, TAG, "merge keys (<<) are not allowed", "write the keys out in full"
                )
            key = self._scalar(key_node)
            if not isinstance(key, str):
                raise self.fail(
                    key_node,
                    KEY_TYPE,
                    f"the key {key_node.value!r} is not a string",
                    "quote it if a string is meant",
                )
            if key in out:
                raise self.fail(
                    key_node,
                    DUPLICATE_KEY,
                    f"duplicate key {key!r} (first at line {first_line[key]})",
                    "a key may appear once; remove or merge the repeat",
                )
            first_line[key] = key_node.start_mark.line + 1
            out[key] = self.build(value_node, (*where, key), depth + 1)
        return out

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        value: str = node.value
        tag = node.tag
        if tag == _PLAIN:
            return _resolve_plain(value)
        if tag == _STR:
            return value
        typed = _resolve_plain(value)
        expected = {
            "tag:yaml.org,2002:int": int,
            "tag:yaml.org,2002:float": float,
            "tag:yaml.org,2002:bool": bool,
            "tag:yaml.org,2002:null": type(None),
        }[tag]
        if expected is float and type(typed) is int:
            return float(typed)
        if type(typed) is not expected:
            raise self.fail(node, TAG, f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]}")
        return typed


def _resolve_plain(value: str) -> Any:
    if _NULL.match(value):
        return None
    if _TRUE.match(value):
        return True
    if _FALSE.match(value):
        return False
    if _INT10.match(value):
        return int(value)
    if _INT8.match(value):
        return int(value[2:], 8)
    if _INT16.match(value):
        return int(value[2:], 16)
    if _FLOAT.match(value):
        return float(value)
    if _INF.match(value):
        return -math.inf if value.startswith("-") else math.inf
    if _NAN.match(value):
        return math.nan
    return value


def _decode(data: bytes, path: str, limits: Limits) -> str:
    if len(data) > limits.max_bytes:
        raise YamlError(
            Location(path),
            f"file is {len(data)} bytes; the limit is {limits.max_bytes}",
            code=TOO_LARGE,
            hint="keep large content out of YAML: link to it, or put it in a file of its own",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise YamlError(
            Location(path, line, column),
            f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start a character here",
            code=ENCODING,
            hint="save the file as UTF-8",
        ) from exc
    text = text.removeprefix("\ufeff")
    odd = _AMBIGUOUS_BREAK.search(text)
    if odd is not None:
        line = text.count("\n", 0, odd.start()) + 1
        raise YamlError(
            Location(path, line, odd.start() - text.rfind("\n", 0, odd.start())),
            f"the character U+{ord(odd.group()):04X} is a line break in some YAML versions and"
            " not in others",
            code=ENCODING,
            hint="use a plain line break, or write it as an escape in a double-quoted string",
        )
    return text


# NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR: YAML 1.1 breaks lines at them, 1.2 does not, so
# a file holding them means different things to different readers.
_AMBIGUOUS_BREAK = re.compile("[\u0085\u2028\u2029]")


_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class LoadedYaml:
    """A YAML document as plain data, and the position of any value on request."""

    path: str
    data: Any
    _positions: Callable[[], dict[YamlPath, tuple[int, int]]]

    def locate(self, where: YamlPath) -> Location:
        """Where the value at `where` (keys and indexes) starts, or its nearest parent."""
        positions = self._positions()
        where = tuple(where)
        while where and where not in positions:
            where = where[:-1]
        line, column = positions.get(where, (1, 1))
        return Location(self.path, line, column)

    def validated(self, model: type[_Model], what: str, *, hint: str = "") -> _Model:
        """The document as `model`; its first problem is a LocatedError at the value's line,
        "WHAT: FIELD: what is wrong"."""
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = tuple(first["loc"])
            field = ".".join(str(part) for part in where) or "(top level)"
            raise LocatedError(
                self.locate(where), f"{what}: {field}: {first['msg']}", hint=hint
            ) from exc


def load_yaml_strict(
    data: bytes, path: str, limits: Limits = DEFAULT_LIMITS
) -> tuple[Any, dict[YamlPath, tuple[int, int]]]:
    """The reference reader: data and positions, or a YamlError."""
    text = _decode(data, path, limits)
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.composer.ComposerError as exc:
        raise _marked(exc, path, DOCUMENTS if "single document" in str(exc) else SYNTAX) from exc
    except yaml.MarkedYAMLError as exc:
        raise _marked(exc, path, SYNTAX) from exc
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise YamlError(
            Location(path, line, column),
            f"character U+{exc.character:04X} is not allowed in YAML"
            if isinstance(exc.character, int)
            else f"not valid YAML: {exc.reason}",
            code=SYNTAX,
            hint="remove control characters from the file",
        ) from exc
    except yaml.YAMLError as exc:  # libyaml reports some errors without a mark
        raise YamlError(Location(path), f"not valid YAML: {exc}", code=SYNTAX) from exc
    if node is None:
        return None, {}
    builder = _Builder(path, limits)
    try:
        value = builder.build(node, (), 0)
    except RecursionError as exc:
        raise YamlError(Location(path), "nested too deeply", code=BOMB) from exc
    return value, builder.positions


def _marked(exc: yaml.MarkedYAMLError, path: str, code: str) -> YamlError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    if mark is None:
        return YamlError(Location(path), f"not valid YAML: {problem}", code=code)
    hint = ""
    if "\\t" in str(problem) or "tab" in str(problem):
        hint = "indent with spaces, not tabs"
    return YamlError(
        Location(path, mark.line + 1, mark.column + 1),
        f"not valid YAML: {problem}",
        code=code,
        hint=hint,
    )


def load_yaml(data: bytes, path: str, limits: Limits = DEFAULT_LIMITS) -> LoadedYaml:
    """Read one YAML document from outside input; raises YamlError with its location."""
    if len(data) <= limits.max_bytes and not _could_differ(data):
        fast = _load_fast(data)
        if fast is not _REFUSED:
            cache: dict[YamlPath, tuple[int, int]] | None = None

            def positions() -> dict[YamlPath, tuple[int, int]]:
                nonlocal cache
                if cache is None:
                    cache = load_yaml_strict(data, path, limits)[1]
                return cache

            return LoadedYaml(path, fast, positions)
    value, table = load_yaml_strict(data, path, limits)
    return LoadedYaml(path, value, lambda: table)


_REFUSED = object()


def preload_fast_reader() -> None:
    """Load the fast reader now, in this thread. A server that reads documents in worker
    threads must call it from its main thread first: yaml_rs first imported in a thread that
    then ends crashes the process (a segmentation fault) when another thread uses it."""
    import yaml_rs  # start-up: only servers that read YAML in worker threads load it early

    del yaml_rs


def _load_fast(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return _REFUSED
    try:
        import yaml_rs  # start-up: loaded with the first document read

        value = yaml_rs.loads(text)
    except Exception:
        return _REFUSED
    # The fast parser returns a list for several documents; only mappings are trusted here.
    if not isinstance(value, dict) or not _plain_data(value):
        return _REFUSED
    return value


def _plain_data(value: dict[str, Any]) -> bool:
    """True when `value` holds only what the reference reader can produce: string keys and
    JSON's types (the fast reader also makes dates and tuple keys)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    limit = DEFAULT_LIMITS.max_depth
    while stack:
        node, depth = stack.pop()
        kind = type(node)
        if kind is dict:
            if depth > limit:
                return False
            for key, item in node.items():
                if type(key) is not str:
                    return False
                if type(item) in _CONTAINERS:
                    stack.append((item, depth + 1))
                elif type(item) not in _SCALARS:
                    return False
        elif kind is list:
            if depth > limit:
                return False
            for item in node:
                if type(item) in _CONTAINERS:
                    stack.append((item, depth + 1))
                elif type(item) not in _SCALARS:
                    return False
    return True


_CONTAINERS = frozenset({dict, list})
_SCALARS = frozenset({str, int, float, bool, type(None)})
