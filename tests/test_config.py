"""Tests for recsvc.config: YAML in, a frozen Config out, errors that name the key."""

from __future__ import annotations

import os
import socket
from typing import Any

import attrs
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.config import (
    Config,
    ConfigError,
    ControlConfig,
    HttpConfig,
    IndexConfig,
    RtpConfig,
    StorageConfig,
    as_config,
    gives_key,
    load_config,
    parse_config,
    paths_from,
)

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(CHECKOUT, "etc", "recsvc.yaml")



def _keys(section: Any) -> list[str]:
    """The keys of a section, its subsections' (http.auth) included."""
    keys = []
    for field in attrs.fields(type(section)):
        keys.append(field.name)
        value = getattr(section, field.name)
        if attrs.has(type(value)):
            keys += _keys(value)
    return keys


# Every section and key the loader knows, read from the Config classes: the
# arbitrary-data properties below reach every converter, new ones included.
SECTIONS = [field.name for field in attrs.fields(Config)
            if attrs.has(type(getattr(Config(), field.name)))]
KEYS = sorted({key for name in SECTIONS for key in _keys(getattr(Config(), name))})


class DefaultsTests(SynchronousTestCase):
    """Every key has a default, and an absent or empty section means defaults."""

    def test_defaults(self) -> None:
        """
        The documented defaults: control on tcp:10000, RTP bound to 0.0.0.0
        on 41000..41999 advertising the connection's own address, g711 files
        under var/recordings.
        """
        config = Config()
        self.assertEqual(config.control.listen, "tcp:10000")
        self.assertEqual(config.control.max_message_bytes, 4096)
        self.assertEqual(config.rtp.interface, "0.0.0.0")
        self.assertEqual(config.rtp.advertise, "auto")
        self.assertEqual(config.rtp.port_range, (41000, 41999))
        self.assertEqual(config.storage.root, "var/recordings")
        self.assertEqual(config.storage.format, "g711")

    def test_none_is_defaults(self) -> None:
        """An empty YAML document (None) parses to the all-defaults Config."""
        self.assertEqual(parse_config(None), Config())

    def test_empty_mapping_is_defaults(self) -> None:
        """An empty top-level mapping parses to the all-defaults Config."""
        self.assertEqual(parse_config({}), Config())

    def test_none_section_is_defaults(self) -> None:
        """A section present but empty in YAML (None) means that section's defaults."""
        config = parse_config({"control": None, "rtp": None, "storage": None})
        self.assertEqual(config, Config())

    def test_empty_section_is_defaults(self) -> None:
        """A section given as an empty mapping means that section's defaults."""
        config = parse_config({"control": {}, "rtp": {}, "storage": {}})
        self.assertEqual(config, Config())

    def test_partial_section_keeps_other_defaults(self) -> None:
        """Setting one key of a section leaves its other keys at their defaults."""
        config = parse_config({"rtp": {"advertise": "192.0.2.10"}})
        self.assertEqual(
            config,
            Config(rtp=RtpConfig(advertise="192.0.2.10")),
        )
        self.assertEqual(config.rtp.port_range, (41000, 41999))
        self.assertEqual(config.control, ControlConfig())

    def test_sample_equals_defaults(self) -> None:
        """
        etc/recsvc.yaml, the sample `make run` uses, spells out the defaults
        but for its paths, which name the checkout's var/ from etc/.
        """
        with open(SAMPLE, encoding="utf-8") as handle:
            sample = parse_config(yaml.safe_load(handle))
        self.assertEqual(sample, attrs.evolve(
            Config(), storage=StorageConfig(root="../var/recordings"),
            index=IndexConfig(database="../var/recsvc.sqlite3")))
        loaded = load_config(SAMPLE)
        self.assertEqual(os.path.realpath(loaded.storage.root),
                         os.path.join(os.path.realpath(CHECKOUT), "var", "recordings"))
        self.assertEqual(os.path.realpath(loaded.index.database),
                         os.path.join(os.path.realpath(CHECKOUT), "var", "recsvc.sqlite3"))

    def test_node_sample_loads(self) -> None:
        """etc/recsvc-node.yaml, the README's sample of one node of several,
        is a valid config: its node, shared PostgreSQL index and archive,
        and the README shows it as the file holds it."""
        sample = os.path.join(os.path.dirname(SAMPLE), "recsvc-node.yaml")
        config = load_config(sample)
        self.assertEqual(config.node, "rec-a")
        self.assertEqual(config.index.database, "postgresql://recsvc@db.lan/recsvc")
        self.assertEqual((config.archive.url, config.archive.endpoint_url,
                          config.archive.keep_local_days),
                         ("s3://recordings/calls", "http://minio.lan:9000", 7))
        with open(os.path.join(CHECKOUT, "README.md"), encoding="utf-8") as handle:
            readme = handle.read()
        shown = readme.split("the tests load it):\n\n```yaml\n", 1)[1].split("```", 1)[0]
        with open(sample, encoding="utf-8") as handle:
            self.assertEqual(parse_config(yaml.safe_load(shown)),
                             parse_config(yaml.safe_load(handle)))

    def test_frozen(self) -> None:
        """A Config cannot be changed after it is built."""
        config = Config()
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, config, "rtp", None)
        self.assertRaises(
            attrs.exceptions.FrozenInstanceError, setattr, config.rtp, "interface", "127.0.0.1"
        )


