"""The import rules of recsvc's layers, read from the source with `ast`:
the pure core never imports twisted.internet, the server never imports the
phone simulator, and the parts depend downwards only (STYLE.md, issue 17).
"""

from __future__ import annotations

import ast
import pathlib
from typing import Callable, Iterator

import attrs
from twisted.trial.unittest import SynchronousTestCase

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "recsvc"

# The modules that import no Twisted at all: encoders, parsers and state
# machines that never touch a socket or the reactor. A pure module must stay
# pure (a module may join the list; leaving it is a design change).
PURE_MODULES = (
    "recsvc.access.audit",
    "recsvc.access.holds",
    "recsvc.access.notes",
    "recsvc.access.plays",
    "recsvc.access.roles",
    "recsvc.access.scopes",
    "recsvc.access.sessions",
    "recsvc.access.users",
    "recsvc.admission",
    "recsvc.application.descriptors",
    "recsvc.application.memory",
    "recsvc.archive.backlog",
    "recsvc.archive.journal",
    "recsvc.archive.layout",
    "recsvc.archive.store",
    "recsvc.archive.transfer",
    "recsvc.cli.listing",
    "recsvc.cli.status",
    "recsvc.config",
    "recsvc.control.commands",
    "recsvc.control.framing",
    "recsvc.devices",
    "recsvc.index.numberplan",
    "recsvc.index.spreadsheet",
    "recsvc.index.store",
    "recsvc.media.codec",
    "recsvc.media.dtmf",
    "recsvc.media.g711",
    "recsvc.media.lane",
    "recsvc.media.pipeline",
    "recsvc.media.rtp",
    "recsvc.media.source",
    "recsvc.media.timeline",
    "recsvc.metrics",
    "recsvc.passwords",
    "recsvc.phonesim.abuse",
    "recsvc.phonesim.fleet",
    "recsvc.phonesim.pacer",
    "recsvc.phonesim.phone",
    "recsvc.storage.erasure",
    "recsvc.storage.folder",
    "recsvc.storage.naming",
    "recsvc.storage.recovery",
    "recsvc.storage.retention",
    "recsvc.storage.usbfile",
    "recsvc.storage.wav",
    "recsvc.summary",
    "recsvc.urls",
    "recsvc.web.playback",
)

# Imports that break a rule today, as (importing module, forbidden module).
# Each entry must still be needed: the test fails once the import is gone,
# so that the entry is deleted with it.
KNOWN_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset()


@attrs.frozen
class Import:
    """One import statement of a module: the modules it names (for ``from M
    import n``, both ``M`` and ``M.n``, as ``n`` may be a submodule)."""

    line: int
    targets: tuple[str, ...]
    # The names taken with ``from M import _n`` (private to M).
    private_names: tuple[str, ...] = ()
    source_module: str = ""


@attrs.frozen
class Violation:
    path: str
    line: int
    module: str
    imported: str
    forbidden: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.module} imports {self.imported} ({self.rule})"


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    """``recsvc/control/protocol.py`` -> ``recsvc.control.protocol``; a
    package's ``__init__.py`` is the package."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[Import]:
    """Every import in ``source``, at any depth (inside functions and
    ``if TYPE_CHECKING:`` blocks too), relative ones made absolute."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, (alias.name,))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [alias.name for alias in node.names if alias.name != "*"]
            private = tuple(n for n in names if n.startswith("_") and not n.startswith("__"))
            yield Import(node.lineno, (base, *(f"{base}.{n}" for n in names)), private, base)


def within(name: str, prefix: str) -> bool:
    """Whether module ``name`` is ``prefix`` or lies under it."""
    return name == prefix or name.startswith(prefix + ".")


def modules(package: pathlib.Path = PACKAGE) -> Iterator[tuple[pathlib.Path, str, list[Import]]]:
    for path in sorted(package.rglob("*.py")):
        name = module_name(path, package.parent)
        yield path, name, list(imports_of(path.read_text(encoding="utf-8"), name,
                                          path.name == "__init__.py"))


# A rule: which importing modules it applies to, the forbidden modules, why.
Rule = tuple[Callable[[str], bool], tuple[str, ...], str]

RULES: tuple[Rule, ...] = (
    (lambda m: m in PURE_MODULES, ("twisted.internet",),
     "a pure module never imports twisted.internet"),
    (lambda m: not within(m, "recsvc.phonesim"), ("recsvc.phonesim",),
     "the server never imports the phone simulator"),
    (lambda m: within(m, "recsvc.control"), ("recsvc.service", "recsvc.session"),
     "control knows the recorder only through its interface"),
    (lambda m: within(m, "recsvc.storage") or within(m, "recsvc.media"), ("recsvc.web",),
     "storage and media never import the web"),
    (lambda m: m == "recsvc.config", ("recsvc.web", "recsvc.webhook"),
     "the config imports neither the web nor the webhook"),
    (lambda m: m != "recsvc.tap", ("twisted.internet.reactor",),
     "only recsvc.tap imports the global reactor"),
    (lambda m: m == "recsvc.session" or within(m, "recsvc.storage") or within(m, "recsvc.media"),
     ("recsvc.service",),
     "a recording, its files and its media reach the recorder only through IRecordingEvents"),
)


