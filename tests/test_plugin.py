"""Tests for the twistd dropin, twisted/plugins/recsvc_plugin.py: twistd finds
"recsvc" in-process, from any directory, and from a plain (non-editable) install."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from twisted.application.service import IServiceMaker
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

import recsvc.tap

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.dirname(sys.executable)
TWISTD = os.path.join(BIN, "twistd")

LIST_TAPNAMES = (
    "from twisted.plugin import getPlugins; "
    "from twisted.application.service import IServiceMaker; "
    "print([p.tapname for p in getPlugins(IServiceMaker)])"
)

# Run with PYTHONPATH=<target>: drops every other sys.path entry that holds
# recsvc or its dropin (the checkout, the editable install's link tree)
# before twisted.plugins computes its __path__, then reports where the plugin
# and recsvc came from. The venv's site-packages (Twisted itself) stays,
# though the venv lives inside the checkout.
FROM_TARGET = """
import json, os, sys
target = os.path.realpath(sys.argv[1])
def providesRecsvc(entry):
    entry = os.path.realpath(entry or os.getcwd())
    return entry != target and (
        os.path.exists(os.path.join(entry, "recsvc"))
        or os.path.exists(os.path.join(entry, "twisted", "plugins", "recsvc_plugin.py"))
    )
sys.path[:] = [entry for entry in sys.path if not providesRecsvc(entry)]
if "twisted.plugins" in sys.modules:
    raise SystemExit("twisted.plugins imported before sys.path was cleaned")
from twisted.plugin import getPlugins
from twisted.application.service import IServiceMaker
tapnames = [p.tapname for p in getPlugins(IServiceMaker)]
import recsvc
print(json.dumps({
    "tapnames": tapnames,
    "dropin": sys.modules["twisted.plugins.recsvc_plugin"].__file__,
    "recsvc": recsvc.__file__,
}))
"""


def _clean_environment() -> dict[str, str]:
    """The environment without anything that would put the checkout on sys.path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    return env


def _fresh_directory(testCase: SynchronousTestCase) -> str:
    """A new directory outside the checkout (the trial temp folder is inside it)."""
    path = tempfile.mkdtemp(prefix="recsvc-plugin-test-")
    testCase.addCleanup(shutil.rmtree, path, True)
    return path


def _run(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        argv,
        cwd=cwd,
        env=_clean_environment() if env is None else env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{argv!r} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def _recsvc_plugins() -> list[IServiceMaker]:
    return [p for p in getPlugins(IServiceMaker) if p.tapname == "recsvc"]


class InProcessTests(SynchronousTestCase):
    """The dropin as twistd sees it in this process."""

    def test_found(self) -> None:
        """"recsvc" is among the IServiceMaker plugins' tapnames."""
        tapnames = [plugin.tapname for plugin in getPlugins(IServiceMaker)]
        self.assertIn("recsvc", tapnames)

    def test_found_once(self) -> None:
        """Exactly one recsvc plugin is found (no stale copy shadows or doubles it)."""
        self.assertEqual(len(_recsvc_plugins()), 1)

    def test_points_at_tap(self) -> None:
        """The plugin's options and makeService are recsvc.tap's."""
        [plugin] = _recsvc_plugins()
        self.assertIs(plugin.options, recsvc.tap.Options)
        self.assertIs(plugin.makeService, recsvc.tap.makeService)
        self.assertEqual(plugin.description, "Call recorder for Fanvil phones")


class FreshDirectoryTests(SynchronousTestCase):
    """twistd finds the plugin when run from a directory other than the checkout."""

    def test_get_plugins(self) -> None:
        """A Python started in an unrelated directory lists recsvc among the tapnames."""
        output = _run([sys.executable, "-c", LIST_TAPNAMES], cwd=_fresh_directory(self))
        self.assertIn("'recsvc'", output)

    def test_twistd_help(self) -> None:
        """`twistd --help` run from an unrelated directory lists the recsvc command."""
        output = _run([TWISTD, "--help"], cwd=_fresh_directory(self))
        self.assertIn("recsvc", output)
        self.assertIn("Call recorder for Fanvil phones", output)

    def test_listing_does_not_import_application(self) -> None:
        """
        Listing plugins (as `twistd --help` does) imports the dropin but not
        recsvc itself: the dropin names the module instead of importing it.
        """
        script = (
            LIST_TAPNAMES
            + "; import sys; print('twisted.plugins.recsvc_plugin' in sys.modules,"
            " sorted(m for m in sys.modules if m == 'recsvc' or m.startswith('recsvc.')))"
        )
        output = _run([sys.executable, "-c", script], cwd=_fresh_directory(self))
        self.assertIn("'recsvc'", output)
        self.assertTrue(output.rstrip().endswith("True []"), output)


class InstalledWheelTests(SynchronousTestCase):
    """The project as a wheel: the dropin ships and works without the checkout."""

    def build_wheel(self) -> str:
        """
        Build the project's wheel from a copy of the checkout, so the build's
        own build/ and egg-info litter neither the checkout nor leftovers from
        earlier builds in it leak into the wheel.
        """
        work = _fresh_directory(self)
        source = os.path.join(work, "source")
        shutil.copytree(
            CHECKOUT,
            source,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "dist", "*.egg-info", "_trial_temp*",
                "__pycache__", "*.pyc", "dropin.cache", "var", ".hypothesis", "tests",
            ),
            symlinks=True,
        )
        wheels = os.path.join(work, "wheels")
        _run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--no-build-isolation", "-w", wheels, source],
            cwd=work,
        )
        [name] = os.listdir(wheels)
        self.assertTrue(name.endswith(".whl"), name)
        return os.path.join(wheels, name)

    def test_wheel_contents(self) -> None:
        """
        The wheel carries the dropin but no twisted/__init__.py nor
        twisted/plugins/__init__.py, which would replace Twisted's own when
        installed.
        """
        with zipfile.ZipFile(self.build_wheel()) as wheel:
            names = set(wheel.namelist())
        self.assertIn("twisted/plugins/recsvc_plugin.py", names)
        self.assertIn("recsvc/tap.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertEqual(
            sorted(n for n in names if n.startswith("twisted/")),
            ["twisted/plugins/recsvc_plugin.py"],
        )

    def test_installed_target(self) -> None:
        """
        Installed with `pip install --target T` and found through PYTHONPATH=T,
        with the checkout off sys.path, getPlugins finds recsvc in T's
        twisted/plugins and twistd's recsvc comes from T.
        """
        wheel = self.build_wheel()
        target = os.path.join(_fresh_directory(self), "target")
        _run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
             "--no-index", "--target", target, wheel],
            cwd=os.path.dirname(target),
        )
        env = _clean_environment()
        env["PYTHONPATH"] = target
        output = _run(
            [sys.executable, "-c", FROM_TARGET, target], cwd=_fresh_directory(self), env=env
        )
        found = json.loads(output.strip().splitlines()[-1])
        self.assertIn("recsvc", found["tapnames"])
        realTarget = os.path.realpath(target)
        self.assertEqual(
            os.path.realpath(found["dropin"]),
            os.path.join(realTarget, "twisted", "plugins", "recsvc_plugin.py"),
        )
        self.assertEqual(
            os.path.realpath(found["recsvc"]), os.path.join(realTarget, "recsvc", "__init__.py")
        )
