"""Plays summarised for the audit trail (recsvc.access.plays): ranges
merged, a play ended once quiet, its ranges bounded."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from recsvc.access import plays


class PlaysTests(SynchronousTestCase):
    def test_ranges_merged_and_the_play_ended_once_quiet(self) -> None:
        """Overlapping and touching ranges are one; other files and users
        are other plays; a play ends after IDLE seconds without a request,
        or all of them when asked."""
        heard = plays.Plays()
        self.assertEqual(heard.heard("ann", "1.2.3.4", "7", "a.wav", 0, 99, 0.0), [])
        heard.heard("ann", "1.2.3.4", "7", "a.wav", 100, 199, 1.0)
        heard.heard("ann", "1.2.3.4", "7", "a.wav", 500, 599, 2.0)
        heard.heard("bob", "1.2.3.4", "7", "a.wav", 0, 9, 2.0)
        self.assertEqual(len(heard), 2)
        ended = heard.heard("ann", "1.2.3.4", "8", "b.wav", 0, 0, 2.0 + plays.IDLE)
        self.assertEqual([(play.actor, play.recording_id) for play in ended],
                         [("ann", "7"), ("bob", "7")])
        self.assertEqual(ended[0].detail, {"file": "a.wav", "ranges": [[0, 199], [500, 599]],
                                           "bytes": 300, "requests": 3, "seconds": 2.0})
        self.assertEqual([play.recording_id for play in heard.ended()], ["8"])
        self.assertEqual(len(heard), 0)

    def test_ranges_bounded(self) -> None:
        """A player seeking all over keeps at most MAX_RANGES ranges: the
        closest are joined, every byte fetched still inside one."""
        heard = plays.Plays()
        for n in range(plays.MAX_RANGES + 20):
            heard.heard("ann", "-", "7", "a.wav", n * 100, n * 100 + 9 + (n % 3), float(n))
        [ended] = heard.ended()
        ranges = ended.detail["ranges"]
        self.assertEqual(len(ranges), plays.MAX_RANGES)
        for n in range(plays.MAX_RANGES + 20):
            self.assertTrue(any(low <= n * 100 and n * 100 + 9 <= high for low, high in ranges))
