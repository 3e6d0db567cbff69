"""The routing table: host → [(prefix, service)] longest prefix first. Pure, no I/O.

Lookup (kamal-proxy §4): exact host, else the one-label wildcard `*.<rest after first dot>`,
else the catch-all `""`. The host entry found is final: no fallback when no prefix matches.
A prefix matches when `path + "/"` starts with `prefix + "/"` (segment boundary); `/` matches all.

`RoutingTable` is immutable once built (the router builds a new one on every change), so the host
part of a lookup (exact, wildcard, catch-all) is memoised per Host for the table's lifetime: a
keep-alive data plane then pays one dict lookup per request, plus the prefix scan when the host
has more than the "/" prefix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

S = TypeVar("S")

#: Distinct Host values remembered per table; a flood of made-up hosts clears the memo.
HOST_MEMO_LIMIT = 1024


class Binding(Generic[S]):
    """One (prefix, service) claim of a host. A plain slotted class, not a frozen dataclass:
    mypyc compiles this module, and it cannot build a generic frozen dataclass. Not changed
    after the table is built."""

    __slots__ = ("prefix", "service")

    def __init__(self, prefix: str, service: S) -> None:
        self.prefix = prefix
        self.service = service

    def __repr__(self) -> str:
        return f"Binding({self.prefix!r}, {self.service!r})"


def prefix_matches(prefix: str, path: str) -> bool:
    if prefix == "/":
        return True
    return (path + "/").startswith(prefix + "/") or path == prefix


def wildcard_for(host: str) -> str | None:
    """`a.b.example.com` → `*.b.example.com`; None when the host has no dot."""
    _, dot, rest = host.partition(".")
    return f"*.{rest}" if dot and rest else None


class RoutingTable(Generic[S]):
    def __init__(self, claims: Iterable[tuple[str, str, S]] = ()) -> None:
        """`claims` are (host, prefix, service); host "" is the catch-all."""
        table: dict[str, list[Binding[S]]] = {}
        for host, prefix, service in claims:
            table.setdefault(host, []).append(Binding(prefix, service))
        for bindings in table.values():
            bindings.sort(key=lambda b: len(b.prefix), reverse=True)
        self._table = table
        #: host -> its bindings (longest prefix first), or the single "/" binding, or None.
        self._memo: dict[str, tuple[Binding[S], ...] | Binding[S] | None] = {}

    def host_entry(self, host: str) -> list[Binding[S]] | None:
        entry = self._table.get(host)
        if entry is not None:
            return entry
        wildcard = wildcard_for(host)
        if wildcard is not None:
            entry = self._table.get(wildcard)
            if entry is not None:
                return entry
        return self._table.get("")

    def lookup(self, host: str, path: str) -> Binding[S] | None:
        memo = self._memo
        try:
            found = memo[host]
        except KeyError:
            entry = self.host_entry(host)
            if entry is None:
                found = None
            elif len(entry) == 1 and entry[0].prefix == "/":
                found = entry[0]
            else:
                found = tuple(entry)
            if len(memo) >= HOST_MEMO_LIMIT:
                memo.clear()
            memo[host] = found
        if found is None or type(found) is Binding:
            return found
        for binding in found:  # type: ignore[union-attr]
            if prefix_matches(binding.prefix, path):
                return binding
        return None

    def owner(self, host: str, prefix: str) -> S | None:
        """The service that claims exactly (host, prefix), if any."""
        for binding in self._table.get(host, ()):
            if binding.prefix == prefix:
                return binding.service
        return None
