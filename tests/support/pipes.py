"""A command whose reader goes away: how it ends (the closed-pipe tests of
`recsvc` and `recsvc-phone`)."""

from __future__ import annotations

import subprocess


def status_when_reader_leaves(command: list[str], first_line: bytes | None = None,
                              ) -> tuple[int, bytes]:
    """Run ``command`` and close its output: at once, or with
    ``first_line`` once its first line (which must begin so) is read.
    Returns its exit status and what it wrote to standard error."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = process.stdout.readline() if first_line is not None else None
    process.stdout.close()
    try:
        error = process.stderr.read()
        status = process.wait(timeout=60)
    finally:
        process.stderr.close()
    if line is not None and first_line is not None and not line.startswith(first_line):
        raise AssertionError(f"the first line {line!r} does not begin with {first_line!r}")
    return status, error