class ValuesTests(SynchronousTestCase):
    """Values that are accepted come out as given (normalised where documented)."""

    def test_every_key_set(self) -> None:
        """Every key set in the mapping shows in the Config."""
        config = parse_config(
            {
                "control": {"listen": "tcp:5000:interface=127.0.0.1", "max_message_bytes": 256},
                "rtp": {
                    "interface": "127.0.0.1",
                    "advertise": "rec.example.com",
                    "port_range": [5000, 5001],
                },
                "storage": {"root": "/srv/recordings", "format": "pcm16"},
            }
        )
        self.assertEqual(
            config,
            Config(
                control=ControlConfig(listen="tcp:5000:interface=127.0.0.1", max_message_bytes=256),
                rtp=RtpConfig(
                    interface="127.0.0.1", advertise="rec.example.com", port_range=(5000, 5001)
                ),
                storage=StorageConfig(root="/srv/recordings", format="pcm16"),
            ),
        )

    def test_port_range_is_tuple(self) -> None:
        """A YAML list [low, high] becomes a (low, high) tuple, so Config stays hashable."""
        config = parse_config({"rtp": {"port_range": [1, 65535]}})
        self.assertEqual(config.rtp.port_range, (1, 65535))
        self.assertIsInstance(config.rtp.port_range, tuple)
        hash(config)

    def test_single_port_range(self) -> None:
        """A range of one port (low == high) is allowed."""
        config = parse_config({"rtp": {"port_range": [42000, 42000]}})
        self.assertEqual(config.rtp.port_range, (42000, 42000))

    def test_interface_normalised(self) -> None:
        """The RTP interface is stripped and written the canonical way (IPv6 too)."""
        self.assertEqual(parse_config({"rtp": {"interface": " 127.0.0.1 "}}).rtp.interface, "127.0.0.1")
        self.assertEqual(parse_config({"rtp": {"interface": "0:0::1"}}).rtp.interface, "::1")

    def test_text_stripped(self) -> None:
        """Surrounding blanks are dropped from string values."""
        config = parse_config({"control": {"listen": "  tcp:1234 "}, "storage": {"root": " r "}})
        self.assertEqual(config.control.listen, "tcp:1234")
        self.assertEqual(config.storage.root, "r")

    def test_max_message_bytes_bounds(self) -> None:
        """max_message_bytes accepts 256 through 1 MiB inclusive."""
        self.assertEqual(
            parse_config({"control": {"max_message_bytes": 256}}).control.max_message_bytes, 256
        )
        self.assertEqual(
            parse_config({"control": {"max_message_bytes": 1 << 20}}).control.max_message_bytes,
            1 << 20,
        )


