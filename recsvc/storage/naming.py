"""Where a recording's files go: names built from client fields, made safe.

Every value the phone sends that reaches a path passes through
`safe_component`, so no id, device or number can leave the storage root.
"""

from __future__ import annotations

import re
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from recsvc.devices import parse_mac

_UNSAFE = re.compile(r"[^A-Za-z0-9+_.-]+")
MAX_COMPONENT = 48
MAX_NAME = 200  # one folder or file name made from a template


def safe_component(value: str, fallback: str = "unknown", max_length: int = MAX_COMPONENT) -> str:
    """``value`` reduced to letters, digits and ``+_.-``: never empty, never
    ``.``/``..`` or hidden, at most ``max_length`` characters."""
    cleaned = _UNSAFE.sub("_", value)[:max_length].strip("._")
    return cleaned or fallback


def device_folder(device: str) -> str:
    """A MAC address in any common spelling becomes 12 lower-case hex digits,
    so one phone always files into one folder."""
    try:
        return parse_mac(device)
    except ValueError:
        return safe_component(device)


DEFAULT_TEMPLATE = "{device}/%Y/%m/%d/%Y%m%dT%H%M%SZ_{direction}_{remote_number}_{id}"
# The recording fields a storage.path template may use.
TEMPLATE_FIELDS = (
    "device", "direction", "remote_number", "remote_name", "local_number", "local_name",
    "id", "codec",
)
# What an empty field becomes in a path.
FALLBACKS = {"remote_number": "none", "local_number": "none"}


class TemplateError(ValueError):
    """A storage.path template that cannot make safe relative paths."""


@attrs.frozen
class PathTemplate:
    """storage.path: strftime fields (in ``timezone``) and recording fields
    (``{device}``, ``{remote_number}``...). Client values are made safe
    after the strftime step, so a ``%`` a phone sends is never a format."""

    template: str = DEFAULT_TEMPLATE
    timezone: str = "UTC"
    _zone: tzinfo = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise TemplateError(f"unknown time zone {self.timezone!r}") from None
        object.__setattr__(self, "_zone", zone)
        self._check()

    def _check(self) -> None:
        template = self.template
        if not template.strip() or template.startswith("/") or "\\" in template:
            raise TemplateError("must be a relative path such as " + DEFAULT_TEMPLATE)
        for part in template.split("/"):
            if part in ("", ".", ".."):
                raise TemplateError(f"has an empty, '.' or '..' folder: {template!r}")
        try:
            self.build(0.0, {})
        except (KeyError, IndexError):
            known = ", ".join("{%s}" % name for name in TEMPLATE_FIELDS)
            raise TemplateError(f"uses an unknown field (known: {known})") from None
        except ValueError as error:
            raise TemplateError(str(error)) from None

    def build(self, started_at: float, fields: dict[str, str]) -> tuple[str, ...]:
        """Relative path parts, the last one the file name without extension."""
        moment = datetime.fromtimestamp(started_at, self._zone)
        safe = {
            name: (device_folder(fields.get(name, "")) if name == "device"
                   else safe_component(fields.get(name, ""), FALLBACKS.get(name, "unknown")))
            for name in TEMPLATE_FIELDS
        }
        return tuple(
            safe_component(moment.strftime(part).format_map(_Only(safe)), max_length=MAX_NAME)
            for part in self.template.split("/")
        )


class _Only(dict):
    """format_map that refuses fields the template may not use."""

    def __missing__(self, key: str) -> str:
        raise KeyError(key)
