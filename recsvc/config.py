"""The service's configuration: YAML in, a frozen attrs tree out.

Every key has a default and an empty section means defaults; unknown keys
and bad values raise `ConfigError` naming the key path. The relative paths
of a config file are taken from the file's folder.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from typing import Any, Callable, Mapping

import attrs
import yaml

from recsvc.access.scopes import Group, check_group_name, parse_scope
from recsvc.admission import parse_network
from recsvc.application.endpoints import files_from
from recsvc.archive.layout import ArchiveLocation
from recsvc.devices import parse_mac
from recsvc.storage.naming import DEFAULT_TEMPLATE, PathTemplate
from recsvc.index.backends import is_postgresql
from recsvc.index.numberplan import NumberPlan
from recsvc.media.source import ANY, PEER, STRICT, SourcePolicy
from recsvc.passwords import check_password_hash
from recsvc.storage.folder import FORMATS
from recsvc.urls import check_url


class ConfigError(ValueError):
    """A configuration problem; the message begins with the key path. It is
    one line of printable text: a key or value the file spells with a new
    line or an escape character shows it escaped (``\\n``, ``\\x1b``), so
    that it cannot add lines to the log or the terminal."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(_one_line(f"{key}: {problem}" if key else problem))
        self.key = key
        self.problem = problem

    def in_file(self, path: str | None) -> str:
        """The line for the user: the config file (when there is one), the
        key path and the problem. A problem with the file itself (unreadable,
        not YAML) names the file already."""
        if path is None or not self.key:
            return str(self)
        return f"{path}: {self}"