class ErrorTests(SynchronousTestCase):
    """Every error is a ConfigError whose message begins with the key path."""

    def assert_config_error(self, data: Any, key: str, problem: str | None = None) -> ConfigError:
        error = self.assertRaises(ConfigError, parse_config, data)
        self.assertEqual(error.key, key)
        self.assertTrue(
            str(error).startswith(f"{key}: "), f"{str(error)!r} does not start with {key!r}"
        )
        if problem is not None:
            self.assertIn(problem, error.problem)
        return error

    def test_access_and_limit_keys(self) -> None:
        """The access lists and limits name their key and what is wrong."""
        for data, key, problem in [
            ({"control": {"allow": "10.0.0.0/8"}}, "control.allow", "a list"),
            ({"control": {"allow": ["10.0.0.0/33"]}}, "control.allow", "CIDR"),
            ({"control": {"allow": [10]}}, "control.allow", "10"),
            ({"control": {"max_connections": 0}}, "control.max_connections", "outside"),
            ({"control": {"max_connections_per_ip": "many"}}, "control.max_connections_per_ip",
             "whole number"),
            ({"control": {"idle_timeout": 0}}, "control.idle_timeout", "outside"),
            ({"devices": {"allow": ["00:a8:59"]}}, "devices.allow", "not a MAC"),
            ({"devices": {"allow": "00a859000001"}}, "devices.allow", "a list"),
            ({"recordings": {"max_active": -1}}, "recordings.max_active", "outside"),
            ({"recordings": {"max_per_device": 0}}, "recordings.max_per_device", "outside"),
            ({"recordings": {"max_starts_per_minute": True}},
             "recordings.max_starts_per_minute", "whole number"),
            ({"recordings": {"max_pending_per_address": 0}},
             "recordings.max_pending_per_address", "outside"),
            ({"recordings": {"max_pending_per_address": "lots"}},
             "recordings.max_pending_per_address", "whole number"),
            ({"http": {"allowed_hosts": ["bad host"]}}, "http.allowed_hosts", "host name"),
            ({"http": {"allowed_hosts": "x.example"}}, "http.allowed_hosts", "a list"),
        ]:
            self.assert_config_error(data, key, problem)

    def test_http_connection_keys(self) -> None:
        """http.max_connections, http.max_connections_per_ip and
        http.request_timeout have defaults that leave room for a few
        browsers behind one address; bad values name their key."""
        http = parse_config({}).http
        self.assertEqual((http.max_connections, http.max_connections_per_ip,
                          http.request_timeout), (256, 32, 10.0))
        for data, key, problem in [
            ({"http": {"max_connections": 0}}, "http.max_connections", "outside"),
            ({"http": {"max_connections_per_ip": "many"}}, "http.max_connections_per_ip",
             "whole number"),
            ({"http": {"request_timeout": 0.5}}, "http.request_timeout", "outside"),
            ({"http": {"request_timeout": "10s"}}, "http.request_timeout", "seconds"),
        ]:
            self.assert_config_error(data, key, problem)

    def test_numbers_keys(self) -> None:
        """numbers.*: a country code of digits (49 or "49"), prefixes of
        digits in quotes (a bare 00 or 011 is another number to YAML), and
        a trunk prefix only with a country code; errors name the key."""
        for data, key, problem in [
            ({"numbers": {"country_code": "+49"}}, "numbers.country_code", "1 to 3 digits"),
            ({"numbers": {"country_code": 4949}}, "numbers.country_code", "1 to 3 digits"),
            ({"numbers": {"country_code": "049"}}, "numbers.country_code", "1 to 3 digits"),
            ({"numbers": {"country_code": True}}, "numbers.country_code", "1 to 3 digits"),
            ({"numbers": {"country_code": 49, "trunk_prefix": 0}}, "numbers.trunk_prefix",
             "in quotes"),
            ({"numbers": {"country_code": 49, "trunk_prefix": "O"}}, "numbers.trunk_prefix",
             "digits"),
            ({"numbers": {"country_code": 1, "international_prefix": 11}},
             "numbers.international_prefix", "in quotes"),
            ({"numbers": {"country_code": 1, "international_prefix": ""}},
             "numbers.international_prefix", "1 to 4 digits"),
            ({"numbers": {"trunk_prefix": "0"}}, "numbers.trunk_prefix",
             "needs numbers.country_code"),
            ({"numbers": {"country": 49}}, "numbers.country", "unknown key"),
        ]:
            self.assert_config_error(data, key, problem)
        numbers = yaml.safe_load('numbers: {country_code: 49, trunk_prefix: "0"}')
        plan = parse_config(numbers).numbers.plan
        self.assertEqual((plan.country_code, plan.trunk_prefix, plan.international_prefix),
                         ("49", "0", "00"))
        self.assertIsNone(parse_config(None).numbers.plan.country_code)

    def test_config_error_is_value_error(self) -> None:
        """ConfigError is a ValueError, with the key and the problem as attributes."""
        error = ConfigError("rtp.port_range", "low port above high port")
        self.assertIsInstance(error, ValueError)
        self.assertEqual(str(error), "rtp.port_range: low port above high port")
        self.assertEqual(error.key, "rtp.port_range")
        self.assertEqual(error.problem, "low port above high port")

    def test_unknown_section(self) -> None:
        """An unknown section is an error naming it and listing the known ones."""
        error = self.assert_config_error({"rpt": {}}, "rpt", "unknown section")
        for name in SECTIONS:
            self.assertIn(name, str(error))

    def test_unknown_key(self) -> None:
        """A misspelt key is an error naming its full path, never silently ignored."""
        error = self.assert_config_error({"rtp": {"prot_range": [1, 2]}}, "rtp.prot_range")
        self.assertTrue(str(error).startswith("rtp.prot_range: unknown key"), str(error))
        self.assertIn("port_range", str(error))

    def test_index_database(self) -> None:
        """index.database must be a path: anything else names the key."""
        self.assert_config_error({"index": {"database": 5}}, "index.database", "expected a non-empty string")
        self.assert_config_error({"index": {"database": " "}}, "index.database")
        self.assertEqual(parse_config({"index": {"database": "/srv/i.db"}}).index.database, "/srv/i.db")

    def test_unknown_key_beside_good_keys(self) -> None:
        """An unknown key is reported even when valid keys come before it."""
        self.assert_config_error(
            {"storage": {"root": "r", "format": "g711", "fromat": "pcm16"}},
            "storage.fromat",
            "unknown key",
        )

    def test_low_port_above_high(self) -> None:
        """A reversed port range names rtp.port_range and says what is wrong."""
        error = self.assert_config_error({"rtp": {"port_range": [42000, 41000]}}, "rtp.port_range")
        self.assertEqual(str(error), "rtp.port_range: low port above high port")

    def test_port_zero(self) -> None:
        """Port 0 is outside 1..65535."""
        self.assert_config_error({"rtp": {"port_range": [0, 10]}}, "rtp.port_range", "outside")

    def test_port_above_65535(self) -> None:
        """Port 65536 is outside 1..65535."""
        self.assert_config_error({"rtp": {"port_range": [1, 65536]}}, "rtp.port_range", "outside")

    def test_negative_port(self) -> None:
        """A negative port is outside 1..65535."""
        self.assert_config_error({"rtp": {"port_range": [-5, 10]}}, "rtp.port_range")

    def test_port_range_shape(self) -> None:
        """The port range must be a two-element list."""
        for bad in ([41000], [1, 2, 3], "41000-41999", 41000, {"low": 1, "high": 2}, None):
            self.assert_config_error({"rtp": {"port_range": bad}}, "rtp.port_range")

    def test_port_not_a_whole_number(self) -> None:
        """Ports given as floats or strings are rejected."""
        for bad in ([1.0, 2], ["1", 2], [1, None]):
            self.assert_config_error({"rtp": {"port_range": bad}}, "rtp.port_range")

    def test_bool_port_is_not_int(self) -> None:
        """YAML true is not port 1, though bool is an int subclass in Python."""
        self.assert_config_error(
            {"rtp": {"port_range": [True, 10]}}, "rtp.port_range", "whole number"
        )

    def test_bool_max_message_bytes_is_not_int(self) -> None:
        """max_message_bytes: true is rejected, not read as 1."""
        self.assert_config_error(
            {"control": {"max_message_bytes": True}}, "control.max_message_bytes", "whole number"
        )

    def test_max_message_bytes_out_of_range(self) -> None:
        """max_message_bytes below 256 or above 1 MiB is rejected."""
        self.assert_config_error({"control": {"max_message_bytes": 255}}, "control.max_message_bytes")
        self.assert_config_error(
            {"control": {"max_message_bytes": (1 << 20) + 1}}, "control.max_message_bytes"
        )

    def test_interface_not_an_address(self) -> None:
        """An interface name or host name is not an IP address."""
        for bad in ("eth0", "localhost", "256.0.0.1", ""):
            self.assert_config_error({"rtp": {"interface": bad}}, "rtp.interface")

    def test_interface_not_a_string(self) -> None:
        """An interface given as a number is rejected."""
        self.assert_config_error({"rtp": {"interface": 127}}, "rtp.interface")

    def test_advertise_junk(self) -> None:
        """An advertise value with blanks or URL characters is rejected."""
        for bad in ("a b", "host&x=1", "50%", ""):
            self.assert_config_error({"rtp": {"advertise": bad}}, "rtp.advertise")

    def test_format_not_known(self) -> None:
        """Only g711 and pcm16 are formats; the error lists them."""
        error = self.assert_config_error({"storage": {"format": "mp3"}}, "storage.format")
        self.assertIn("g711", str(error))
        self.assertIn("pcm16", str(error))

    def test_format_case_sensitive(self) -> None:
        """Format names are exact: G711 is rejected."""
        self.assert_config_error({"storage": {"format": "G711"}}, "storage.format")

    def test_empty_listen(self) -> None:
        """An empty or blank control.listen is rejected."""
        for bad in ("", "   ", None, 10000):
            self.assert_config_error({"control": {"listen": bad}}, "control.listen")

    def test_empty_root(self) -> None:
        """An empty storage.root is rejected."""
        self.assert_config_error({"storage": {"root": ""}}, "storage.root")

    def test_section_not_a_mapping(self) -> None:
        """A section given as a list or a scalar names the section."""
        for bad in ([1, 2], "tcp:10000", 5, True):
            self.assert_config_error({"control": bad}, "control", "expected a mapping")

    def test_top_level_not_a_mapping(self) -> None:
        """A document that is a list or a scalar is a ConfigError, not a crash."""
        for bad in ([1, 2], "text", 5):
            error = self.assertRaises(ConfigError, parse_config, bad)
            self.assertIn("expected a mapping", str(error))

    def test_non_string_section_name(self) -> None:
        """A section name that is not a string (YAML `1:`) is rejected, naming it."""
        self.assert_config_error({1: {}}, "1", "keys must be names")

    def test_non_string_key(self) -> None:
        """A key that is not a string inside a section is rejected with its path."""
        self.assert_config_error({"rtp": {5: 1}}, "rtp.5", "keys must be names")


