"""The service's policy: which heap properties each client may use, its quotas, a global cap.

Example:
    >>> policy = Policy.from_text('[default]\\nmax_buffers = 8\\n', "policy.toml")
    >>> ident = Identity(pid=1, uid=1000, gid=1000, groups=(), comm="app")
    >>> policy.limits_for(ident).max_buffers.value
    8

A policy file (TOML, ``devalloc serve --policy FILE``, re-read on SIGHUP)::

    [global]                     # the whole service
    max_bytes = "4G"             # bytes handed out to all clients together
    max_buffers = 65536

    [default]                    # every client
    max_bytes = "1G"             # bytes one client holds through the service
    max_buffers = 1024
    max_collections = 16         # shared collections one client takes part in at once
    contiguous = true            # may get physically contiguous (CMA) memory
    max_contiguous_bytes = "64M"
    protected = false            # may get protected memory
    cpu_only = true              # may get CPU-only (memfd) buffers

    [[rule]]                     # applies to the clients it matches, in file order
    name = "video"
    group = "video"              # or gid = 44, uid = 1000, user = "alice"
    protected = true
    max_bytes = "2G"

Every setting remembers the rule that set it, so a refusal names it (``rule 'video' (policy.toml
rule 1): max_bytes = 2147483648``). Without a policy file the built-in defaults apply: the global
cap is devalloc's process total (:func:`devalloc.limits.max_total`), a client may hold half of it,
1024 buffers and 16 collections, 256 MiB of contiguous memory, and only root may use protected
memory.
"""

from __future__ import annotations

import dataclasses
import functools
import grp
import pwd
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import limits
from .._toml import parse_toml, read_text_file
from ..errors import UsageError
from .protocol import PolicyError, QuotaError

__all__ = ["Identity", "Limits", "Policy", "Setting", "Usage"]


