"""Tests for recsvc.storage.naming: safe path components and the recording layout."""

from __future__ import annotations

import calendar
import os
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from recsvc.storage.naming import (
    MAX_COMPONENT,
    TEMPLATE_FIELDS,
    PathTemplate,
    TemplateError,
    device_folder,
    safe_component,
)

_HOSTILE = st.one_of(
    st.text(max_size=200),
    st.text(alphabet="./\\_-\0 \n", max_size=20),
    st.lists(st.sampled_from(["..", ".", "/", "x", "_", "\\", "é", "\u202e"]), max_size=30).map("".join),
)



def default_path(started_at, device, direction, remote_number, recording_id):
    """The path parts of a recording under the default storage.path."""
    return PathTemplate().build(started_at, {
        "device": device, "direction": direction, "remote_number": remote_number,
        "id": recording_id,
    })

class SafeComponentTests(SynchronousTestCase):
    def assert_safe(self, component: str, max_length: int = MAX_COMPONENT) -> None:
        self.assertNotIn(component, ("", ".", ".."))
        self.assertNotIn("/", component)
        self.assertNotIn("\\", component)
        self.assertNotIn("\0", component)
        self.assertFalse(component.startswith("."), component)
        self.assertLessEqual(len(component), max_length)
        self.assertRegex(component, r"\A[A-Za-z0-9+_.-]+\Z")

    @settings(max_examples=300, deadline=None)
    @given(_HOSTILE)
    def test_always_safe(self, value: str) -> None:
        """
        Whatever the text, the component is non-empty, not ``.``/``..``,
        not hidden, has no path separator, uses only ``[A-Za-z0-9+_.-]``, and
        is at most MAX_COMPONENT characters.
        """
        self.assert_safe(safe_component(value))

    @settings(max_examples=100, deadline=None)
    @given(_HOSTILE, st.integers(8, 100))
    def test_bounded_by_max_length(self, value: str, max_length: int) -> None:
        """
        A smaller or larger max_length bounds the component just the same.
        """
        self.assert_safe(safe_component(value, max_length=max_length), max_length)

    @settings(max_examples=100, deadline=None)
    @given(st.text(alphabet="abcXYZ019+_-", min_size=1, max_size=MAX_COMPONENT).filter(
        lambda value: value.strip("_") == value))
    def test_safe_text_kept(self, value: str) -> None:
        """
        Text that is already safe comes back unchanged.
        """
        self.assertEqual(safe_component(value), value)

    def test_examples(self) -> None:
        """
        Unsafe runs become one underscore; dots and underscores at the ends
        go; nothing usable gives the fallback.
        """
        self.assertEqual(safe_component("+49 30 123/456"), "+49_30_123_456")
        self.assertEqual(safe_component("../../etc/passwd"), "etc_passwd")
        self.assertEqual(safe_component(".hidden"), "hidden")
        self.assertEqual(safe_component(".."), "unknown")
        self.assertEqual(safe_component(""), "unknown")
        self.assertEqual(safe_component("///", fallback="none"), "none")
        self.assertEqual(safe_component("x" * 100), "x" * MAX_COMPONENT)


class DeviceFolderTests(SynchronousTestCase):
    def test_mac_spellings(self) -> None:
        """
        A MAC address with colons, dashes, dots or nothing between its bytes,
        in either case, files into the same 12 lower-case hex digits.
        """
        for spelling in (
            "00:A8:59:12:34:56",
            "00-a8-59-12-34-56",
            "00a859123456",
            "00A859123456",
            "00a8.5912.3456",
            " 00:a8:59:12:34:56\n",
        ):
            with self.subTest(spelling=spelling):
                self.assertEqual(device_folder(spelling), "00a859123456")

    def test_not_a_mac(self) -> None:
        """
        Anything that is not a MAC address is made safe, not treated as one.
        """
        self.assertEqual(device_folder("00:A8:59:12:34"), "00_A8_59_12_34")
        self.assertEqual(device_folder("../../x"), "x")
        self.assertEqual(device_folder(""), "unknown")
        self.assertEqual(device_folder("00:a8:59:12:34:56:78"), "00_a8_59_12_34_56_78")

    @settings(max_examples=200, deadline=None)
    @given(_HOSTILE)
    def test_always_safe(self, value: str) -> None:
        """
        device_folder is as safe as safe_component for any text.
        """
        folder = device_folder(value)
        self.assertRegex(folder, r"\A[A-Za-z0-9+_-][A-Za-z0-9+_.-]*\Z")
        self.assertNotIn(folder, (".", ".."))
        self.assertLessEqual(len(folder), MAX_COMPONENT)


class RecordingStemTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """
        device/YYYY/MM/DD/YYYYmmddTHHMMSSZ_direction_remote_id, in UTC.
        """
        started = calendar.timegm((2024, 3, 9, 7, 5, 3))
        self.assertEqual(
            default_path(started + 0.75, "00:A8:59:12:34:56", "in", "+4930123", "abc-1"),
            ("00a859123456", "2024", "03", "09", "20240309T070503Z_in_+4930123_abc-1"),
        )

    def test_utc_whatever_the_local_zone(self) -> None:
        """
        The date folders and time stamp are UTC even when the local zone
        puts the moment on another day.
        """
        previous = os.environ.get("TZ")

        def restore() -> None:
            if previous is None:
                os.environ.pop("TZ", None)
            else:
                os.environ["TZ"] = previous
            time.tzset()

        self.addCleanup(restore)
        os.environ["TZ"] = "XXX-14"  # UTC+14
        time.tzset()
        started = calendar.timegm((2023, 12, 31, 22, 0, 0))
        self.assertEqual(
            default_path(started, "dev", "out", "100", "r1"),
            ("dev", "2023", "12", "31", "20231231T220000Z_out_100_r1"),
        )

    def test_hostile_fields(self) -> None:
        """
        Hostile direction, number and id cannot add path parts; an empty
        number reads "none".
        """
        stem = default_path(0, "/etc/passwd", "../..", "", "../../x")
        self.assertEqual(stem, ("etc_passwd", "1970", "01", "01", "19700101T000000Z_unknown_none_x"))
        for part in stem:
            self.assertNotIn("/", part)


class PathTemplateTests(SynchronousTestCase):
    def test_default_layout(self) -> None:
        """
        The default template is device/YYYY/MM/DD/stamp_dir_remote_id in UTC.
        """
        parts = PathTemplate().build(1715938215.0, {
            "device": "00-A8-59-12-34-56", "direction": "in", "remote_number": "+4930123", "id": "7",
        })
        self.assertEqual(parts, ("00a859123456", "2024", "05", "17", "20240517T093015Z_in_+4930123_7"))

    def test_fields_and_timezone(self) -> None:
        """
        Any recording field may be used, and strftime fields follow
        storage.timezone.
        """
        template = PathTemplate("{local_number}/%Y-%m-%d/%H%M_{remote_name}_{codec}", "Europe/Berlin")
        parts = template.build(1715938215.0, {
            "local_number": "2001", "remote_name": "Jane Doe", "codec": "PCMA",
        })
        self.assertEqual(parts, ("2001", "2024-05-17", "1130_Jane_Doe_PCMA"))

    def test_client_percent_is_not_a_format(self) -> None:
        """
        A value a phone sends is never read as a strftime format.
        """
        parts = PathTemplate("{id}").build(0.0, {"id": "%Y%m%d"})
        self.assertEqual(parts, ("Y_m_d",))

    def test_bad_templates(self) -> None:
        """
        Absolute paths, '..' or empty folders, unknown fields and unknown
        time zones are refused with a reason.
        """
        for template, zone, reason in (
            ("/abs/{id}", "UTC", "relative"),
            ("{device}/../{id}", "UTC", "'..'"),
            ("{device}//{id}", "UTC", "empty"),
            ("{device}/{owner}", "UTC", "unknown field"),
            ("{0}", "UTC", "positional"),
            ("{id}", "Mars/Olympus", "time zone"),
        ):
            with self.subTest(template=template):
                error = self.assertRaises(TemplateError, PathTemplate, template, zone)
                self.assertIn(reason, str(error))

    @settings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(TEMPLATE_FIELDS), st.text(max_size=80)))
    def test_never_escapes(self, fields: dict) -> None:
        """
        Whatever the fields, every part is a safe, non-empty name: nothing
        can climb out of the storage root or name a hidden file.
        """
        template = PathTemplate("{device}/{direction}_{id}/%Y/{remote_number}{remote_name}{local_number}{local_name}{codec}")
        for part in template.build(0.0, fields):
            self.assertTrue(part)
            self.assertNotIn("/", part)
            self.assertNotIn("\0", part)
            self.assertNotIn(part, (".", ".."))
            self.assertFalse(part.startswith("."))