class LoadConfigTests(SynchronousTestCase):
    """load_config reads a file; every failure is a ConfigError naming the file."""

    def write(self, content: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as handle:
            handle.write(content)
        return path

    def test_loads(self) -> None:
        """A YAML file parses to the Config it spells (its paths in its folder)."""
        path = self.write(b"rtp:\n  port_range: [5000, 5010]\nstorage:\n")
        self.assertEqual(
            load_config(path),
            paths_from(Config(rtp=RtpConfig(port_range=(5000, 5010))),
                       os.path.dirname(os.path.abspath(path))),
        )

    def test_gives_key(self) -> None:
        """gives_key tells a key the file writes (even as an empty list or
        an empty section's child) from one left to its default."""
        data = yaml.safe_load("control:\n  allow: []\ndevices:\nrtp: {}\n")
        self.assertTrue(gives_key(data, "control.allow"))
        self.assertTrue(gives_key(data, "devices"))
        for key in ("devices.allow", "rtp.source", "storage.root", "control.allow.x"):
            self.assertFalse(gives_key(data, key), key)
        self.assertFalse(gives_key(None, "control.allow"))

    def test_empty_file(self) -> None:
        """An empty file means all defaults (their paths in its folder)."""
        path = self.write(b"")
        self.assertEqual(load_config(path),
                         paths_from(Config(), os.path.dirname(os.path.abspath(path))))

    def test_missing_file(self) -> None:
        """A missing file is a ConfigError naming the file."""
        path = self.mktemp()
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))

    def test_directory(self) -> None:
        """A directory given as the config file is a ConfigError naming it."""
        path = self.mktemp()
        os.mkdir(path)
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))

    def test_invalid_yaml(self) -> None:
        """Broken YAML is a ConfigError naming the file."""
        path = self.write(b"rtp:\n  port_range: [1, 2\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))
        self.assertIn("not valid YAML", str(error))

    def test_tab_indented_yaml(self) -> None:
        """YAML indented with a tab (a common hand-editing slip) names the file."""
        path = self.write(b"rtp:\n\tadvertise: auto\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))

    def test_yaml_error_on_one_line(self) -> None:
        """Broken YAML is told on one line (start-up's "one clear line"):
        the file, where (line and column) and what PyYAML found, instead of
        PyYAML's three lines."""
        for content, said in [
            (b"rtp: [\n", " is not valid YAML: line 2, column 1: expected the node content, "
             "but found '<stream end>' (while parsing a flow node)"),
            (b"rtp:\n\tadvertise: auto\n", " is not valid YAML: line 2, column 1: found "
             "character '\\t' that cannot start any token (while scanning for the next token)"),
        ]:
            path = self.write(content)
            error = self.assertRaises(ConfigError, load_config, path)
            self.assertEqual(str(error), path + said)

    def test_keys_and_values_on_one_line(self) -> None:
        """A key or value spelt with a new line or an escape character is
        shown escaped: the error stays one line of printable text, which no
        file can use to add a line to the log or send the terminal an
        escape sequence."""
        path = self.write(b'"a\\nrecsvc: fake\\e[31m": 1\n')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error).split(": unknown section")[0],
                         "a\\nrecsvc: fake\\x1b[31m")
        path = self.write(b'rtp:\n  "port\\u2028range\\r": 1\n')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertTrue(str(error).isprintable(), str(error))
        self.assertTrue(str(error).startswith("rtp.port\\u2028range\\r: unknown key"),
                        str(error))
        self.assertEqual(error.key, "rtp.port\u2028range\r")

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 (saved as Latin-1, say) is a ConfigError
        naming the file, not a UnicodeDecodeError traceback from twistd.
        """
        path = self.write("storage:\n  root: /srv/enregistrements-\xe9t\xe9\n".encode("latin-1"))
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(error))

    def test_bad_value_names_key(self) -> None:
        """A bad value in a file is reported with its key path."""
        path = self.write(b"rtp:\n  port_range: [42000, 41000]\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(str(error), "rtp.port_range: low port above high port")

    def test_yaml_bool_is_not_int(self) -> None:
        """YAML `yes`/`true` as a port reaches the converter as a bool and is refused."""
        path = self.write(b"rtp:\n  port_range: [true, 10]\n")
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertEqual(error.key, "rtp.port_range")


class AsConfigTests(SynchronousTestCase):
    """as_config takes a Config or the parsed mapping an embedding application has."""

    def test_config_passes_through(self) -> None:
        """A Config is returned as it is."""
        config = Config(storage=StorageConfig(format="pcm16"))
        self.assertIs(as_config(config), config)

    def test_mapping(self) -> None:
        """A mapping is parsed."""
        self.assertEqual(
            as_config({"storage": {"format": "pcm16"}}),
            Config(storage=StorageConfig(format="pcm16")),
        )

    def test_none(self) -> None:
        """None means all defaults."""
        self.assertEqual(as_config(None), Config())

    def test_bad_mapping(self) -> None:
        """A bad mapping raises the same ConfigError parse_config would."""
        error = self.assertRaises(ConfigError, as_config, {"rtp": {"prot_range": [1, 2]}})
        self.assertEqual(error.key, "rtp.prot_range")


# What yaml.safe_load can hand back: scalars (timestamps and !!binary
# included), lists and mappings with scalar keys.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-2, max_value=70000)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["auto", "g711", "pcm16", "0.0.0.0", "::1", "tcp:0", "bogus:1", "", "off",
                      "10.0.0.0/8", "::ffff:10.0.0.0/104", "00:a8:59:00:00:01", "00a8590000zz",
                      "http://127.0.0.1:1/hook", "ftp://x", "{device}/{id}", "{device}/../x",
                      "pbkdf2_sha256$1$c2FsdA==$aGFzaA==", "UTC", "Mars/Olympus"])
    | st.binary(max_size=10)
    | st.dates()
    | st.datetimes()
)
_keys = (
    st.sampled_from(SECTIONS + KEYS)
    | st.text(max_size=10)
    | st.integers()
    | st.booleans()
    | st.none()
    | st.floats(allow_nan=False)
)
_yamlish = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(_keys, children, max_size=4),
    max_leaves=20,
)
# Config-shaped documents get past the section and key checks and so
# exercise the value converters.
_configShaped = st.dictionaries(
    st.sampled_from(SECTIONS) | st.text(max_size=8),
    st.none() | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), _yamlish, max_size=4),
    max_size=3,
)


class ArbitraryDataTests(SynchronousTestCase):
    """Whatever YAML yields, parse_config either returns a Config or raises ConfigError."""

    @settings(max_examples=300, deadline=None)
    @given(_yamlish | _configShaped)
    def test_only_config_error(self, data: Any) -> None:
        """Arbitrary nested data never raises anything but ConfigError, with a key path."""
        try:
            config = parse_config(data)
        except ConfigError as error:
            self.assertIsInstance(error.key, str)
            self.assertTrue(str(error))
        else:
            self.assertIsInstance(config, Config)

    @settings(max_examples=50, deadline=None)
    @given(st.text(max_size=200))
    def test_arbitrary_file_only_config_error(self, text: str) -> None:
        """Any UTF-8 file loads to a Config or raises ConfigError, never another error."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        try:
            config = load_config(path)
        except ConfigError:
            pass
        else:
            self.assertIsInstance(config, Config)


class MediaSettingsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        The RTP timeline and timeout settings default as documented: a 1 s
        reorder window, 30 s gap fill cap, 60 s RTP timeout, 10 s for the
        first packet, DTMF payload type 101, source "peer", packets of at
        most 200 ms, 4 h files.
        """
        rtp = Config().rtp
        self.assertEqual(
            (rtp.reorder_window_ms, rtp.max_gap_fill, rtp.timeout, rtp.first_packet_timeout,
             rtp.dtmf_payload_type, rtp.source, rtp.max_packet_ms),
            (1000, 30.0, 60.0, 10.0, 101, "peer", 200),
        )
        self.assertEqual(Config().storage.max_duration, 14400.0)

    def test_source_choices(self) -> None:
        """
        rtp.source takes peer, strict, any, or a list of CIDRs (parsed to
        networks; host bits tolerated).
        """
        for choice in ("peer", "strict", "any"):
            self.assertEqual(parse_config({"rtp": {"source": choice}}).rtp.source, choice)
        networks = parse_config({"rtp": {"source": ["192.0.2.0/24", "198.51.100.7/24"]}}).rtp.source
        self.assertEqual([str(n) for n in networks], ["192.0.2.0/24", "198.51.100.0/24"])

    def test_bad_source(self) -> None:
        """
        A source that is none of those names the key and the bad item.
        """
        for value, fragment in (("anyone", "peer, strict, any"), (["10.0.0.0/33"], "10.0.0.0/33"), ([], "peer")):
            error = self.assertRaises(ConfigError, parse_config, {"rtp": {"source": value}})
            self.assertEqual(error.key, "rtp.source")
            self.assertIn(fragment, str(error))

    def test_bad_numbers(self) -> None:
        """
        Out-of-range or non-numeric timing settings name their key.
        """
        for section, key, value in (
            ("rtp", "reorder_window_ms", 5), ("rtp", "max_gap_fill", -1), ("rtp", "timeout", "60s"),
            ("rtp", "first_packet_timeout", True), ("rtp", "dtmf_payload_type", 8),
            ("rtp", "max_packet_ms", 10), ("rtp", "max_packet_ms", 1001), ("rtp", "max_packet_ms", "200ms"),
            ("storage", "max_duration", 10),
        ):
            error = self.assertRaises(ConfigError, parse_config, {section: {key: value}})
            self.assertEqual(error.key, f"{section}.{key}")

    def test_seconds_accept_fractions(self) -> None:
        """
        Second-valued settings accept whole and fractional numbers.
        """
        rtp = parse_config({"rtp": {"timeout": 90, "max_gap_fill": 2.5}}).rtp
        self.assertEqual((rtp.timeout, rtp.max_gap_fill), (90.0, 2.5))


class ThroughputSettingsTests(SynchronousTestCase):
    """rtp.read_interval_ms, rtp.receive_buffer_kb and storage.sync_each_file."""

    def test_defaults(self) -> None:
        """
        RTP sockets are read every 5 ms with 512 KB receive buffers, and the
        recordings' filesystem is synced as a whole (no per-file sync).
        """
        config = Config()
        self.assertEqual((config.rtp.read_interval_ms, config.rtp.receive_buffer_kb), (5, 512))
        self.assertIs(config.storage.sync_each_file, False)

    def test_accepted(self) -> None:
        """
        Whole numbers within range, at either end, and YAML booleans are
        taken as given.
        """
        for key, value in (
            ("read_interval_ms", 1), ("read_interval_ms", 100), ("read_interval_ms", 20),
            ("receive_buffer_kb", 64), ("receive_buffer_kb", 65536), ("receive_buffer_kb", 4096),
        ):
            self.assertEqual(getattr(parse_config({"rtp": {key: value}}).rtp, key), value)
        for text, expected in (("true", True), ("false", False)):
            data = yaml.safe_load(f"storage:\n  sync_each_file: {text}\n")
            self.assertIs(parse_config(data).storage.sync_each_file, expected)

    def test_out_of_range(self) -> None:
        """
        Values out of range or not whole numbers (a bool included) are a
        ConfigError naming the key.
        """
        for key, value in (
            ("read_interval_ms", 0), ("read_interval_ms", 101), ("read_interval_ms", 2.5),
            ("read_interval_ms", "5"), ("read_interval_ms", True),
            ("receive_buffer_kb", 63), ("receive_buffer_kb", 65537), ("receive_buffer_kb", None),
            ("receive_buffer_kb", False),
        ):
            error = self.assertRaises(ConfigError, parse_config, {"rtp": {key: value}})
            self.assertEqual(error.key, f"rtp.{key}", (key, value))
            self.assertTrue(str(error).startswith(f"rtp.{key}: "), str(error))

    def test_sync_each_file_only_bool(self) -> None:
        """
        storage.sync_each_file takes true or false only: a string such as
        "yes", or 1, is a ConfigError naming the key and the value.
        """
        for value in ("yes", "true", 1, 0, None, []):
            error = self.assertRaises(ConfigError, parse_config, {"storage": {"sync_each_file": value}})
            self.assertEqual(error.key, "storage.sync_each_file")
            self.assertIn("true or false", str(error))
            self.assertIn(repr(value), str(error))

    def test_sample_spells_them_out(self) -> None:
        """
        etc/recsvc.yaml sets each of these keys itself (to the default), so
        the sample documents them.
        """
        with open(SAMPLE, encoding="utf-8") as handle:
            sample = yaml.safe_load(handle)
        self.assertEqual(sample["rtp"]["read_interval_ms"], 5)
        self.assertEqual(sample["rtp"]["receive_buffer_kb"], 512)
        self.assertIs(sample["storage"]["sync_each_file"], False)


class FileModeConfigTests(SynchronousTestCase):
    def test_file_modes(self) -> None:
        """
        storage.file_mode is read as octal from YAML numbers (0640) and
        strings ("0640", "640"); a mode the service could not write its own
        files with, or nonsense, names the key.
        """
        self.assertEqual(Config().storage.file_mode, 0o640)
        for text, expected in (("0640", 0o640), ("'0600'", 0o600), ("'664'", 0o664)):
            data = yaml.safe_load(f"storage:\n  file_mode: {text}\n")
            self.assertEqual(parse_config(data).storage.file_mode, expected)
        for bad in ("'rw-r-----'", "0444", "-1", "true"):
            data = yaml.safe_load(f"storage:\n  file_mode: {bad}\n")
            error = self.assertRaises(ConfigError, parse_config, data)
            self.assertEqual(error.key, "storage.file_mode")


class PathConfigTests(SynchronousTestCase):
    def test_path_and_timezone(self) -> None:
        """
        storage.path and storage.timezone become the storage's template; a
        bad one names its key.
        """
        storage = parse_config({"storage": {"path": "{device}/%Y/{id}", "timezone": "Asia/Shanghai"}}).storage
        self.assertEqual(storage.path_template.build(0.0, {"device": "x", "id": "1"}), ("x", "1970", "1"))
        for key, value in (("path", "/etc/{id}"), ("path", "{nope}"), ("timezone", "Nowhere/City")):
            error = self.assertRaises(ConfigError, parse_config, {"storage": {key: value}})
            self.assertEqual(error.key, f"storage.{key}")


class RelativePathsTests(SynchronousTestCase):
    """A config file's relative paths, given or default, are its folder's,
    wherever it is loaded from; a mapping's are the working directory's."""

    def setUp(self) -> None:
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.folder, "etc"))
        self.path = os.path.join(self.folder, "etc", "recsvc.yaml")
        here = os.getcwd()
        self.addCleanup(os.chdir, here)

    def load_from(self, text: str, directory: str) -> Config:
        """load_config of ``text`` as the file, run from ``directory``."""
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.makedirs(directory, exist_ok=True)
        os.chdir(directory)
        return load_config(os.path.relpath(self.path))

    def test_given_paths_from_the_files_folder(self) -> None:
        """storage.root, index.database and an ssl: listener's files, given
        relative, name the same places from any working directory."""
        text = ("storage:\n  root: ../var/recordings\nindex:\n  database: index.sqlite3\n"
                "http:\n  listen: ssl:8443:privateKey=key.pem:interface=127.0.0.1\n")
        etc = os.path.join(self.folder, "etc")
        first = self.load_from(text, self.folder)
        second = self.load_from(text, os.path.join(self.folder, "elsewhere", "deeper"))
        self.assertEqual(first, second)
        self.assertEqual(first.storage.root, os.path.join(etc, "../var/recordings"))
        self.assertEqual(first.index.database, os.path.join(etc, "index.sqlite3"))
        self.assertEqual(first.http.listen, "ssl:port=8443:privateKey="
                         f"{os.path.join(etc, 'key.pem')}:interface=127.0.0.1")
        self.assertEqual(first.control.listen, "tcp:10000")

    def test_default_paths_from_the_files_folder(self) -> None:
        """Keys left out mean their default paths in the file's folder."""
        config = self.load_from("storage:\n  format: pcm16\n", "/")
        etc = os.path.join(self.folder, "etc")
        self.assertEqual((config.storage.root, config.index.database),
                         (os.path.join(etc, "var/recordings"),
                          os.path.join(etc, "var/recsvc.sqlite3")))

    def test_absolute_paths_as_they_are(self) -> None:
        """Absolute paths, and "off", are not touched."""
        config = self.load_from("storage:\n  root: /srv/recordings\nindex:\n"
                                "  database: /srv/index.sqlite3\nhttp:\n  listen: \"off\"\n",
                                self.folder)
        self.assertEqual((config.storage.root, config.index.database, config.http.listen),
                         ("/srv/recordings", "/srv/index.sqlite3", "off"))

    def test_mapping_from_the_working_directory(self) -> None:
        """An embedding application's mapping (no file) and the built-in
        defaults keep their relative paths: the working directory's."""
        config = as_config({"storage": {"root": "recordings"}})
        self.assertEqual((config.storage.root, config.index.database),
                         ("recordings", "var/recsvc.sqlite3"))
        self.assertEqual(Config().storage.root, "var/recordings")

    def test_paths_from(self) -> None:
        """paths_from joins a folder to each relative path; nothing else changes."""
        config = Config(http=HttpConfig(listen="unix:web.sock"))
        moved = paths_from(config, "/etc/recsvc")
        self.assertEqual(moved, attrs.evolve(
            config, storage=StorageConfig(root="/etc/recsvc/var/recordings"),
            index=IndexConfig(database="/etc/recsvc/var/recsvc.sqlite3"),
            http=HttpConfig(listen="unix:address=/etc/recsvc/web.sock")))