def _one_line(text: str) -> str:
    """``text`` with each character that is not printable as Python writes
    it in a string (``\\n``, ``\\t``, ``\\x1b``)."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """What PyYAML says is wrong, on one line: where (line and column, from
    1), what it was reading and what it found (its own text spans three
    lines and names the file again)."""
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return " ".join(str(error).split())
    mark = error.problem_mark
    said = f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return f"{said} ({error.context})" if error.context else said


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected a whole number, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low}..{high}")
        return value
    return convert


def _ip_address(value: Any) -> str:
    text = _text(value)
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def _advertise(value: Any) -> str:
    text = _text(value)
    if text != "auto" and any(c in text for c in "&=% \t"):
        raise ValueError(f"{text!r} is neither 'auto' nor a host name or address")
    return text


def _port(value: Any) -> int:
    return _integer(1, 65535)(value)


def _port_range(value: Any) -> tuple[int, int]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError(f"expected [low, high], got {value!r}")
    low, high = (_port(v) for v in value)
    if low > high:
        raise ValueError("low port above high port")
    return (low, high)


def _seconds(low: float, high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number of seconds, got {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{value} is outside {low:g}..{high:g} seconds")
        return float(value)
    return convert


def _source(value: Any) -> SourcePolicy:
    """peer | strict | any, or a list of networks in CIDR notation."""
    if value in (PEER, STRICT, ANY):
        return value
    if isinstance(value, (list, tuple)) and value:
        networks = []
        for item in value:
            try:
                # As control.allow reads them: IPv4-mapped ones as IPv4.
                networks.append(parse_network(str(item)))
            except ValueError:
                raise ValueError(f"{item!r} is not a network (CIDR)") from None
        return tuple(networks)
    raise ValueError(f"expected peer, strict, any or a list of CIDRs, got {value!r}")


def _file_mode(value: Any) -> int:
    """0640 in YAML is already a number (octal); "0640" and "640" are read as octal."""
    if isinstance(value, str):
        try:
            value = int(value, 8)
        except ValueError:
            raise ValueError(f"{value!r} is not an octal file mode") from None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ValueError(f"expected a file mode such as 0640, got {value!r}")
    if not value & 0o600 == 0o600:
        raise ValueError(f"{value:04o} does not let the service read and write its own files")
    return value


def _path_template(value: Any) -> str:
    text = _text(value)
    PathTemplate(text)  # raises TemplateError (a ValueError) saying why
    return text


def _timezone(value: Any) -> str:
    text = _text(value)
    PathTemplate(timezone=text)
    return text


def _one_of(*choices: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    return convert


def _networks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of addresses or CIDRs, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not an address or CIDR")
        parse_network(item)
    return tuple(item.strip() for item in value)


def _macs(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of MAC addresses, got {value!r}")
    macs = []
    for item in value:
        if not isinstance(item, str):
            raise ValueError(f"{item!r} is not a MAC address")
        macs.append(parse_mac(item))
    return tuple(macs)


@attrs.frozen
class ControlConfig:
    listen: str = attrs.field(default="tcp:10000", converter=_text)
    # A message longer than this closes the connection that sent it.
    max_message_bytes: int = attrs.field(default=4096, converter=_integer(256, 1 << 20))
    # Who may connect: addresses or CIDRs; empty: anyone (with a warning
    # when the listener is reachable from other machines). Reloaded on SIGHUP.
    allow: tuple[str, ...] = attrs.field(default=(), converter=_networks)
    max_connections: int = attrs.field(default=5000, converter=_integer(1, 1_000_000))
    # Phones keep one connection each; a NAT gateway in front of many may need more.
    max_connections_per_ip: int = attrs.field(default=16, converter=_integer(1, 1_000_000))
    # A connection with no recording on it is closed after this long without
    # a message (seconds); one carrying a recording never is.
    idle_timeout: float = attrs.field(default=300.0, converter=_seconds(1, 86400))


@attrs.frozen
class DevicesConfig:
    # The phones (MAC addresses, any spelling) allowed to start recordings;
    # empty: any. Reloaded on SIGHUP.
    allow: tuple[str, ...] = attrs.field(default=(), converter=_macs)


@attrs.frozen
class RecordingsConfig:
    # Starts beyond this many recordings at once are refused ("server
    # busy"); 0: as many as rtp.port_range has ports.
    max_active: int = attrs.field(default=0, converter=_integer(0, 1_000_000))
    # Recordings one phone may have at once.
    max_per_device: int = attrs.field(default=4, converter=_integer(1, 1000))
    # Starts one phone may make in any minute.
    max_starts_per_minute: int = attrs.field(default=60, converter=_integer(1, 100_000))
    # Recordings without RTP yet from one address (or IPv6 /64), whatever
    # their devices: a site of 500 phones behind one NAT address can start
    # all its calls at once.
    max_pending_per_address: int = attrs.field(default=500, converter=_integer(1, 1_000_000))


@attrs.frozen
class RtpConfig:
    interface: str = attrs.field(default="0.0.0.0", converter=_ip_address)
    advertise: str = attrs.field(default="auto", converter=_advertise)
    port_range: tuple[int, int] = attrs.field(default=(41000, 41999), converter=_port_range)
    # How late a packet may be and still take its place (ms of audio).
    reorder_window_ms: int = attrs.field(default=1000, converter=_integer(20, 10_000))
    # A longer gap (a call on hold) is filled only this far; seconds.
    max_gap_fill: float = attrs.field(default=30.0, converter=_seconds(0, 3600))
    # No RTP for this long after the first packet stops the recording.
    timeout: float = attrs.field(default=60.0, converter=_seconds(1, 86400))
    # No RTP at all this long after the Start stops the recording.
    first_packet_timeout: float = attrs.field(default=10.0, converter=_seconds(1, 3600))
    dtmf_payload_type: int = attrs.field(default=101, converter=_integer(96, 127))
    # A packet with more audio than this (ms) is rejected: "payload too long".
    max_packet_ms: int = attrs.field(default=200, converter=_integer(20, 1000))
    source: SourcePolicy = attrs.field(default=PEER, converter=_source)
    # All RTP sockets are read together this often (ms); packets wait in
    # the kernel meanwhile (see recsvc.media.sockets).
    read_interval_ms: int = attrs.field(default=5, converter=_integer(1, 100))
    # Each RTP socket's kernel receive buffer (KB; capped by net.core.rmem_max).
    receive_buffer_kb: int = attrs.field(default=512, converter=_integer(64, 65536))


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _amount(high: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number, got {value!r}")
        if not 0 <= value <= high:
            raise ValueError(f"{value} is outside 0..{high:g}")
        return float(value)
    return convert


@attrs.frozen
class RetentionConfig:
    # Recordings older than this many days are deleted (0: kept for ever).
    max_age_days: float = attrs.field(default=0.0, converter=_amount(36500))
    # The oldest recordings are deleted while the archive is larger (0: no limit).
    max_total_gb: float = attrs.field(default=0.0, converter=_amount(1_000_000))
    # ... or while less than this is free on its disk (0: no floor).
    min_free_gb: float = attrs.field(default=0.0, converter=_amount(1_000_000))
    # Seconds between sweeps.
    interval: float = attrs.field(default=600.0, converter=_seconds(1, 86400))


def _subsection(section_type: type, path: str) -> Callable[[Any], Any]:
    """A converter for a section inside a section (its keys named by ``path``)."""
    def convert(value: Any) -> Any:
        if isinstance(value, section_type):
            return value
        return _parse_section(section_type, value, path)
    return convert


@attrs.frozen
class StorageConfig:
    root: str = attrs.field(default="var/recordings", converter=_text)
    format: str = attrs.field(default="g711", converter=_one_of(*FORMATS))
    # Where a recording goes under root: strftime fields and {device},
    # {direction}, {remote_number}, {remote_name}, {local_number},
    # {local_name}, {id}, {codec}; the file name is the last part.
    path: str = attrs.field(default=DEFAULT_TEMPLATE, converter=_path_template)
    # The time zone of the strftime fields in path (an IANA name).
    timezone: str = attrs.field(default="UTC", converter=_timezone)
    # Mode of recordings and sidecars, whatever twistd's umask.
    file_mode: int = attrs.field(default=0o640, converter=_file_mode)
    # Below this much free space (MB) new recordings are refused
    # ("disk full"); below half of it recordings in progress are stopped,
    # keeping what they have, before the disk fills. 0 turns the check off.
    min_free_mb: int = attrs.field(default=200, converter=_integer(0, 10_000_000))
    # At most this much audio (seconds) per recording waits in memory for a
    # slow disk; beyond it audio is dropped, counted and reported.
    max_buffer_s: float = attrs.field(default=30.0, converter=_seconds(1, 600))
    # How often (seconds) the audio of each recording reaches the disk and
    # its WAV header is brought up to date: a crash loses at most this much
    # (plus what the reorder window holds back after lost packets).
    sync_interval: float = attrs.field(default=1.0, converter=_seconds(0.1, 60))
    # true: each recording's file is fdatasync'd every sync_interval (about
    # 50 us of CPU per recording per second); false: a syncfs of the
    # recordings' filesystem after each turn of hand-overs does it for many
    # at once.
    sync_each_file: bool = attrs.field(default=False, converter=_flag)
    # A recording this long goes on in a new file (seconds; 4 hours).
    max_duration: float = attrs.field(default=4 * 3600.0, converter=_seconds(60, 7 * 86400))
    retention: RetentionConfig = attrs.field(
        factory=RetentionConfig, converter=_subsection(RetentionConfig, "storage.retention"))

    @property
    def path_template(self) -> PathTemplate:
        return PathTemplate(self.path, self.timezone)


@attrs.frozen
class IndexConfig:
    # The index of the finished recordings (made from their sidecars, which
    # stay the truth: `recsvc reindex` rebuilds it): an SQLite file's path,
    # or a PostgreSQL URL (postgresql://user@host/db) shared by the nodes.
    database: str = attrs.field(default="var/recsvc.sqlite3", converter=_text)


def _endpoint(value: Any) -> str:
    """A server endpoint description, or "off"; its syntax is checked
    against the reactor at start-up (recsvc.tap)."""
    return _text(value)


@attrs.frozen
class BasicUser:
    name: str
    # A hash from `recsvc hash-password` (see recsvc.passwords).
    password_hash: str


def _users(value: Any) -> tuple[BasicUser, ...]:
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping of user name to password hash, got {value!r}")
    users = []
    for name, hashed in value.items():
        if not isinstance(name, str) or not name or ":" in name or not name.isprintable():
            raise ValueError(f"{name!r} is not a user name (printable, no colon)")
        if not isinstance(hashed, str):
            raise ValueError(f"{name}: expected a password hash from `recsvc hash-password`")
        try:
            check_password_hash(hashed)
        except ValueError as error:
            raise ValueError(f"{name}: {error}") from None
        users.append(BasicUser(name, hashed))
    return tuple(users)


def _users_or_empty(value: Any) -> tuple[BasicUser, ...]:
    if value is None or value == ():
        return ()
    if isinstance(value, tuple) and all(isinstance(user, BasicUser) for user in value):
        return value
    return _users(value)


def _token(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    if len(text) < 16 or not text.isascii() or not text.isprintable() or " " in text:
        raise ValueError("expected at least 16 printable ASCII characters without spaces")
    return text


@attrs.frozen
class HttpAuthConfig:
    # Basic authentication: user name -> hash from `recsvc hash-password`.
    users: tuple[BasicUser, ...] = attrs.field(default=(), converter=_users_or_empty)
    # Or (also) a bearer token: "Authorization: Bearer <token>".
    token: str | None = attrs.field(default=None, converter=_token)
    # Wrong passwords (or tokens) one address may send in a minute; then
    # it gets 429 until the oldest is a minute old.
    max_failures_per_minute: int = attrs.field(default=10, converter=_integer(1, 10_000))

    @property
    def enabled(self) -> bool:
        return bool(self.users) or self.token is not None


def _host_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"expected a list of host names, got {value!r}")
    names = []
    for name in value:
        text = _text(name).lower().rstrip(".")
        if not all(part and part.replace("-", "").isalnum() and part.isascii()
                   for part in text.split(".")):
            raise ValueError(f"{name!r} is not a host name")
        names.append(text)
    return tuple(names)


@attrs.frozen
class HttpConfig:
    # The web page, the JSON API, /healthz and /metrics; "off": none.
    listen: str = attrs.field(default="tcp:8080:interface=127.0.0.1", converter=_endpoint)
    auth: HttpAuthConfig = attrs.field(
        factory=HttpAuthConfig, converter=_subsection(HttpAuthConfig, "http.auth"))
    # Without auth, only requests for an IP address, localhost or one of
    # these host names are answered (a guard against DNS rebinding).
    allowed_hosts: tuple[str, ...] = attrs.field(default=(), converter=_host_names)
    # Connections at once, in all and from one address (or IPv6 /64): a
    # browser opens up to 6, so the second leaves room for a few behind one
    # address. More are closed at once.
    max_connections: int = attrs.field(default=256, converter=_integer(1, 100_000))
    max_connections_per_ip: int = attrs.field(default=32, converter=_integer(1, 100_000))
    # Seconds a request has to arrive in full (from the connection's opening,
    # or a later request's first byte); a slower one is answered 408 and closed.
    request_timeout: float = attrs.field(default=10.0, converter=_seconds(1, 300))


def _url_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return check_url(_text(value))


@attrs.frozen
class HooksConfig:
    # Each finished file's sidecar is POSTed here as JSON (retried with
    # backoff); None: no webhook.
    on_finish: str | None = attrs.field(default=None, converter=_url_or_none)
    # With archive.url: each recording verified in the archive is announced
    # here ({"event": "archived", "id": ..., "key": ...}); None: not announced.
    on_archived: str | None = attrs.field(default=None, converter=_url_or_none)


def _archive_url(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    ArchiveLocation.from_url(text)  # raises ValueError saying why
    return text


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _endpoint_url(value: Any) -> str | None:
    if value is None:
        return None
    text = _text(value)
    if not (text.startswith("http://") or text.startswith("https://")) or " " in text:
        raise ValueError(f"expected an http:// or https:// URL, got {text!r}")
    return text


def _encryption(value: Any) -> str | None:
    if value is None:
        return None
    return _one_of("AES256", "aws:kms")(value)


# One PUT takes up to 5 GiB: the archive sends each file so (see
# recsvc.archive.s3), and the largest file is storage.max_duration of 16-bit
# audio at 16 kHz (G.722 decoded), 32,000 bytes a second.
LARGEST_PUT = 5 * 1024 ** 3
LARGEST_BYTE_RATE = 32_000


@attrs.frozen
class ArchiveConfig:
    # s3://bucket/prefix: each finished recording's WAV and sidecar are
    # uploaded there, under the same path as below storage.root; None: no
    # archive.
    url: str | None = attrs.field(default=None, converter=_archive_url)
    # For MinIO, Ceph RGW and other S3-compatible stores; None: AWS's.
    endpoint_url: str | None = attrs.field(default=None, converter=_endpoint_url)
    # None: from the AWS chain (AWS_REGION, ~/.aws/config).
    region: str | None = attrs.field(default=None, converter=_text_or_none)
    # A local WAV is deleted this many days after it was finished, once its
    # upload is verified (0: as soon as it is); its sidecar stays.
    keep_local_days: float = attrs.field(default=0.0, converter=_amount(36500))
    # None (the bucket's default), AES256 or aws:kms.
    server_side_encryption: str | None = attrs.field(default=None, converter=_encryption)
    # With aws:kms: the key (None: the account's default key for S3).
    kms_key_id: str | None = attrs.field(default=None, converter=_text_or_none)

    @property
    def location(self) -> ArchiveLocation | None:
        return None if self.url is None else ArchiveLocation.from_url(self.url)


def _country_code(value: Any) -> str | None:
    """1 to 3 digits, not beginning with 0 (49 or "49"); None: no plan."""
    if value is None:
        return None
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() \
            or not 1 <= len(text) <= 3 or text.startswith("0"):
        raise ValueError(f"expected a country code of 1 to 3 digits such as 49, got {value!r}")
    return text


def _prefix(value: Any) -> str:
    """Digits in quotes: YAML reads 0, 00 and 011 as numbers, and 00 and
    011 as others than they are (0 and 9), so numbers are refused."""
    if not isinstance(value, str):
        raise ValueError(f'expected digits in quotes, such as "0" (YAML reads a bare 00 or '
                         f"011 as another number), got {value!r}")
    if not value.isascii() or not value.isdigit() or not 1 <= len(value) <= 4:
        raise ValueError(f"expected 1 to 4 digits, got {value!r}")
    return value


def _prefix_or_none(value: Any) -> str | None:
    return None if value is None else _prefix(value)


@attrs.frozen
class NumbersConfig:
    # The country code of the phones' own numbers (e.g. 49): a search for a
    # national number (030 123) then also finds it written internationally
    # (+4930123, 004930123), and the other way round. None: searches look
    # for the digits as typed.
    country_code: str | None = attrs.field(default=None, converter=_country_code)
    # What a national number begins with and its international form drops
    # (e.g. "0"); None: nothing (as in Italy). Needs country_code.
    trunk_prefix: str | None = attrs.field(default=None, converter=_prefix_or_none)
    # What is dialled instead of "+" before another country's code.
    international_prefix: str = attrs.field(default="00", converter=_prefix)

    @property
    def plan(self) -> NumberPlan:
        return NumberPlan(self.country_code, self.trunk_prefix, self.international_prefix)


# A node's name: it goes into every sidecar, the index, logs and the API.
_NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def check_node(value: Any) -> str:
    """A node name as the config takes it. Raises ValueError."""
    if not isinstance(value, str) or not _NODE_NAME.fullmatch(value):
        raise ValueError(f"expected a name of 1 to 63 letters, digits, '.', '_' or '-' "
                         f"(starting with a letter or digit), got {value!r}")
    return value


def default_node() -> str:
    """This machine's host name, as a node name (its first label, what a
    node name cannot hold taken out; "recsvc" if nothing is left)."""
    first = socket.gethostname().split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]", "", first).lstrip("._-")[:63]
    return name or "recsvc"


@attrs.frozen
class Config:
    # The recorder node's name (several nodes share one index and archive).
    node: str = attrs.field(factory=default_node, validator=lambda _, __, value: check_node(value))
    control: ControlConfig = ControlConfig()
    rtp: RtpConfig = RtpConfig()
    storage: StorageConfig = StorageConfig()
    index: IndexConfig = IndexConfig()
    http: HttpConfig = HttpConfig()
    hooks: HooksConfig = HooksConfig()
    devices: DevicesConfig = DevicesConfig()
    recordings: RecordingsConfig = RecordingsConfig()
    numbers: NumbersConfig = NumbersConfig()
    archive: ArchiveConfig = ArchiveConfig()
    # Teams, by name: their devices and local numbers (a user's scope
    # group:NAME reaches their recordings; recsvc.access.scopes).
    groups: tuple[Group, ...] = ()

    @property
    def group_map(self) -> dict[str, Group]:
        return {group.name: group for group in self.groups}


def parse_config(data: Any) -> Config:
    """A Config from the parsed YAML mapping (None means all defaults)."""
    if data is None:
        return Config()
    sections = _mapping(data, "")
    values = {}
    for name, section in sections.items():
        if name == "groups":
            values[name] = parse_groups(section)
            continue
        if name == "node":
            if section is None:
                continue  # (empty, as a section may be: the default)
            try:
                values[name] = check_node(section)
            except ValueError as error:
                raise ConfigError("node", str(error)) from None
            continue
        section_type = _field_types(Config).get(name)
        if section_type is None:
            raise ConfigError(str(name), f"unknown section (known: {', '.join(_field_types(Config))})")
        values[name] = _parse_section(section_type, section, name)
    config = Config(**values)
    if config.numbers.trunk_prefix is not None and config.numbers.country_code is None:
        raise ConfigError("numbers.trunk_prefix", "needs numbers.country_code (the "
                          "international form replaces the trunk prefix with it)")
    archive = config.archive
    if archive.kms_key_id is not None and archive.server_side_encryption != "aws:kms":
        raise ConfigError("archive.kms_key_id", "needs archive.server_side_encryption: aws:kms")
    if archive.url is not None and config.storage.max_duration * LARGEST_BYTE_RATE > LARGEST_PUT:
        raise ConfigError("storage.max_duration", (
            f"{config.storage.max_duration:g} s makes files larger than the archive sends in "
            f"one upload (5 GiB); with archive.url, at most "
            f"{LARGEST_PUT // LARGEST_BYTE_RATE} s"))
    return config


def parse_groups(data: Any) -> tuple[Group, ...]:
    """``groups:``: each team's name, its ``devices`` (MAC addresses) and
    its ``numbers`` (local numbers). ConfigError names the key."""
    if data is None:
        return ()
    groups = []
    for name, group in _mapping(data, "groups").items():
        try:
            check_group_name(name)
        except ValueError as error:
            raise ConfigError(f"groups.{name}", str(error)) from None
        if group is None:
            group = {}
        for key in _mapping(group, f"groups.{name}"):
            if key not in ("devices", "numbers"):
                raise ConfigError(f"groups.{name}.{key}", "unknown key (known: devices, numbers)")
        try:
            devices = frozenset(_macs(group.get("devices") or []))
        except ValueError as error:
            raise ConfigError(f"groups.{name}.devices", str(error)) from None
        numbers = group.get("numbers") or []
        if not isinstance(numbers, list):
            raise ConfigError(f"groups.{name}.numbers", f"expected a list of numbers, got "
                                                        f"{numbers!r}")
        digits = set()
        for number in numbers:
            if not isinstance(number, str):
                # (YAML reads 0301234 as an octal number: another line.)
                raise ConfigError(f"groups.{name}.numbers",
                                  f"{number!r} is not quoted: write each number as text "
                                  f"(\"2001\"), as YAML turns some numbers into others")
            try:
                digits.add(parse_scope(f"number:{number}").value)
            except ValueError:
                raise ConfigError(f"groups.{name}.numbers",
                                  f"{number!r} is not a number (digits)") from None
        groups.append(Group(name, devices, frozenset(digits)))
    return tuple(groups)


def _parse_section(section_type: type, data: Any, path: str) -> Any:
    if data is None:
        return section_type()
    known = _field_types(section_type)
    kwargs = {}
    for key, value in _mapping(data, path).items():
        if key not in known:
            raise ConfigError(f"{path}.{key}", f"unknown key (known: {', '.join(known)})")
        kwargs[key] = value
    for key, value in kwargs.items():
        try:
            section_type(**{key: value})
        except ConfigError:
            raise  # a nested section's error names its own key
        except (ValueError, TypeError) as error:
            raise ConfigError(f"{path}.{key}", str(error)) from None
    return section_type(**kwargs)


def _mapping(data: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{path}.{key}" if path else str(key), "keys must be names")
    return data


def _field_types(cls: type) -> dict[str, Any]:
    return {field.name: field.default.__class__ for field in attrs.fields(cls)}


def load_config(path: str) -> Config:
    """Read and parse a YAML config file; its relative paths, given or
    default, are taken from the file's folder (see `paths_from`). Raises
    `ConfigError`."""
    return config_of_file(read_config_file(path), path)


def read_config_file(path: str) -> Any:
    """A config file's YAML as read, not yet checked (None: an empty file),
    for what must know which keys the file itself gives (a reload). Raises
    `ConfigError`."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError("", f"{path} is not valid YAML: {_yaml_problem(error)}") from None
    except UnicodeDecodeError as error:
        raise ConfigError("", f"{path} is not UTF-8 text: {error}") from None


