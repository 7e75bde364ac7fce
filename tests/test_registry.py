"""Tests for recsvc.service.Registry: the recordings running, by id."""

from __future__ import annotations

import types

from twisted.trial.unittest import SynchronousTestCase

from recsvc.service import Registry
from recsvc.session import Recording


class RegistryTests(SynchronousTestCase):
    def test_add_get_remove(self) -> None:
        """Recordings are found by id and removed only if they are the one
        registered under that id."""
        registry = Registry()
        first, other = _stub("1"), _stub("1")
        registry.add(first)
        self.assertIs(registry.get("1"), first)
        self.assertRaises(KeyError, registry.add, other)
        registry.remove(other)
        self.assertIs(registry.get("1"), first)
        registry.remove(first)
        self.assertIsNone(registry.get("1"))
        self.assertEqual(len(registry), 0)

    def test_count_by_device(self) -> None:
        """Each device's recordings are counted, whatever the MAC's spelling."""
        registry = Registry()
        first, second = _stub("1", "00:A8:59:00:00:01"), _stub("2", "00a859000001")
        registry.add(first)
        registry.add(second)
        registry.add(_stub("3", "00a859000002"))
        self.assertEqual(registry.count_of("00-a8-59-00-00-01"), 2)
        registry.remove(first)
        registry.remove(first)  # twice: counted once
        self.assertEqual(registry.count_of("00a859000001"), 1)
        registry.remove(second)
        self.assertEqual(registry.count_of("00a859000001"), 0)

    def test_iterate_while_removing(self) -> None:
        """Iterating the registry tolerates removal of recordings meanwhile
        (stopping all at shutdown removes them as they finish)."""
        registry = Registry()
        for name in "abc":
            registry.add(_stub(name))
        for recording in registry:
            registry.remove(recording)
        self.assertEqual(len(registry), 0)


class _Stub:
    def __init__(self, recording_id: str, device: str = "00a859000001") -> None:
        self.info = types.SimpleNamespace(recording_id=recording_id, device=device)


def _stub(recording_id: str, device: str = "00a859000001") -> Recording:
    return _Stub(recording_id, device)  # type: ignore[return-value]