class ErrorInFileTests(SynchronousTestCase):
    def test_in_file(self) -> None:
        """A ConfigError for the user names the file before the key; one
        about the file itself (which names it) or without a file stays as it is."""
        self.assertEqual(ConfigError("rtp.timeout", "too long").in_file("etc/recsvc.yaml"),
                         "etc/recsvc.yaml: rtp.timeout: too long")
        self.assertEqual(ConfigError("rtp.timeout", "too long").in_file(None),
                         "rtp.timeout: too long")
        self.assertEqual(ConfigError("", "cannot read config file x.yaml").in_file("x.yaml"),
                         "cannot read config file x.yaml")


class GroupsTests(SynchronousTestCase):
    def test_groups(self) -> None:
        """Each team's devices (any MAC spelling) and local numbers (digits);
        a group may be empty."""
        from recsvc.access.scopes import Group

        config = parse_config({"groups": {
            "sales": {"devices": ["00:A8:59:00:00:01", "00a859000002"], "numbers": ["2001", "+49 2002"]},
            "support": None}})
        self.assertEqual(config.group_map, {
            "sales": Group("sales", frozenset({"00a859000001", "00a859000002"}),
                           frozenset({"2001", "492002"})),
            "support": Group("support")})
        self.assertEqual(parse_config({}).groups, ())

    def test_octal_looking_numbers_must_be_quoted(self) -> None:
        """YAML reads an unquoted 0301234 as an octal number (98972): a
        group's numbers are text, so it cannot slip into another line."""
        with self.assertRaises(ConfigError) as caught:
            parse_config(yaml.safe_load("groups:\n  s:\n    numbers: [0301234]\n"))
        self.assertIn("98972 is not quoted", str(caught.exception))
        config = parse_config(yaml.safe_load('groups:\n  s:\n    numbers: ["0301234"]\n'))
        self.assertEqual(config.group_map["s"].numbers, frozenset({"0301234"}))

    def test_bad_groups_name_the_key(self) -> None:
        """Each bad group says which key and what is wrong."""
        for data, key, said in (
                (["sales"], "groups", "expected a mapping"),
                ({"a b": {}}, "groups.a b", "is not a group name"),
                ({"s": {"phones": []}}, "groups.s.phones", "unknown key (known: devices, numbers)"),
                ({"s": {"devices": "00a859000001"}}, "groups.s.devices", "expected a list"),
                ({"s": {"devices": ["nope"]}}, "groups.s.devices", "is not a MAC address"),
                ({"s": {"numbers": "2001"}}, "groups.s.numbers", "expected a list"),
                ({"s": {"numbers": ["20x1"]}}, "groups.s.numbers", "is not a number"),
                ({"s": {"numbers": [2001]}}, "groups.s.numbers", "2001 is not quoted")):
            with self.assertRaises(ConfigError) as caught:
                parse_config({"groups": data})
            self.assertEqual(caught.exception.key, key, data)
            self.assertIn(said, str(caught.exception), data)