def config_of_file(data: Any, path: str) -> Config:
    """The Config of `read_config_file`'s ``data``, its relative paths taken
    from the folder of the file at ``path``. Raises `ConfigError`."""
    return paths_from(parse_config(data), os.path.dirname(os.path.abspath(path)))


def gives_key(data: Any, key: str) -> bool:
    """Whether ``data`` (as `read_config_file` returns it, checked by
    `parse_config`) gives the dotted ``key`` itself, rather than leaving it
    to its default: ``control.allow`` for ``control: {allow: []}``."""
    for name in key.split("."):
        if not isinstance(data, Mapping) or name not in data:
            return False
        data = data[name]
    return True


def paths_from(config: Config, folder: str) -> Config:
    """``config`` with its relative paths taken from ``folder``: storage.root,
    index.database and the files a listener names (an ``ssl:`` key and
    certificates, a ``unix:`` socket). For a config file, its folder: the
    file then means the same places wherever the service or a command is
    started from. (Not normalised: ``..`` is left to the system, which
    follows symbolic links as ``cd`` would not.)"""
    http_listen = config.http.listen
    if http_listen != "off":
        http_listen = files_from(http_listen, folder)
    return attrs.evolve(
        config,
        control=attrs.evolve(config.control, listen=files_from(config.control.listen, folder)),
        storage=attrs.evolve(config.storage, root=os.path.join(folder, config.storage.root)),
        index=attrs.evolve(config.index, database=_database_from(config.index.database, folder)),
        http=attrs.evolve(config.http, listen=http_listen),
    )


def _database_from(database: str, folder: str) -> str:
    """index.database taken from ``folder``: an SQLite file's path; a
    PostgreSQL URL as it is."""
    if is_postgresql(database):
        return database
    return os.path.join(folder, database)


def as_config(config: Config | Mapping[str, Any] | None) -> Config:
    """Accept a Config, or a parsed mapping as an embedding application has it
    (with no file, its relative paths are the working directory's)."""
    if isinstance(config, Config):
        return config
    return parse_config(config)
