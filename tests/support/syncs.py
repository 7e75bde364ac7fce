"""The syncs the memory WAV writers of recsvc.testing are asked for."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from recsvc.testing import MemoryWavWriter


def spy_syncs(testCase: SynchronousTestCase) -> list[bool]:
    """Patch MemoryWavWriter.sync to note each call's ``durable``."""
    durable: list[bool] = []
    original = MemoryWavWriter.sync

    def sync(writer: MemoryWavWriter, durable_: bool = True) -> None:
        durable.append(durable_)
        original(writer, durable_)

    testCase.patch(MemoryWavWriter, "sync", sync)
    return durable
