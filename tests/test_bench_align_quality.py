"""bench/align_quality.py turns an align run's eval records into the README's tool_use figures;
these are the parts that compute something (the gate's AUC, what the rerank changed, whether DPO
is worse beyond SFT's CI), run on records written here, so a slip in them cannot hide behind a
75-minute bench run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import yaml

from posttrain.tasks.tool_use.pool_align import pool_eval_sets
from posttrain.tasks.tool_use.pool_pairs import pool_item
from posttrain.tasks.tool_use.scoring import NO_CALL

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("align_quality", ROOT / "bench" / "align_quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_eval(run_dir: Path, model: str, records: dict) -> None:
    (run_dir / "eval").mkdir(parents=True, exist_ok=True)
    (run_dir / "eval" / f"{model}.json").write_text(json.dumps({"figures": {}, "records": records}))


def _fig(value: float, lo: float, hi: float) -> dict:
    return {"value": value, "ci": [lo, hi], "n": 100}


def test_gate_ranking_is_the_auc_of_call_rows_over_no_call_rows(tmp_path):
    def row(best: float, wants_call: bool) -> dict:
        return {"relevance": [best - 1.0, best], "irrelevance_accuracy": None if wants_call else True}

    # calls 0.9, 0.2, 0.5 against no-calls 0.1, 0.5: 2 + 1 + (1 + 0.5 tie) = 4.5 of 6 pairs
    rows = [row(0.9, True), row(0.2, True), row(0.5, True), row(0.1, False), row(0.5, False)]
    _write_eval(tmp_path, "sft", {"unseen_families": rows, "relevance_calibration": [{"threshold": 0.3}, {}]})
    _write_eval(tmp_path, "base", {"unseen_families": [row(0.9, True)]})  # no no-call rows: no AUC
    bench = _bench()
    assert bench.gate_ranking(tmp_path) == {
        "sft": {"unseen_families": {"auc": 0.75, "call_rows": 3, "no_call_rows": 2}}
    }
    assert bench.gate_calibrations(tmp_path) == {"sft": {"threshold": 0.3}}


def test_rerank_effects_counts_ast_as_generated_and_as_reranked_on_the_same_rows(tmp_path):
    evaluation = {"seed": 1000, "items": 6, "rerank_arguments": True, "rerank_scorer": "base"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"evaluation": evaluation}))
    rows = pool_eval_sets(1000, 6)["unseen_families"]
    records, calls = [], 0
    for i, r in enumerate(rows):
        right = r["completion"]
        rec = {"id": r["id"], "reply": right, "ast_accuracy": True}
        if pool_item(r, i).gold != NO_CALL:
            calls += 1
            rec["ast_accuracy"] = True
            if calls == 1:  # the rerank fixed this one: its reply before was a wrong call
                rec["reply_before_rerank"] = right.replace('"args": {', '"args": {"zzz": 1, ', 1)
        records.append(rec)
    _write_eval(tmp_path, "sft", {"unseen_families": records})
    got = _bench().rerank_effects(tmp_path)
    assert got["scorer"] == "base"
    assert got["unseen_families"]["sft"] == {
        "ast_accuracy_as_generated": round((calls - 1) / calls, 4),
        "ast_accuracy_reranked": 1.0,
        "call_rows": calls,
        "replies_changed": 1,
    }
    _write_eval(tmp_path, "sft", {"unseen_families": records[::-1]})  # not the seed's rows
    try:
        _bench().rerank_effects(tmp_path)
    except SystemExit as exc:
        assert "records are not the rows of seed 1000" in str(exc)
    else:
        raise AssertionError("records out of the seed's order must stop the bench")


def test_dpo_gate_flags_a_figure_worse_beyond_sfts_ci_in_its_own_direction():
    sft = {"ast_accuracy": _fig(0.5, 0.4, 0.6), "hallucinated_function_rate": _fig(0.02, 0.0, 0.05)}
    dpo = {"ast_accuracy": _fig(0.45, 0.35, 0.55), "hallucinated_function_rate": _fig(0.08, 0.03, 0.12)}
    got = _bench().dpo_gate({"eval": {"unseen_families": {"sft": sft, "dpo": dpo}}})
    assert got == {
        "ast_accuracy_change": -0.05,
        "hallucinated_function_rate_change": 0.06,
        "worse_beyond_ci": ["hallucinated_function_rate"],  # more hallucination is worse
    }
    dpo["ast_accuracy"] = _fig(0.39, 0.3, 0.5)
    assert _bench().dpo_gate({"eval": {"unseen_families": {"sft": sft, "dpo": dpo}}})["worse_beyond_ci"] == [
        "ast_accuracy",
        "hallucinated_function_rate",
    ]


def test_resume_goes_on_with_the_named_run_of_one_task(tmp_path, monkeypatch):
    """A bench run killed after hours of training goes on from its partial directory: --resume
    hands `run_align` that run's name and resume=True, and names one task only."""
    import pytest

    import posttrain.pipelines.align as align

    bench = _bench()
    seen = {}

    def run_align(cfg, resume=False):
        seen.update(name=cfg.run.name, root=cfg.run.output_root, resume=resume)
        return {"status": "failed", "error": "stopped here"}

    monkeypatch.setattr(align, "run_align", run_align)
    args = ["--tasks", "tool_use", "--output-dir", str(tmp_path), "--out", str(tmp_path / "aq.json")]
    with pytest.raises(SystemExit, match="stopped here"):
        bench.main(bench.make_parser().parse_args([*args, "--resume", "bench-tool_use-small-1"]))
    assert seen == {"name": "bench-tool_use-small-1", "root": str(tmp_path), "resume": True}
    with pytest.raises(SystemExit, match="name its task with --tasks"):
        bench.main(bench.make_parser().parse_args(["--resume", "bench-tool_use-small-1"]))
    assert not (tmp_path / "aq.json").exists()
