"""Markdown tables: cells formatted like the console's, pipes escaped."""

from __future__ import annotations

from posttrain.report import markdown_table


def test_markdown_table_formats_and_escapes_cells() -> None:
    table = markdown_table(
        ["name", "loss", "ok", "note"], [["a|b", 1.234567, True, None], ["c", 2, False, "x"]]
    )
    assert table.splitlines() == [
        "| name | loss | ok | note |",
        "|---|---|---|---|",
        "| a\\|b | 1.235 | true | - |",
        "| c | 2 | false | x |",
    ]
