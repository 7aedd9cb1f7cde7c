"""The one parser of VATS_ environment variables: typed, bounded settings whose bad values
are refused with the variable's name. The variables themselves are in `vats_settings.table`."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

import vats_logs

T = TypeVar("T")

_REFERENCE = re.compile(r"\{(VATS_[A-Z0-9_]+)\}")


class SettingError(ValueError):
    """A variable's value that its setting refuses; the message names the variable."""


@dataclasses.dataclass(frozen=True)
class Setting(Generic[T]):
    name: str
    # As written in the environment; `{VATS_X}` stands for VATS_X's own value, None for unset.
    default: str | None
    description: str
    # What a value must be, completing "NAME must be ...".
    expect: str
    parse: Callable[[str], T]
    # The value when the variable is unset and has no default.
    unset: T
    # What an empty value means; None: the same as unset.
    blank: str | None = None
    # Read only by the test suite's fault injection; never documented for operators.
    test_only: bool = False

    def read(self, env: Mapping[str, str]) -> T:
        raw = self.raw(env)
        if raw is None:
            return self.unset
        try:
            return self.parse(raw.strip())
        except ValueError:
            raise SettingError(f"{self.name} must be {self.expect}, not {raw!r}") from None

    def raw(self, env: Mapping[str, str]) -> str | None:
        """The text the value is parsed from: the variable's, else its default's."""
        raw = env.get(self.name)
        if raw is not None and not raw.strip():
            raw = self.blank
        if raw is not None:
            return raw
        if self.default is None:
            return None
        return _REFERENCE.sub(lambda found: _by_name(found[1]).raw(env) or "", self.default)

    @property
    def initial(self) -> T:
        """The value with nothing set."""
        return self.read({})


_REGISTRY: dict[str, Setting[Any]] = {}


def define(setting: Setting[T]) -> Setting[T]:
    if setting.name in _REGISTRY:
        raise ValueError(f"{setting.name} is defined twice")
    for name in _REFERENCE.findall(setting.default or ""):
        _by_name(name)
    setting.initial  # noqa: B018  (a default its own parser refuses fails at import)
    _REGISTRY[setting.name] = setting
    return setting


def _by_name(name: str) -> Setting[Any]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"{name} is not defined (before it is referred to)") from None


def defined() -> tuple[Setting[Any], ...]:
    """Every setting, in the order defined."""
    from vats_settings import table  # noqa: F401  (defines them, once)

    return tuple(_REGISTRY.values())


def load(build: Callable[[], T]) -> T:
    """`build()` at a process's start; a value it refuses ends the process with status 1
    and one error line on stderr, JSON as every log line, naming the variable."""
    try:
        return build()
    except SettingError as error:
        vats_logs.setup()
        logging.getLogger(__name__).error("%s", error)
        raise SystemExit(1) from None


# Kinds of setting


def text(name: str, default: str, description: str) -> Setting[str]:
    return define(Setting(name, default, description, "some text", _as_is, default))


def optional_text(name: str, description: str) -> Setting[str | None]:
    return define(Setting(name, None, description, "some text", _as_is, None))


def integer(
    name: str, default: int, low: int, high: int, description: str, *, test_only: bool = False
) -> Setting[int]:
    def parse(raw: str) -> int:
        value = int(raw)
        if not low <= value <= high:
            raise ValueError(raw)
        return value

    expect = f"an integer between {low} and {high}"
    return define(
        Setting(name, str(default), description, expect, parse, default, test_only=test_only)
    )


def number(
    name: str, default: float, high: float, description: str, *, zero: bool = False
) -> Setting[float]:
    """A number up to `high`, above 0 (or 0 too, with `zero`)."""

    def parse(raw: str) -> float:
        value = float(raw)
        if not (math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= high):
            raise ValueError(raw)
        return value

    expect = f"a number {'from 0' if zero else 'above 0'} up to {high:g}"
    return define(Setting(name, f"{default:g}", description, expect, parse, default))


def choice(name: str, default: str, options: tuple[str, ...], description: str) -> Setting[str]:
    """One of `options`, in any case; the value is as written in `options`."""

    def parse(raw: str) -> str:
        for option in options:
            if raw.lower() == option.lower():
                return option
        raise ValueError(raw)

    expect = "one of " + ", ".join(options)
    return define(Setting(name, default, description, expect, parse, default))


def matching(name: str, default: str, pattern: str, expect: str, description: str) -> Setting[str]:
    def parse(raw: str) -> str:
        if not re.fullmatch(pattern, raw):
            raise ValueError(raw)
        return raw

    return define(Setting(name, default, description, expect, parse, default))


def address(name: str, default: str, description: str) -> Setting[str]:
    return define(Setting(name, default, description, _HOST_PORT, _host_port, default))


def optional_address(name: str, default: str, description: str) -> Setting[str | None]:
    """host:port, or `off` (or empty) for none."""

    def parse(raw: str) -> str | None:
        return None if raw.lower() in ("", "off") else _host_port(raw)

    expect = f"{_HOST_PORT} or off"
    return define(Setting(name, default, description, expect, parse, None, blank="off"))


def url(name: str, default: str, description: str) -> Setting[str]:
    """An http(s) URL, without the trailing slash."""

    def parse(raw: str) -> str:
        scheme, sep, rest = raw.partition("://")
        if scheme not in ("http", "https") or not sep or not rest.split("/")[0]:
            raise ValueError(raw)
        return raw.rstrip("/")

    expect = "an http:// or https:// URL"
    return define(Setting(name, default, description, expect, parse, default))


def networks(name: str, description: str) -> Setting[tuple[str, ...]]:
    expect = "a comma-separated list of IP addresses or CIDR networks"
    return define(Setting(name, None, description, expect, _networks, ()))


def _as_is(raw: str) -> str:
    return raw


_HOST_PORT = "host:port (a port from 0 to 65535)"


def _host_port(raw: str) -> str:
    host, _, port = raw.rpartition(":")
    if not host.strip("[]") or not port.isdigit() or int(port) > 65535:
        raise ValueError(raw)
    return raw


def _networks(raw: str) -> tuple[str, ...]:
    """Written the one way uvicorn's proxy headers middleware understands (it would take a
    malformed entry as a name that never matches)."""
    found: list[str] = []
    for item in raw.split(","):
        item = item.strip()
        if item:
            network = ipaddress.ip_network(item, strict=False)
            host = network.num_addresses == 1
            found.append(str(network.network_address) if host else str(network))
    return tuple(found)
