"""Found recordings as CSV rows, safe to open in a spreadsheet: every CSV
the project writes (``recsvc export``, the API's ``/api/export``) goes
through `spreadsheet_cell`."""

from __future__ import annotations

import re
from typing import Any, Sequence

# The columns of an export, in order (the CLI adds the file's full path).
EXPORT_COLUMNS = ("id", "started_at", "stopped_at", "duration_s", "direction", "local_number",
                  "local_name", "remote_number", "remote_name", "device", "stop_reason",
                  "stopped_by", "codec", "part", "packets_received", "packets_lost", "path",
                  "node")

# What a spreadsheet takes for the beginning of a formula in a cell.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[+-]?[0-9 ]*")


def spreadsheet_cell(value: Any) -> Any:
    """A CSV cell's value, a text that a spreadsheet would run as a formula
    made plain text by a leading ``'`` (what a phone sends as a name or
    number can be ``=HYPERLINK(...)``). A number as phones write them
    (``+4930123``, ``-``) is left as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) \
            and not PLAIN_NUMBER.fullmatch(value):
        return "'" + value
    return value


def csv_cells(row: dict[str, Any], columns: Sequence[str]) -> list[Any]:
    """A found row's cells in ``columns`` (missing: empty), each made safe."""
    return ["" if row.get(column) is None else spreadsheet_cell(row.get(column))
            for column in columns]