@dataclass(frozen=True)
class Identity:
    """Who a client is: SO_PEERCRED's pid, uid and gid, its supplementary groups and its
    command name (``/proc/PID/comm``), all read when it connected."""

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...]
    comm: str

    def __hash__(self) -> int:
        # an identity is a dict key on every request (policy limits, buffer names): its hash
        # is worked out once (the dataclass's own __hash__ hashes every field every time)
        return self._hash

    @functools.cached_property
    def _hash(self) -> int:
        return hash((self.pid, self.uid, self.gid, self.groups, self.comm))

    def describe(self) -> str:
        """``'app' (pid 412, uid 1000)``: how messages name a client."""
        return f"{self.comm!r} (pid {self.pid}, uid {self.uid})"

    def to_json(self) -> dict[str, Any]:
        """pid, uid, gid, groups and comm."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Setting:
    """One limit and the rule that set it."""

    value: int | bool
    rule: str


@dataclass(frozen=True)
class Limits:
    """The limits of one client (from the defaults and every rule that matches it)."""

    max_bytes: Setting
    max_buffers: Setting
    max_collections: Setting
    contiguous: Setting
    max_contiguous_bytes: Setting
    protected: Setting
    cpu_only: Setting


@dataclass(frozen=True)
class Usage:
    """What a client holds (or would hold after a request): bytes, buffers, collections, and
    bytes of contiguous memory."""

    bytes: int = 0
    buffers: int = 0
    collections: int = 0
    contiguous_bytes: int = 0


_CLIENT_INT = ("max_bytes", "max_buffers", "max_collections", "max_contiguous_bytes")
_CLIENT_BOOL = ("contiguous", "protected", "cpu_only")
_SIZES = ("max_bytes", "max_contiguous_bytes")
_GLOBAL = ("max_bytes", "max_buffers")
_MATCH = ("uid", "gid", "user", "group")
_BUILTIN = "built-in default"


def _builtin_client(global_bytes: int) -> dict[str, Setting]:
    return {
        "max_bytes": Setting(max(global_bytes // 2, 1), _BUILTIN),
        "max_buffers": Setting(1024, _BUILTIN),
        "max_collections": Setting(16, _BUILTIN),
        "contiguous": Setting(True, _BUILTIN),
        "max_contiguous_bytes": Setting(256 << 20, _BUILTIN),
        "protected": Setting(False, _BUILTIN),
        "cpu_only": Setting(True, _BUILTIN),
    }


@dataclass(frozen=True)
class _Rule:
    name: str
    uid: int | None
    gid: int | None
    settings: Mapping[str, int | bool]

    def matches(self, ident: Identity) -> bool:
        if self.uid is not None and ident.uid != self.uid:
            return False
        return self.gid is None or self.gid == ident.gid or self.gid in ident.groups


#: A client's limits as plain values: may use contiguous, protected, CPU-only memory; max bytes,
#: buffers, collections, contiguous bytes.
_Plain = tuple[bool, bool, bool, int, int, int, int]


class Policy:
    """A parsed policy (see the module doc). ``Policy()`` is the built-in default.

    Args:
        source: where it came from, for messages.
    """

    def __init__(
        self,
        *,
        global_settings: Mapping[str, Setting] | None = None,
        default: Mapping[str, Setting] | None = None,
        rules: tuple[_Rule, ...] = (),
        source: str = "built-in policy",
    ) -> None:
        cap = limits.max_total()
        self.global_max_bytes = Setting(cap, _BUILTIN)
        self.global_max_buffers = Setting(1 << 20, _BUILTIN)
        if global_settings:
            self.global_max_bytes = global_settings.get("max_bytes", self.global_max_bytes)
            self.global_max_buffers = global_settings.get("max_buffers", self.global_max_buffers)
        self._default = _builtin_client(int(self.global_max_bytes.value))
        self._default.update(default or {})
        self._rules = rules
        self.source = source
        #: per identity (a policy is fixed): its limits, and them as plain values (allows)
        self._limits: dict[Identity, tuple[Limits, _Plain]] = {}

    @classmethod
    def load(cls, path: str) -> Policy:
        """Read and check a policy file.

        Raises:
            UsageError: no such file, not TOML, an unknown key or a bad value (named).
        """
        return cls.from_text(read_text_file(path, "policy file"), path)

    @classmethod
    def from_text(cls, text: str, source: str) -> Policy:
        """Parse policy TOML ``text`` read from ``source``."""
        doc, where = parse_toml(text, source, "policy file")
        for key in doc:
            if key not in ("global", "default", "rule"):
                raise UsageError(f"{where}: unknown section {key!r} (global, default, [[rule]])")
        global_table = _table(doc, "global", where)
        default_table = _table(doc, "default", where)
        global_settings = {
            k: Setting(v, f"[global] of {where}")
            for k, v in _settings(global_table, _GLOBAL, (), f"{where} [global]").items()
        }
        default = {
            k: Setting(v, f"[default] of {where}")
            for k, v in _settings(
                default_table, _CLIENT_INT, _CLIENT_BOOL, f"{where} [default]"
            ).items()
        }
        raw_rules = doc.get("rule", [])
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            raise UsageError(f"{where}: rule is a list of tables ([[rule]])")
        rules = []
        for i, raw in enumerate(raw_rules, 1):
            label = f"{where} rule {i}"
            name = raw.get("name", f"#{i}")
            if not isinstance(name, str) or not name or len(name) > 64:
                raise UsageError(f"{label}: name is text of 1..64 characters, not {name!r:.40}")
            uid, gid = _who(raw, label)
            body = {k: v for k, v in raw.items() if k not in (*_MATCH, "name")}
            settings = _settings(body, _CLIENT_INT, _CLIENT_BOOL, label)
            rules.append(_Rule(f"rule {name!r} ({label})", uid, gid, settings))
        return cls(
            global_settings=global_settings,
            default=default,
            rules=tuple(rules),
            source=where,
        )

    def limits_for(self, ident: Identity) -> Limits:
        """The limits that apply to ``ident``: the defaults, then every matching rule in order."""
        return self._kept(ident)[0]

    def _kept(self, ident: Identity) -> tuple[Limits, _Plain]:
        known = self._limits.get(ident)
        if known is not None:
            return known
        settings = dict(self._default)
        if ident.uid == 0 and settings["protected"].rule == _BUILTIN:
            settings["protected"] = Setting(True, f"{_BUILTIN} (root)")
        for rule in self._rules:
            if rule.matches(ident):
                settings.update({k: Setting(v, rule.name) for k, v in rule.settings.items()})
        lim = Limits(**settings)
        plain = (
            bool(lim.contiguous.value),
            bool(lim.protected.value),
            bool(lim.cpu_only.value),
            int(lim.max_bytes.value),
            int(lim.max_buffers.value),
            int(lim.max_collections.value),
            int(lim.max_contiguous_bytes.value),
        )
        if len(self._limits) >= 1024:
            self._limits.clear()
        known = self._limits[ident] = (lim, plain)
        return known

    def allows(
        self,
        ident: Identity,
        nbytes: int,
        nbuffers: int,
        ncollections: int,
        contiguous_bytes: int,
        *,
        contiguous: bool,
        protected: bool,
        cpu_only: bool,
        service_bytes: int,
        service_buffers: int,
    ) -> bool:
        """Whether :meth:`check` would pass a request that takes ``ident``'s uid to those
        figures (tested on plain per-identity values, kept; no object is made): the quick
        answer for the usual case, :meth:`check` the one that words a refusal."""
        plain = self._kept(ident)[1]
        may_contiguous, may_protected, may_cpu_only, bytes_, buffers, colls, contig = plain
        return (
            (may_contiguous or not contiguous)
            and (may_protected or not protected)
            and (may_cpu_only or not cpu_only)
            and nbytes <= bytes_
            and nbuffers <= buffers
            and ncollections <= colls
            and contiguous_bytes <= contig
            and service_bytes <= int(self.global_max_bytes.value)
            and service_buffers <= int(self.global_max_buffers.value)
        )

    def check(
        self,
        ident: Identity,
        after: Usage,  # what ident's uid would hold (all its connections)
        *,
        contiguous: bool,
        protected: bool,
        cpu_only: bool,
        service_bytes: int,
        service_buffers: int,
    ) -> None:
        """Refuse a request that would take ``ident`` to ``after`` (the service to
        ``service_bytes``/``service_buffers``) or use a heap property it may not use.

        Raises:
            PolicyError: a heap property the client may not use (naming the rule).
            QuotaError: a quota or the global cap would be passed (naming the rule).
        """
        if self.allows(
            ident,
            after.bytes,
            after.buffers,
            after.collections,
            after.contiguous_bytes,
            contiguous=contiguous,
            protected=protected,
            cpu_only=cpu_only,
            service_bytes=service_bytes,
            service_buffers=service_buffers,
        ):
            return  # within every limit: the same tests as below, which word a refusal
        lim = self.limits_for(ident)
        for wanted, setting, what in (
            (contiguous, lim.contiguous, "contiguous memory"),
            (protected, lim.protected, "protected memory"),
            (cpu_only, lim.cpu_only, "CPU-only (memfd) buffers"),
        ):
            if wanted and not setting.value:
                raise PolicyError(
                    f"{ident.describe()} may not use {what}: refused by {setting.rule}",
                    f"{setting.rule}: {_key(setting, lim)} = false",
                )
        for value, setting, key in (
            (after.bytes, lim.max_bytes, "max_bytes"),
            (after.buffers, lim.max_buffers, "max_buffers"),
            (after.collections, lim.max_collections, "max_collections"),
            (after.contiguous_bytes, lim.max_contiguous_bytes, "max_contiguous_bytes"),
        ):
            if value > int(setting.value):
                raise QuotaError(
                    f"{ident.describe()}: uid {ident.uid} would hold {value} ({key}) through the"
                    f" service, above its quota of {setting.value} set by {setting.rule};"
                    f" release buffers or raise {key}",
                    f"{setting.rule}: {key} = {setting.value}",
                )
        for value, setting, key in (
            (service_bytes, self.global_max_bytes, "max_bytes"),
            (service_buffers, self.global_max_buffers, "max_buffers"),
        ):
            if value > int(setting.value):
                raise QuotaError(
                    f"the service would hand out {value} ({key}) to all clients together, above"
                    f" the global cap of {setting.value} set by {setting.rule}",
                    f"{setting.rule}: global {key} = {setting.value}",
                )

    def to_json(self) -> dict[str, Any]:
        """The source, the global cap and the defaults (for ``devalloc service status``)."""
        return {
            "source": self.source,
            "global": {
                "max_bytes": self.global_max_bytes.value,
                "max_buffers": self.global_max_buffers.value,
            },
            "default": {k: s.value for k, s in self._default.items()},
            "rules": [r.name for r in self._rules],
        }


def _key(setting: Setting, lim: Limits) -> str:
    for f in dataclasses.fields(lim):
        if getattr(lim, f.name) is setting:
            return f.name
    return "?"


def _table(doc: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise UsageError(f"{where}: [{key}] is a table")
    return value


def _settings(
    table: Mapping[str, Any], ints: tuple[str, ...], bools: tuple[str, ...], where: str
) -> dict[str, int | bool]:
    out: dict[str, int | bool] = {}
    for key, value in table.items():
        if key in bools:
            if not isinstance(value, bool):
                raise UsageError(f"{where}: {key} is true or false, not {value!r:.40}")
            out[key] = value
        elif key in ints:
            if key in _SIZES and isinstance(value, str):
                value = limits.parse_size(value.replace(" ", ""), f"{where}: {key}")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(
                    f"{where}: {key} is a non-negative integer"
                    + (' or a size such as "512M"' if key in _SIZES else "")
                    + f", not {value!r:.40}"
                )
            out[key] = value
        else:
            raise UsageError(f"{where}: unknown key {key!r:.40} (known: {', '.join(ints + bools)})")
    return out


def _who(raw: Mapping[str, Any], label: str) -> tuple[int | None, int | None]:
    found: list[int | None] = []
    lookups: tuple[tuple[str, str, Callable[[str], int]], ...] = (
        ("uid", "user", lambda n: pwd.getpwnam(n).pw_uid),
        ("gid", "group", lambda n: grp.getgrnam(n).gr_gid),
    )
    for number, name, lookup in lookups:
        value, text = raw.get(number), raw.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            raise UsageError(f"{label}: {number} is a non-negative integer, not {value!r:.40}")
        if text is not None:
            if value is not None or not isinstance(text, str):
                raise UsageError(f"{label}: {name} is a {name} name (and not beside {number})")
            try:
                value = lookup(text)
            except KeyError:
                raise UsageError(f"{label}: no {name} {text!r:.40} on this system") from None
        found.append(value)
    uid, gid = found
    if uid is None and gid is None:
        raise UsageError(f"{label}: a rule names whom it applies to (uid, gid, user or group)")
    return uid, gid
