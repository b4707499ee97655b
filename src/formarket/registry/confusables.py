"""Names that a reader could take for one another: `acme/llama` and `acrne/llama`."""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Collection, Iterable

__all__ = ["confusable_pairs", "skeleton"]

# Look-alikes folded to one letter, longest first (Unicode's confusables, for what a listing
# name can hold after NFKC).
_FOLDS = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("0", "o"), ("1", "l"), ("i", "l"), ("5", "s"))


def skeleton(name: str) -> str:
    text = unicodedata.normalize("NFKC", name).casefold()
    text = "".join(c for c in text if c.isalnum() or c == "/")
    for a, b in _FOLDS:
        text = text.replace(a, b)
    return text


def _one_edit(a: str, b: str) -> bool:
    """True when a and b differ by at most one insertion, deletion or substitution."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def confusable_pairs(
    looks: Iterable[tuple[str, str]], focus: Collection[str] | None = None
) -> list[tuple[str, str]]:
    """Pairs of listing ids that a reader could take for one another: slugs that look the
    same (case, separators, look-alike letters), from the same publisher or from publishers
    whose names are one slip apart. `looks` are (id, skeleton of its slug) pairs, the
    skeleton computed once when the listing was checked. Each pair once, in sorted order.
    With `focus`, only pairs that involve one of its ids."""
    unique = set(looks)
    if focus is not None:
        # A pull request touches a few listings: only their look-alike groups can pair them,
        # and sorting the whole registry's names was most of the time of this rule.
        wanted = {slug_look for ident, slug_look in unique if ident in focus}
        unique = {pair for pair in unique if pair[1] in wanted}
    by_slug: dict[str, list[tuple[str, str]]] = defaultdict(list)
    publisher_look: dict[str, str] = {}
    for ident, slug_look in sorted(unique):
        publisher = ident.partition("/")[0]
        if publisher not in publisher_look:
            publisher_look[publisher] = skeleton(publisher)
        by_slug[slug_look].append((ident, publisher_look[publisher]))
    pairs: list[tuple[str, str]] = []
    for group in by_slug.values():
        for i, (id_a, pub_a) in enumerate(group):
            for id_b, pub_b in group[i + 1 :]:
                if pub_a == pub_b or (min(len(pub_a), len(pub_b)) >= 4 and _one_edit(pub_a, pub_b)):
                    pairs.append((id_a, id_b))
    if focus is not None:
        pairs = [(a, b) for a, b in pairs if a in focus or b in focus]
    return sorted(pairs)
