"""The dashboard's run page from records written through a real SQLite store: SEAL self-edits with
their rewards, align trajectories with theirs, a judge's stop, and curves from metrics files."""

from __future__ import annotations

import json
from pathlib import Path

from posttrain.pipelines.ui import load_run, read_curves
from posttrain.report.run_page import run_page
from posttrain.store import Store


def test_seal_and_align_records_and_curves_are_shown(tmp_path: Path):
    folder = tmp_path / "runs" / "mixed"
    folder.mkdir(parents=True)
    dpo = [
        {"step": s, "loss": 0.69 - 0.05 * s, "rewards/margins": 0.1 * s, "rewards/accuracies": 0.5}
        for s in (1, 2)
    ]
    (folder / "metrics_dpo.jsonl").write_text("\n".join(map(json.dumps, dpo)) + "\n{cut mid-wri")
    (folder / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 9.0, "stage": "dpo"}) + "\n")
    with Store(f"sqlite:///{tmp_path / 'runs' / 'posttrain.db'}") as store:
        run_id = store.create_run("mixed", "seal", {"seal": {"iterations": 2}}, str(folder))
        store.add_episode(run_id, 0, "seal", {}, {"reward_mean": 0.25}, {"kept": 1})
        store.add_self_edit(run_id, 0, "ctx-a", 0, "Rewrite <b>bold</b> facts", 0.75, 0.25, 1.0, kept=True)
        store.add_self_edit(run_id, 0, "ctx-a", 1, "useless edit", -0.5, 0.25, -0.25)
        store.add_trajectory(run_id, "meetings", "scn-7", [{"action": "lookup"}], 0.9, {"answer": 0.8})
        data = load_run(store, "mixed", tmp_path / "runs")
    assert set(data.curves) == {"dpo"} and len(data.curves["dpo"]) == 2  # the joined copy is not repeated
    page = run_page(data)
    assert "SEAL self-edits" in page and "Iteration 0: 2 self-edits" in page and "1 kept" in page
    assert "mean reward 0.125" in page
    assert "Rewrite &lt;b&gt;bold&lt;/b&gt; facts" in page and "<b>bold</b>" not in page
    assert "Trajectories" in page and "scn-7" in page and "mean reward 0.9 over 1" in page
    assert "dpo: DPO reward margin (chosen - rejected)" in page and "dpo: DPO reward accuracy" in page
    assert "Decision timeline" not in page  # no agents in a SEAL run


def test_a_tune_run_shows_the_judges_stop_and_recomputes_an_old_rationale(tmp_path: Path):
    with Store(f"sqlite:///{tmp_path / 'h.db'}") as store:
        run_id = store.create_run("old-tune", "tune", {}, None)
        hp = {"lr": 2e-4, "batch_size": 4}
        decisions = {"tuner": {"say": "defaults", "hparams": hp}, "proposed_by": "agents"}
        store.add_episode(run_id, 0, "train", hp, {"eval_loss": 1.5}, decisions)
        stop = {
            "parsed": {
                "say": "Stop: budget spent.",
                "continue": False,
                "reason": "budget of 1 episodes spent",
            }
        }
        store.add_agent_message(run_id, 1, "judge", "rules", {}, stop)
        page = run_page(load_run(store, str(run_id), tmp_path))
    assert "Judge stopped before episode 1" in page and "budget of 1 episodes spent" in page
    assert "first episode: trained the tuner&#x27;s proposal" in page and "recomputed" in page


def test_read_curves_splits_a_joined_file_by_stage(tmp_path: Path):
    rows = [{"step": 1, "loss": 2.0, "stage": "sft"}, {"step": 1, "reward": 0.3, "stage": "rl"}, {"step": 2}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(map(json.dumps, rows)))
    curves = read_curves(tmp_path)
    assert list(curves) == ["sft", "rl", ""] and curves["rl"][0]["reward"] == 0.3
