"""Console tables and markdown reports for runs: every table and plot posttrain writes.

`runs_table` and `run_detail` (console) back `posttrain runs list` and `posttrain runs show ID`;
`write_training_report` (training) and `write_align_report` (align) leave `report.md` and
`plots/` in a run directory. Numbers print with 4 significant digits; a missing value prints as "-".
"""

from posttrain.report.align import eval_tables, format_figure, plot_bars, write_align_report
from posttrain.report.console import run_detail, runs_table
from posttrain.report.markdown import format_value, markdown_table
from posttrain.report.plots import new_figure, plot_lines
from posttrain.report.training import write_training_report

__all__ = [
    "eval_tables",
    "format_figure",
    "format_value",
    "markdown_table",
    "new_figure",
    "plot_bars",
    "plot_lines",
    "run_detail",
    "runs_table",
    "write_align_report",
    "write_training_report",
]