def violations(package: pathlib.Path = PACKAGE) -> list[Violation]:
    """Every import in ``package`` that breaks one of the rules."""
    found = []
    for path, module, imports in modules(package):
        shown = str(path.relative_to(package.parent))
        for applies, forbidden, rule in RULES:
            if not applies(module):
                continue
            for imported in imports:
                for prefix in forbidden:
                    hit = next((t for t in imported.targets if within(t, prefix)), None)
                    if hit is not None:
                        found.append(Violation(shown, imported.line, module, hit, prefix, rule))
        if within(module, "recsvc.cli"):
            for imported in imports:
                for name in imported.private_names:
                    if imported.source_module != module:
                        found.append(Violation(
                            shown, imported.line, module, f"{imported.source_module}.{name}",
                            f"{imported.source_module}.{name}",
                            "the cli imports no private name of another module"))
    return found


class ImportReadingTests(SynchronousTestCase):
    """The reader the rules stand on finds every kind of import."""

    def test_every_kind_of_import(self) -> None:
        """Plain, dotted, from-, relative, function-level and TYPE_CHECKING
        imports are all found, with the submodule a from-import may name."""
        source = (
            "import twisted.internet.defer\n"
            "from twisted.internet import reactor\n"
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n"
            "    from recsvc.service import RecorderService\n"
            "def later():\n"
            "    from ..web import auth\n"
            "from . import framing\n"
        )
        targets = {t for i in imports_of(source, "recsvc.control.protocol") for t in i.targets}
        for expected in ("twisted.internet.defer", "twisted.internet.reactor",
                         "recsvc.service", "recsvc.web.auth", "recsvc.control.framing"):
            self.assertIn(expected, targets)

    def test_private_names(self) -> None:
        """``from M import _n`` is a private name of M; dunders are not."""
        source = "from recsvc.tap import _reactor, check\nfrom recsvc import __version__\n"
        found = [(i.source_module, i.private_names) for i in imports_of(source, "recsvc.cli.x")]
        self.assertEqual(found, [("recsvc.tap", ("_reactor",)), ("recsvc", ())])

    def test_module_names(self) -> None:
        """A file's module name, a package's ``__init__`` being the package."""
        self.assertEqual(module_name(ROOT / "recsvc/control/protocol.py"),
                         "recsvc.control.protocol")
        self.assertEqual(module_name(ROOT / "recsvc/media/__init__.py"), "recsvc.media")


class LayeringTests(SynchronousTestCase):
    """recsvc's imports keep to the rules, but for the known exceptions."""

    def test_rules_kept(self) -> None:
        """No import breaks a rule, but those in KNOWN_EXCEPTIONS; the
        message names the module, the line and the import."""
        broken = [str(v) for v in violations()
                  if (v.module, v.forbidden) not in KNOWN_EXCEPTIONS]
        if broken:
            self.fail("import rules broken:\n" + "\n".join(broken))

    def test_known_exceptions_still_needed(self) -> None:
        """Every KNOWN_EXCEPTIONS entry still excuses an import: one no
        longer needed must be deleted, so the list cannot rot."""
        used = {(v.module, v.forbidden) for v in violations()}
        unused = sorted(KNOWN_EXCEPTIONS - used)
        if unused:
            self.fail("KNOWN_EXCEPTIONS entries no longer needed (delete them):\n"
                      + "\n".join(f"{module} -> {forbidden}" for module, forbidden in unused))

    def test_pure_modules_exist(self) -> None:
        """Every module pinned as pure exists (a moved one must be pinned
        again under its new name, not dropped silently)."""
        names = {name for _, name, _ in modules()}
        self.assertEqual(sorted(set(PURE_MODULES) - names), [])

    def test_rules_see_the_server(self) -> None:
        """The walk reads the whole package (a wrong root would pass every
        rule by reading nothing)."""
        names = {name for _, name, _ in modules()}
        for expected in ("recsvc.tap", "recsvc.control.protocol", "recsvc.phonesim.phone"):
            self.assertIn(expected, names)

    def test_every_folder_is_a_package(self) -> None:
        """Every folder of code under recsvc/ has an __init__.py: setup.cfg
        finds the packages as namespaces, so one that lost it would still
        ship, without its __all__ (the page's static/ is data)."""
        data = {PACKAGE / "web" / "static"}
        folders = [path for path in PACKAGE.rglob("*") if path.is_dir()
                   and path.name != "__pycache__" and path not in data]
        self.assertGreater(len(folders), 5)
        without = [str(path.relative_to(ROOT)) for path in folders
                   if not (path / "__init__.py").exists()]
        self.assertEqual(without, [])