class NodeTests(SynchronousTestCase):
    """The top-level key ``node``: the recorder node's name."""

    def test_default_is_the_host_name(self) -> None:
        """Without ``node``, the host name's first label is the node's name;
        what a name cannot hold is taken out."""
        self.patch(socket, "gethostname", lambda: "rec-01.site.example")
        self.assertEqual(parse_config({}).node, "rec-01")
        self.patch(socket, "gethostname", lambda: "_odd host!")
        self.assertEqual(parse_config({}).node, "oddhost")
        self.patch(socket, "gethostname", lambda: "")
        self.assertEqual(parse_config({}).node, "recsvc")

    def test_given_name(self) -> None:
        """A name of letters, digits, '.', '_' and '-' is taken as it is;
        ``node:`` left empty is the default."""
        self.assertEqual(parse_config({"node": "berlin-2.a_b"}).node, "berlin-2.a_b")
        self.patch(socket, "gethostname", lambda: "rec-01")
        self.assertEqual(parse_config({"node": None}).node, "rec-01")  # empty: the default

    def test_bad_names_name_the_key(self) -> None:
        """Anything else is a ConfigError naming ``node``: no path, log or
        spreadsheet ever sees it."""
        for bad in ("", "-x", "a/b", "a b", "x" * 64, "=cmd()", 7, ["a"], {"a": 1}):
            with self.assertRaises(ConfigError) as raised:
                parse_config({"node": bad})
            self.assertEqual(raised.exception.key, "node")

