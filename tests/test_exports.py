"""The public face, as klein's test_exports.py pins its own: each stable name
is the object it should be. A failure here means an application, a twistd
command line or an installed script would break: change the name back, or
change it on purpose and say so in the README."""

from __future__ import annotations

import configparser
import importlib
import inspect
import io
import os
import pkgutil
import subprocess
import sys
import typing
from typing import Any

import attrs
from twisted.application.service import IService
from twisted.logger import ILogObserver
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

import recsvc
import recsvc.config
import recsvc.logs
import recsvc.storage
import recsvc.storage.folder
import recsvc.testing
from recsvc import observers as observers_module
from recsvc import tap
from recsvc.service import RecorderService

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUP_CFG = os.path.join(CHECKOUT, "setup.cfg")

SUBPACKAGES = ("application", "archive", "cli", "control", "index", "media", "phonesim", "storage", "web")

# What a subpackage gives besides its modules, by package.
REEXPORTED = {"storage": {"Storage": recsvc.storage.folder.Storage}}

# Importing these means importing the server (or choosing the reactor).
SERVER_MODULES = ("twisted.internet.reactor", "recsvc.tap", "recsvc.service", "recsvc.session",
                  "recsvc.control.protocol", "recsvc.media.sockets", "recsvc.web.site")


def setup_cfg() -> configparser.ConfigParser:
    """The checkout's setup.cfg, as written (no interpolation)."""
    parser = configparser.ConfigParser(interpolation=None)
    with open(SETUP_CFG, encoding="utf-8") as handle:
        parser.read_file(handle)
    return parser


def public_modules(package: Any) -> set[str]:
    """The names of a package's modules and subpackages, less the private ones."""
    return {module.name for module in pkgutil.iter_modules(package.__path__)
            if not module.name.startswith("_")}


class PublicNamesTests(SynchronousTestCase):
    """What an embedding application imports from recsvc."""

    def test_all(self) -> None:
        """recsvc's __all__ names makeService, IRecordingObserver and
        __version__, each the object it should be."""
        self.assertEqual(sorted(recsvc.__all__), ["IRecordingObserver", "__version__", "makeService"])
        self.assertIs(recsvc.IRecordingObserver, observers_module.IRecordingObserver)
        self.assertTrue(callable(recsvc.makeService))
        self.assertRegex(recsvc.__version__, r"^\d+\.\d+\.\d+")

    def test_make_service_signature_compatible(self) -> None:
        """makeService still takes (config, reactor) by position, as before
        observers came; observers is keyword-only and optional."""
        for function in (recsvc.makeService, tap.makeService):
            parameters = inspect.signature(function).parameters
            self.assertEqual(list(parameters)[:2], ["config", "reactor"])
            self.assertEqual(parameters["observers"].kind, inspect.Parameter.KEYWORD_ONLY)
            self.assertEqual(parameters["observers"].default, ())

    def test_make_service_returns_iservice(self) -> None:
        """recsvc.makeService is declared to return an IService, as
        recsvc.tap.makeService is."""
        for function in (recsvc.makeService, tap.makeService):
            self.assertIs(typing.get_type_hints(function)["return"], IService)

    def test_make_service_is_taps(self) -> None:
        """recsvc.makeService hands its arguments to recsvc.tap.makeService
        (the function twistd's plugin calls) and returns its tree."""
        calls = []
        tree = object()

        def make(config: Any, reactor: Any, *, observers: Any) -> Any:
            calls.append((config, reactor, observers))
            return tree

        self.patch(tap, "makeService", make)
        config, reactor, observers = {"http": {"listen": "off"}}, object(), [object()]
        self.assertIs(recsvc.makeService(config, reactor, observers=observers), tree)
        self.assertEqual(calls, [(config, reactor, observers)])

    def test_version_is_setup_cfgs(self) -> None:
        """recsvc.__version__ is the version setup.cfg gives the distribution."""
        self.assertEqual(recsvc.__version__, setup_cfg()["metadata"]["version"])

    def test_importing_does_not_start_the_server(self) -> None:
        """Importing recsvc and every subpackage imports neither the reactor
        (an application may still install its own) nor the server's modules."""
        script = ("import sys, recsvc; "
                  + "".join(f"import recsvc.{name}; " for name in SUBPACKAGES)
                  + f"print(sorted(m for m in {SERVER_MODULES!r} if m in sys.modules))")
        result = subprocess.run([sys.executable, "-c", script], cwd=CHECKOUT, env=dict(
            os.environ, PYTHONPATH=CHECKOUT), capture_output=True, text=True, check=True)
        self.assertEqual(result.stdout, "[]\n")


class SubpackageTests(SynchronousTestCase):
    """Each part of the server is a subpackage that says what it is for and
    names its modules in __all__."""

    def test_docstrings(self) -> None:
        """Each subpackage has a docstring."""
        for name in SUBPACKAGES:
            package = importlib.import_module(f"recsvc.{name}")
            self.assertTrue((package.__doc__ or "").strip(), f"recsvc.{name} has no docstring")

    def test_all_names_the_modules(self) -> None:
        """A subpackage's __all__ names each of its public modules (and what
        it re-exports), and each name there imports."""
        for name in SUBPACKAGES:
            package = importlib.import_module(f"recsvc.{name}")
            reexported = REEXPORTED.get(name, {})
            modules = set(package.__all__) - set(reexported)
            self.assertEqual(len(package.__all__), len(set(package.__all__)),
                             f"recsvc.{name}.__all__ names one twice")
            self.assertEqual(
                modules, public_modules(package),
                f"recsvc.{name}.__all__ and its modules differ: list a new module there "
                "(or give it a leading underscore if it is private)")
            for module in sorted(modules):
                importlib.import_module(f"recsvc.{name}.{module}")
            for attribute, value in reexported.items():
                self.assertIs(getattr(package, attribute), value)

    def test_storage(self) -> None:
        """recsvc.storage.Storage, the stable path to the recordings folder,
        is recsvc.storage.folder.Storage."""
        self.assertIs(recsvc.storage.Storage, recsvc.storage.folder.Storage)
        self.assertIn("Storage", recsvc.storage.__all__)


