"""`posttrain runs show` through the CLI on a real SQLite store: a run is found by id or by name
(the README writes `runs show NAME`), its config is printed, and an unknown one exits 2."""

from __future__ import annotations

from pathlib import Path

from posttrain.store import Store
from tests.conftest import run_cli


def _store(tmp_path: Path) -> Path:
    (tmp_path / "runs").mkdir()
    with Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}") as st:
        st.create_run("old", "sft", {"train": {"learning_rate": 0.1}}, "runs/old")
        st.create_run("7", "dpo", {"dpo": {"beta": 0.25}}, "runs/7")  # a name that looks like an id
        st.create_run("old", "sft", {"train": {"learning_rate": 0.0042}}, "runs/old")
    return tmp_path


def test_runs_show_takes_a_name_or_an_id_and_prints_the_config(tmp_path):
    cwd = _store(tmp_path)
    by_name = run_cli("runs", "show", "old", env={"COLUMNS": "200"}, cwd=cwd)
    assert by_name.returncode == 0, by_name.stderr
    assert "3  old" in by_name.stdout  # the newest run of that name
    assert "config" in by_name.stdout and "learning_rate: 0.0042" in by_name.stdout
    by_id = run_cli("runs", "show", "1", env={"COLUMNS": "200"}, cwd=cwd)
    assert by_id.returncode == 0 and "learning_rate: 0.1" in by_id.stdout
    digits = run_cli("runs", "show", "7", env={"COLUMNS": "200"}, cwd=cwd)
    assert digits.returncode == 0 and "beta: 0.25" in digits.stdout  # no id 7: the name matches


def test_runs_show_of_an_unknown_run_exits_2_with_one_line(tmp_path):
    out = run_cli("runs", "show", "nope", cwd=_store(tmp_path))
    assert out.returncode == 2
    assert "no run with id or name 'nope'" in out.stderr and "Traceback" not in out.stderr
