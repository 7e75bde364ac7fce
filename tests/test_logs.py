"""Tests for recsvc.logs: the JSON lines that `twistd --logger
recsvc.logs.json_lines` writes for log shippers."""

from __future__ import annotations

import ast
import io
import json
import os

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import (
    LogLevel,
    LogPublisher,
    Logger,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python import log as legacy_log
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

import recsvc
import recsvc.logs
from recsvc.logs import Logger as RecsvcLogger
from recsvc.logs import escaped, escaped_fields, event_as_json_line, json_lines, plain
from recsvc.control.protocol import ControlFactory
from recsvc.testing import ManualRunner, MemoryWriters, memory_recorder

# 2026-12-06T11:00:00.25Z
AT = 1796554800.25


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for this")


class JsonLinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.out = io.StringIO()
        self.publisher = LogPublisher(json_lines(self.out))
        self.log = Logger(namespace="recsvc.test", observer=self.publisher)

    def lines(self) -> list[dict]:
        text = self.out.getvalue()
        self.assertTrue(text.endswith("\n"), text)
        return [json.loads(line) for line in text.splitlines()]

    def test_fields_of_a_line(self) -> None:
        """A line has the time in ISO 8601 UTC with Z, the level as a plain
        string, the namespace, the rendered message and the event's own keys;
        none of Twisted's log_* bookkeeping."""
        self.log.warn("Recording {recordingId} refused: {reason}", recordingId="8",
                      reason="device not allowed", device="00a859000002")
        [line] = self.lines()
        self.assertRegex(line.pop("time"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        json_lines(self.out)({"log_format": "at {when}", "when": "noon", "log_time": AT})
        self.assertEqual(self.lines()[1]["time"], "2026-12-06T11:00:00.250Z")
        self.assertEqual(line, {
            "level": "warn", "namespace": "recsvc.test",
            "message": "Recording 8 refused: device not allowed",
            "recordingId": "8", "reason": "device not allowed", "device": "00a859000002",
        })

    def test_every_level_by_name(self) -> None:
        """Each level is its name, as log shippers filter on it."""
        for level in LogLevel.iterconstants():
            self.log.emit(level, "x")
        self.assertEqual([line["level"] for line in self.lines()],
                         ["debug", "info", "warn", "error", "critical"])

    def test_values_json_cannot_hold_become_text(self) -> None:
        """Bytes, objects, infinities and nested containers become plain
        JSON values (an object's text escaped as any text is); no
        __class_uuid__ or unpersistable markers."""
        self.log.info("odd values", raw=b"cmd=\x00\n", peer=("10.0.0.5", 41000),
                      ratio=float("nan"), nested={"a": [1, {2, 2}], 3: None},
                      thing=LogLevel.info, error=ValueError("bad\x1b[2J"))
        [line] = self.lines()
        self.assertEqual(line["raw"], "b'cmd=\\x00\\n'")
        self.assertEqual(line["peer"], ["10.0.0.5", 41000])
        self.assertEqual(line["ratio"], "nan")
        self.assertEqual(line["nested"], {"a": [1, [2]], "3": None})
        self.assertEqual(line["thing"], str(LogLevel.info))
        self.assertEqual(line["error"], "bad\\x1b[2J")
        text = self.out.getvalue()
        self.assertNotIn("unpersistable", text)
        self.assertNotIn("__class_uuid__", text)

    def test_client_text_stays_on_its_line(self) -> None:
        """Newlines, carriage returns and escape sequences in a value (a
        phone's field, a path) are escaped, in the line and in the text it
        holds (even from a logger that is not recsvc's): one event is one
        line, and a shipper showing the value shows no terminal escape."""
        self.log.info("Start from {device}", device="evil\r\n{\"level\": \"critical\"}\x1b[2J\u2028")
        self.assertEqual(self.out.getvalue().count("\n"), 1)
        [line] = self.lines()
        self.assertEqual(line["device"], 'evil\\r\\n{"level": "critical"}\\x1b[2J\\u2028')
        self.assertEqual(line["message"], "Start from " + line["device"])
        self.assertEqual(line["level"], "info")
        self.assertTrue(self.out.getvalue().isascii())

    def test_failure_has_its_traceback(self) -> None:
        """log.failure gives the message and the traceback as a field."""
        try:
            1 / 0
        except ZeroDivisionError:
            self.log.failure("HTTP {uri} failed", uri="/api/x")
        [line] = self.lines()
        self.assertEqual((line["level"], line["message"], line["uri"]),
                         ("critical", "HTTP /api/x failed", "/api/x"))
        self.assertIn("ZeroDivisionError", line["traceback"])
        self.assertIn("Traceback", line["traceback"])

    def test_traceback_keeps_its_lines_and_escapes_the_rest(self) -> None:
        """A traceback's lines stay lines, but a control character in them
        (an exception's message quoting a client's text) is escaped."""
        try:
            raise ValueError("bad id 7\r\x1b[2J")
        except ValueError:
            self.log.failure("Start failed")
        [line] = self.lines()
        self.assertGreater(line["traceback"].count("\n"), 2)
        self.assertIn("ValueError: bad id 7\\r\\x1b[2J\n", line["traceback"])

    def test_event_keys_named_like_a_field(self) -> None:
        """An event key named like a line's field (the control protocol's
        "message") is kept beside it, as event_<key>."""
        self.log.warn("Bad control message: {message!r}", message=b"junk", time="noon")
        [line] = self.lines()
        self.assertEqual(line["message"], "Bad control message: b'junk'")
        self.assertEqual((line["event_message"], line["event_time"]), ("b'junk'", "noon"))
        self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

    def test_legacy_events(self) -> None:
        """twisted.python.log's events (twistd's own, parts of Twisted's)
        read as the others: the message rendered, an error's traceback apart,
        none of the legacy bookkeeping (message tuples, isError, system)."""
        observer = json_lines(self.out)
        legacy_log.addObserver(observer)
        self.addCleanup(legacy_log.removeObserver, observer)
        legacy_log.msg("Site starting on %d" % 8080)
        legacy_log.msg(format="%(count)d connections", count=3)
        legacy_log.err(Failure(ValueError("broken")), "Unhandled error in Deferred:")
        self.flushLoggedErrors(ValueError)
        started, counted, failed = self.lines()
        self.assertEqual((started["message"], started["level"], started["namespace"]),
                         ("Site starting on 8080", "info", "log_legacy"))
        self.assertEqual((counted["message"], counted["count"]), ("3 connections", 3))
        self.assertEqual((failed["message"], failed["level"]),
                         ("Unhandled error in Deferred:", "critical"))
        self.assertIn("ValueError: broken", failed["traceback"])
        for line in (started, counted, failed):
            for key in ("isError", "system", "why", "format", "failure"):
                self.assertNotIn(key, line)

    def test_an_unrenderable_event_still_makes_a_line(self) -> None:
        """A value whose text cannot be had gives a line saying so, not an
        exception in the logging system."""
        line = json.loads(event_as_json_line({"log_format": "x", "log_time": AT,
                                              "thing": _Unprintable()}))
        self.assertEqual((line["level"], line["time"]), ("error", "2026-12-06T11:00:00.250Z"))
        self.assertIn("no text for this", line["message"])

    def test_odd_times_and_numbers_still_make_a_line(self) -> None:
        """A time beyond the platform's clock gives a line without one (null),
        and an integer too long for text (Python's 4300-digit limit) a line
        saying the event could not be written: the observer never raises
        (the publisher would drop the event, and with this observer alone
        nobody would hear why)."""
        line = json.loads(event_as_json_line({"log_format": "far", "log_time": 1e300}))
        self.assertEqual((line["time"], line["message"]), (None, "far"))
        line = json.loads(event_as_json_line({"log_format": "x", "log_time": AT,
                                              "count": 10 ** 5000}))
        self.assertEqual((line["level"], line["time"]), ("error", "2026-12-06T11:00:00.250Z"))
        self.assertIn("could not be written as JSON", line["message"])

    def test_plain_cuts_deep_nesting(self) -> None:
        """A value nested without end (a list in itself) is cut to text."""
        loop: list = []
        loop.append(loop)
        self.assertIsInstance(json.dumps(plain(loop)), str)


# What a hostile phone puts in its id: a line break and a forged line after
# it, a terminal escape that clears the screen, a NUL; and a printable
# non-ASCII letter, which must stay as it is.
HOSTILE_ID = "Jos\u00e9\r\n2026-12-06T11:00:00+0000 [forged#critical] x\x1b[2J\x00"
HOSTILE_ID_SHOWN = "Jos\u00e9\\r\\n2026-12-06T11:00:00+0000 [forged#critical] x\\x1b[2J\\x00"
RAW_CONTROLS = ("\r", "\x1b", "\x00")


class ClientTextInLogsTests(SynchronousTestCase):
    """What a phone sends reaches the text log (as twistd writes it) and
    the JSON lines escaped, through the real control protocol and service."""

    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.service = memory_recorder(self.mktemp(), writers=MemoryWriters(),
                                       run_blocking=self.runner)
        self.service.startService()
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def phone_sends(self, message: bytes) -> bytes:
        protocol = ControlFactory(self.service, max_message_bytes=512).buildProtocol(None)
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.9", 10000),
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40404),
        )
        protocol.makeConnection(transport)
        protocol.dataReceived(message)
        self.runner.run_pending()
        return transport.value()

    def written(self, events: list[dict]) -> tuple[str, list[dict]]:
        """``events`` as twistd's text log and as recsvc's JSON lines."""
        text, lines = io.StringIO(), io.StringIO()
        for event in events:
            textFileLogObserver(text)(event)
            json_lines(lines)(event)
        return text.getvalue(), [json.loads(line) for line in lines.getvalue().splitlines()]

    def test_hostile_id_escaped_in_text_and_json(self) -> None:
        """A Start whose id holds CR, LF, ESC [2J and NUL makes log lines
        (started, records to) where they are escaped as \\r, \\n, \\x1b and
        \\x00: one event is one line of the text log, no terminal escape or
        NUL reaches it, and the JSON's values and message say the same;
        the é of the id stays."""
        answer = self.phone_sends(
            b"cmd=RecordStartRequest&id=Jos%C3%A9%0D%0A2026-12-06T11:00:00+0000 "
            b"[forged%23critical] x%1B[2J%00&device=00:a8:59:00:00:01&remote_number=1"
            b"&local_number=2&dir=in&codec=pcma")
        self.assertIn(b"result=success", answer)
        about = [event for event in self.events if event.get("recordingId") is not None]
        self.assertGreaterEqual(len(about), 2)
        text, lines = self.written(about)
        self.assertEqual(text.count("\n"), len(about), text)
        for raw in RAW_CONTROLS:
            self.assertNotIn(raw, text)
        self.assertIn(f"Recording {HOSTILE_ID_SHOWN} started from", text)
        for line in lines:
            self.assertEqual(line["recordingId"], HOSTILE_ID_SHOWN)
            self.assertIn(HOSTILE_ID_SHOWN, line["message"])
            for raw in RAW_CONTROLS + ("\n",):
                self.assertNotIn(raw, line["message"])

    def test_hostile_stop_reason_escaped(self) -> None:
        """A Stop's reason (a phone's text, logged as the recording stops)
        is escaped the same way."""
        self.phone_sends(b"cmd=RecordStartRequest&id=8&device=00:a8:59:00:00:01"
                         b"&remote_number=1&local_number=2&dir=in&codec=pcma")
        self.events.clear()
        self.phone_sends(b"cmd=RecordStopRequest&id=8&reason=hung up%0D%1B[31mred%00")
        stopping = [event for event in self.events if event.get("reason") is not None]
        self.assertTrue(stopping)
        text, lines = self.written(stopping)
        self.assertIn("hung up\\r\\x1b[31mred\\x00", text)
        for raw in RAW_CONTROLS:
            self.assertNotIn(raw, text)
        self.assertIn("hung up\\r\\x1b[31mred\\x00", [line["reason"] for line in lines])


class EscapedTests(SynchronousTestCase):
    def test_control_characters_written_as_escapes(self) -> None:
        """C0 controls, DEL, C1 controls, the line and paragraph separators
        and invisible format characters (a right-to-left override) are
        written as Python literals write them."""
        self.assertEqual(escaped("a\r\nb\tc\x1b[2J\x00\x7f\x85\u2028\u202e"),
                         "a\\r\\nb\\tc\\x1b[2J\\x00\\x7f\\x85\\u2028\\u202e")

    def test_printable_text_is_kept_as_it_is(self) -> None:
        """Printable text, non-ASCII letters and backslashes included, is
        returned itself: nothing is copied on the common path."""
        text = "Jos\u00e9 \u5f20\u4e09 +4930 12345 C:\\calls \"quoted\""
        self.assertIs(escaped(text), text)

    def test_escaping_twice_changes_nothing(self) -> None:
        """What is escaped is printable: an observer escaping an event that
        recsvc's Logger escaped already leaves it as it is."""
        once = escaped(HOSTILE_ID)
        self.assertEqual(once, HOSTILE_ID_SHOWN)
        self.assertIs(escaped(once), once)

    def test_fields_escaped_but_not_twisted_bookkeeping(self) -> None:
        """An event's text values are escaped; its log_* keys (the format,
        a legacy message's text with its traceback) and values that are not
        text are left alone, and an event that needs nothing is not copied."""
        fields = {"recordingId": "7\n", "count": 3, "raw": b"\n",
                  "log_format": "a\n{recordingId}", "log_text": "why\nTraceback"}
        self.assertEqual(escaped_fields(fields), dict(fields, recordingId="7\\n"))
        clean = {"recordingId": "7", "log_text": "a\nb"}
        self.assertIs(escaped_fields(clean), clean)


class _Named:
    log = RecsvcLogger()


class RecsvcLoggerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict] = []
        self.log = RecsvcLogger(namespace="recsvc.test", observer=self.events.append)

    def test_events_carry_escaped_text(self) -> None:
        """Every observer gets the event with its text values escaped (and
        the others as they were), so no observer can write them raw."""
        self.log.warn("Recording {recordingId} refused: {reason}", recordingId=HOSTILE_ID,
                      reason="device not allowed", count=2, raw=b"\x1b")
        [event] = self.events
        self.assertEqual((event["recordingId"], event["reason"], event["count"], event["raw"]),
                         (HOSTILE_ID_SHOWN, "device not allowed", 2, b"\x1b"))
        self.assertEqual(formatEvent(event),
                         f"Recording {HOSTILE_ID_SHOWN} refused: device not allowed")

    def test_failure_traceback_stays_readable(self) -> None:
        """log.failure keeps its traceback as lines of text in the text log
        (it is recsvc's own output, not a client's), while the client text
        in its message is escaped."""
        out = io.StringIO()
        log = RecsvcLogger(namespace="recsvc.test", observer=textFileLogObserver(out))
        try:
            1 / 0
        except ZeroDivisionError:
            log.failure("Recording {recordingId} could not begin", recordingId="7\r\x1b[2J")
        self.flushLoggedErrors(ZeroDivisionError)
        text = out.getvalue()
        first, *traceback = text.splitlines()
        self.assertTrue(first.endswith("Recording 7\\r\\x1b[2J could not begin"), first)
        self.assertIn("Traceback (most recent call last):", traceback[0])
        self.assertIn("builtins.ZeroDivisionError: division by zero",
                      [line.strip() for line in traceback])
        self.assertNotIn("\x1b", text)

    def test_namespaces_as_twisted_gives_them(self) -> None:
        """A Logger at module level is named after its module, one on a
        class after the class, as twisted.logger.Logger's are: log routing
        by namespace (recsvc.access) is unchanged."""
        self.assertEqual(RecsvcLogger().namespace, __name__)
        self.assertEqual(_Named.log.namespace, f"{__name__}._Named")
        self.assertIsInstance(_Named().log, RecsvcLogger)

    def test_every_module_logs_through_it(self) -> None:
        """No recsvc module makes a twisted.logger.Logger (or uses the
        legacy twisted.python.log) directly: a module that did would write
        a client's text raw."""
        package = os.path.dirname(recsvc.__file__)
        offenders = []
        for folder, _, names in os.walk(package):
            for name in names:
                path = os.path.join(folder, name)
                if not name.endswith(".py") or path == recsvc.logs.__file__:
                    continue
                with open(path, encoding="utf-8") as source:
                    tree = ast.parse(source.read(), path)
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and (
                            node.module == "twisted.python.log" or any(
                                (node.module, alias.name) in (("twisted.logger", "Logger"),
                                                              ("twisted.python", "log"))
                                for alias in node.names)):
                        offenders.append(f"{path}:{node.lineno}")
                    elif isinstance(node, ast.Import) and any(
                            alias.name in ("twisted.logger", "twisted.python.log")
                            for alias in node.names):
                        offenders.append(f"{path}:{node.lineno}")
        self.assertEqual(offenders, [])