class TwistdPluginTests(SynchronousTestCase):
    """``twistd recsvc``: the dropin (tests/test_plugin.py, test_pointsAtTap)
    names recsvc.tap, which gives Options and makeService."""

    def test_tap(self) -> None:
        """recsvc.tap.Options are twistd options for --config, and
        recsvc.tap.makeService takes them."""
        self.assertTrue(issubclass(tap.Options, usage.Options))
        self.assertIn("config", tap.Options())
        self.assertEqual(list(inspect.signature(tap.makeService).parameters)[0], "config")


class ConfigTests(SynchronousTestCase):
    """recsvc.config: what an application builds makeService's config with."""

    def test_names(self) -> None:
        """Config is a frozen attrs class; load_config reads a file into
        one; ConfigError is the error both raise."""
        self.assertTrue(attrs.has(recsvc.config.Config))
        self.assertRaises(attrs.exceptions.FrozenInstanceError,
                          setattr, recsvc.config.Config(), "http", None)
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("http:\n  listen: \"off\"\n")
        config = recsvc.config.load_config(path)
        self.assertIsInstance(config, recsvc.config.Config)
        self.assertEqual(config.http.listen, "off")
        self.assertTrue(issubclass(recsvc.config.ConfigError, Exception))


class LogsTests(SynchronousTestCase):
    """recsvc.logs: ``twistd --logger recsvc.logs.json_lines`` and the Logger."""

    def test_json_lines(self) -> None:
        """json_lines, called as twistd's --logger calls it (without
        arguments) or given a file, is a log observer."""
        self.assertTrue(ILogObserver.providedBy(recsvc.logs.json_lines()))
        self.assertTrue(ILogObserver.providedBy(recsvc.logs.json_lines(io.StringIO())))

    def test_logger(self) -> None:
        """recsvc.logs.Logger is a twisted.logger.Logger."""
        import twisted.logger

        self.assertTrue(issubclass(recsvc.logs.Logger, twisted.logger.Logger))


class TestingTests(SynchronousTestCase):
    """recsvc.testing: the fakes shipped with the package."""

    FAKES = ("FailingWriter", "FakeIndexer", "FakeListeningPort", "FakePhoneLink",
             "FakePortPool", "FakeRecorder", "ManualRunner", "MemoryStore", "MemoryWavWriter",
             "MemoryWriters", "memory_recorder", "run_now")

    def test_fakes(self) -> None:
        """Each fake is recsvc.testing's own."""
        for name in self.FAKES:
            self.assertEqual(getattr(recsvc.testing, name).__module__, "recsvc.testing", name)

    def test_memory_recorder(self) -> None:
        """memory_recorder gives a RecorderService on the fakes."""
        recorder = recsvc.testing.memory_recorder(self.mktemp())
        self.assertIsInstance(recorder, RecorderService)
        self.assertIsInstance(recorder.ports, recsvc.testing.FakePortPool)


class ConsoleScriptsTests(SynchronousTestCase):
    """The commands setup.cfg installs."""

    def test_entry_points(self) -> None:
        """``recsvc`` and ``recsvc-phone`` (and nothing else) are installed,
        each pointing at a function."""
        scripts = {}
        for line in setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines():
            script, target = (part.strip() for part in line.split("="))
            module, function = target.split(":")
            scripts[script] = getattr(importlib.import_module(module), function)
        self.assertEqual(sorted(scripts), ["recsvc", "recsvc-phone"])
        self.assertIs(scripts["recsvc"], importlib.import_module("recsvc.cli.commands").main)
        self.assertIs(scripts["recsvc-phone"], importlib.import_module("recsvc.phonesim.cli").main)
        for function in scripts.values():
            self.assertTrue(inspect.isfunction(function))


class ServiceTreeTests(SynchronousTestCase):
    """The names makeService gives its children (getServiceNamed)."""

    def test_child_names(self) -> None:
        """Started by twistd from a config file, with HTTP on, the tree's
        children are, in order: "recorder", "control", "http", "reload" and
        "background"; "recorder" is the RecorderService."""
        folder = os.path.abspath(self.mktemp())
        os.makedirs(folder)
        path = os.path.join(folder, "recsvc.yaml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("control: {listen: \"tcp:0:interface=127.0.0.1\"}\n"
                         "rtp: {interface: 127.0.0.1, port_range: [45000, 45009]}\n"
                         "http: {listen: \"tcp:0:interface=127.0.0.1\"}\n")
        options = tap.Options()
        options["config"], options["config_path"] = recsvc.config.load_config(path), path
        tree = tap.makeService(options, reactor=MemoryReactorClock())
        self.assertEqual([child.name for child in tree],
                         ["recorder", "control", "http", "reload", "background"])
        self.assertIsInstance(tree.getServiceNamed("recorder"), RecorderService)
