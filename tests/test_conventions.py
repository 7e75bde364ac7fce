"""The test suite's own conventions, read from its source with `ast`: each test
is named in snake_case and has a docstring saying the behaviour it pins
(STYLE.md, habit 11; issue 17).
"""

from __future__ import annotations

import ast
import pathlib
import re
from typing import Iterable, Iterator

import attrs
from twisted.trial.unittest import SynchronousTestCase

TESTS = pathlib.Path(__file__).resolve().parent

SNAKE_CASE = re.compile(r"\Atest(_[a-z0-9]+)+\Z")


@attrs.frozen
class TestMethod:
    """A method trial runs as a test (its name starts with ``test``), where
    it is, and whether it says what it pins."""

    path: str
    line: int
    name: str
    documented: bool

    def __str__(self) -> str:
        return f"tests/{self.path}:{self.line} {self.name}"


def test_methods(source: str, path: str) -> Iterator[TestMethod]:
    """The test methods of the classes in ``source`` (the module at ``path``,
    relative to tests/). An empty docstring says nothing: not documented."""
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.ClassDef):
            for member in node.body:
                if (isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and member.name.startswith("test")):
                    yield TestMethod(path, member.lineno, f"{node.name}.{member.name}",
                                     bool((ast.get_docstring(member) or "").strip()))


def suite() -> list[TestMethod]:
    """Every test method under tests/, tests/support/ included."""
    return [method for module in sorted(TESTS.rglob("*.py"))
            for method in test_methods(module.read_text(encoding="utf-8"),
                                       module.relative_to(TESTS).as_posix())]


def undocumented(methods: Iterable[TestMethod]) -> list[str]:
    """The tests that do not say what they pin."""
    return [str(method) for method in methods if not method.documented]


def not_snake_case(methods: Iterable[TestMethod]) -> list[str]:
    """The tests not named test_words_in_lower_case."""
    return [str(method) for method in methods
            if not SNAKE_CASE.match(method.name.split(".")[-1])]


SAMPLE = '''
class SampleTests:
    def test_documented(self):
        """Says what it pins."""

    def test_silent(self):
        pass

    def test_empty_docstring(self):
        """ """

    def test_camelCase(self):
        """Documented, badly named."""

    def testNoUnderscore(self):
        """Documented, badly named."""

    def makeThing(self):
        pass
'''


class SuiteConventionTests(SynchronousTestCase):
    def test_every_test_has_a_docstring(self) -> None:
        """Every test in the suite, test_tap.py's included, has a docstring."""
        self.assertEqual(undocumented(suite()), [])

    def test_every_test_is_snake_case(self) -> None:
        """Every test is named in snake_case."""
        self.assertEqual(not_snake_case(suite()), [])

    def test_the_whole_suite_is_read(self) -> None:
        """The walk finds the suite's tests (more than a thousand, this
        module's and test_tap.py's among them), so the rules above cannot
        pass by reading nothing."""
        methods = suite()
        self.assertGreater(len(methods), 1000)
        self.assertIn("SuiteConventionTests.test_every_test_has_a_docstring",
                      [method.name for method in methods if method.path == "test_conventions.py"])
        self.assertTrue(any(method.path == "test_tap.py" for method in methods))

    def test_offenders_named_by_place(self) -> None:
        """A test without a docstring, or with an empty one, and a test not in
        snake_case are each named with its module, line, class and method;
        methods that are not tests are not checked."""
        methods = list(test_methods(SAMPLE, "test_sample.py"))
        self.assertEqual(undocumented(methods),
                         ["tests/test_sample.py:6 SampleTests.test_silent",
                          "tests/test_sample.py:9 SampleTests.test_empty_docstring"])
        self.assertEqual(not_snake_case(methods),
                         ["tests/test_sample.py:12 SampleTests.test_camelCase",
                          "tests/test_sample.py:15 SampleTests.testNoUnderscore"])
