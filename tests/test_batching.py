"""Tests for recsvc.application.batching.BatchedRunner: the calls of one reactor turn
run in a few thread jobs, each call still getting its own result."""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from recsvc.application.batching import BatchedRunner


class ThreadedClock(Clock):
    """A task.Clock that also takes calls "from a thread" (as
    deferToThreadPool makes them), running them at once."""

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


@attrs.define
class HeldPool:
    """A thread pool whose jobs wait in `held` until a test runs them."""

    held: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = (
        attrs.field(factory=list)
    )
    submitted: int = 0

    def callInThreadWithCallback(
        self, onResult: Callable[[bool, Any], None], f: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        self.submitted += 1
        self.held.append((onResult, f, args, kwargs))

    def run(self, index: int = 0) -> None:
        """Run one held job, as a worker thread would."""
        onResult, f, args, kwargs = self.held.pop(index)
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)

    def run_all(self) -> None:
        while self.held:
            self.run()


class BatchedRunnerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = ThreadedClock()
        self.pool = HeldPool()
        self.pools_asked = 0
        self.ran: list[int] = []

    def runner(self, jobs: int = 4) -> BatchedRunner:
        def pool() -> HeldPool:
            self.pools_asked += 1
            return self.pool

        return BatchedRunner(self.clock, pool, jobs=jobs)

    def record(self, number: int) -> int:
        """A blocking call: notes that it ran, returns its number times ten."""
        self.ran.append(number)
        return number * 10

    def test_result_delivered(self) -> None:
        """A call's Deferred fires with what the function returned, with its
        arguments passed through."""
        runner = self.runner()
        waiter = runner(lambda a, b: (a, b), 1, "two")
        self.clock.advance(0)
        self.pool.run_all()
        self.assertEqual(self.successResultOf(waiter), (1, "two"))

    def test_waits_for_the_turn_to_end(self) -> None:
        """Nothing goes to the pool (which is not even asked for) before the
        reactor turn in which the calls were made is over."""
        runner = self.runner()
        waiters = [runner(self.record, n) for n in range(3)]
        self.assertEqual((self.pools_asked, self.pool.submitted), (0, 0))
        for waiter in waiters:
            self.assertNoResult(waiter)
        self.clock.advance(0)
        self.assertEqual(self.pools_asked, 1)
        self.assertEqual(self.ran, [])  # in the pool, not yet run
        for waiter in waiters:
            self.assertNoResult(waiter)

    def test_one_call_one_job(self) -> None:
        """A lone call becomes one thread job."""
        runner = self.runner()
        waiter = runner(self.record, 7)
        self.clock.advance(0)
        self.assertEqual(self.pool.submitted, 1)
        self.pool.run_all()
        self.assertEqual(self.successResultOf(waiter), 70)

    def test_ten_calls_four_jobs(self) -> None:
        """Ten calls in one turn with jobs=4 become four thread jobs, each
        running its calls in the order they were made; every call gets its
        own result."""
        runner = self.runner(jobs=4)
        waiters = [runner(self.record, n) for n in range(10)]
        self.clock.advance(0)
        self.assertEqual(self.pool.submitted, 4)
        per_job = []
        while self.pool.held:
            before = len(self.ran)
            self.pool.run()
            per_job.append(self.ran[before:])
        for calls in per_job:
            self.assertEqual(calls, sorted(calls))
        self.assertEqual(sorted(self.ran), list(range(10)))
        self.assertEqual([self.successResultOf(w) for w in waiters], [n * 10 for n in range(10)])

    def test_at_most_jobs(self) -> None:
        """However many calls a turn makes, at most ``jobs`` thread jobs
        carry them; fewer calls than jobs take one job each."""
        for calls, jobs, expected in ((3, 4, 3), (4, 4, 4), (5, 4, 3), (100, 4, 4), (9, 1, 1)):
            self.pool = HeldPool()
            runner = self.runner(jobs=jobs)
            for n in range(calls):
                runner(self.record, n)
            self.clock.advance(0)
            self.assertEqual(self.pool.submitted, expected, (calls, jobs))

    def test_job_results_only_for_its_calls(self) -> None:
        """Running one job fires the Deferreds of its own calls and leaves
        the other jobs' calls waiting."""
        runner = self.runner(jobs=2)
        waiters = [runner(self.record, n) for n in range(4)]
        self.clock.advance(0)
        self.pool.run(0)
        fired = [n for n, w in enumerate(waiters) if w.called]
        self.assertEqual(sorted(fired), sorted(self.ran))
        self.assertEqual(len(fired), 2)
        for n, waiter in enumerate(waiters):
            if n not in fired:
                self.assertNoResult(waiter)

    def test_exception_fails_only_its_call(self) -> None:
        """A call that raises fails its own Deferred with that exception;
        the calls before and after it in the same job still run and succeed."""
        runner = self.runner(jobs=1)

        def broken(number: int) -> None:
            self.ran.append(number)
            raise ValueError(f"call {number} broke")

        first = runner(self.record, 1)
        middle = runner(broken, 2)
        last = runner(self.record, 3)
        self.clock.advance(0)
        self.assertEqual(self.pool.submitted, 1)
        self.pool.run_all()
        self.assertEqual(self.ran, [1, 2, 3])
        self.assertEqual(self.successResultOf(first), 10)
        failure = self.failureResultOf(middle, ValueError)
        self.assertEqual(failure.getErrorMessage(), "call 2 broke")
        self.assertEqual(self.successResultOf(last), 30)

    def test_later_turn_new_batch(self) -> None:
        """Calls made in a later turn go in a new batch of their own, even
        while the earlier batch's jobs are still running."""
        runner = self.runner(jobs=4)
        early = runner(self.record, 1)
        self.clock.advance(0)
        self.assertEqual(self.pool.submitted, 1)
        late = [runner(self.record, n) for n in (2, 3)]
        self.assertEqual(self.pool.submitted, 1)
        self.clock.advance(0)
        self.assertEqual((self.pools_asked, self.pool.submitted), (2, 3))
        self.pool.run_all()
        self.assertEqual(self.successResultOf(early), 10)
        self.assertEqual([self.successResultOf(w) for w in late], [20, 30])

    def test_call_from_a_result(self) -> None:
        """A call made by a callback on an earlier call's result goes in the
        next batch and gets its result too."""
        runner = self.runner()
        second: list[Any] = []
        first = runner(self.record, 1)

        def again(result: int) -> int:
            second.append(runner(self.record, result + 1))
            return result

        first.addCallback(again)
        self.clock.advance(0)
        self.pool.run_all()
        self.assertEqual(self.successResultOf(first), 10)
        [waiter] = second
        self.assertNoResult(waiter)
        self.clock.advance(0)
        self.pool.run_all()
        self.assertEqual(self.successResultOf(waiter), 110)
        self.assertEqual(self.ran, [1, 11])

    def test_nothing_queued_no_job(self) -> None:
        """A turn without calls asks nothing of the pool."""
        self.runner()
        self.clock.advance(1)
        self.assertEqual((self.pools_asked, self.pool.submitted), (0, 0))
