"""SEAL domains and rewards: self-edit updates, scores, registry, loaders, the docs' custom domain."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from posttrain.errors import ConfigError
from posttrain.models import ResidentModel
from posttrain.tasks import arc, knowledge
from posttrain.tasks.seal import (
    ArcDomain,
    BaseDomain,
    BinaryReward,
    ContinuousReward,
    KnowledgeDomain,
    Performance,
    SuccessReward,
    build_domain,
    default_oracle_configs,
    make_reward_model,
    split_items,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class FixedPassages:
    """A custom loader, as `data_config.loader` names it."""

    def load_data(self) -> list[knowledge.Passage]:
        return knowledge.generate_fictional_passages(3, seed=99)


def test_knowledge_self_edit_becomes_line_sequences_plus_the_passage():
    domain = KnowledgeDomain(max_samples=4, n_eval=1)
    passage = domain.load_data(seed=5)[0]
    assert len(domain.load_data(seed=5)) == 4 and domain.load_data(seed=5)[0].id == passage.id
    prompt = domain.create_self_edit_prompt(passage)
    assert prompt[0]["role"] == "user" and passage.context in prompt[0]["content"]
    update = domain.self_edit_update(passage, "1. First fact here.\n\n- Second fact here.\nImplications:")
    texts = [r["text"] for r in update.rows]
    assert texts == ["First fact here.", "Second fact here.", knowledge.passage_text(passage)]
    assert update.overrides == {}
    ref = domain.reference_updates(passage)
    assert list(ref) == ["passage_only"] and ref["passage_only"][0].rows == [
        {"text": knowledge.passage_text(passage)}
    ]
    assert isinstance(domain.reward_model, BinaryReward)
    assert domain.compute_reward(Performance(0.25, 0.5), passage) == 1.0
    assert domain.compute_reward(Performance(0.5, 0.5), passage) == 0.0


def test_arc_self_edit_config_drives_test_time_training_rows():
    domain = ArcDomain(max_samples=3, n_eval=1, max_rows=100)
    task = domain.load_data(seed=1)[0]
    text = 'Sure: {"basic": true, "strategy": "all_tokens", "learning_rate": 0.5, "num_train_epochs": 4}'
    update = domain.self_edit_update(task, text)
    groups = arc.augment_task(task, arc.ArcSelfEdit(basic=True))
    assert len(update.rows) == sum(len(g) for g in groups) and "messages" in update.rows[0]
    assert update.overrides == {"learning_rate": arc.LR_RANGE[1], "epochs": 4.0}  # lr clamped to 1e-2
    assert domain.self_edit_update(task, "no idea") is None
    canonical = domain.canonical_self_edit(text)
    assert arc.parse_self_edit(canonical) == arc.parse_self_edit(text) and canonical.startswith("{")
    oracle = domain.reference_updates(task)["oracle"]
    assert len(oracle) == len(default_oracle_configs()) == 8
    assert domain.upper_bounds == ("oracle",) and domain.baseline_name == "icl"
    assert isinstance(domain.reward_model, SuccessReward)
    assert domain.compute_reward(Performance(1.0, 1.0), task) == 1.0


def test_evaluate_scores_the_model_per_item(tiny_spec):
    resident = ResidentModel(tiny_spec)
    domain = KnowledgeDomain(max_samples=2, n_eval=1, answer_tokens=4)
    passage = domain.load_data(seed=0)[0]
    score = domain.evaluate(resident.base, resident.tokenizer, passage)
    assert len(score.items["f1"]) == len(score.items["em"]) == len(passage.questions)
    assert score.value == pytest.approx(sum(score.items["f1"]) / len(passage.questions))
    arc_domain = ArcDomain(max_samples=2, n_eval=1)
    task = arc_domain.load_data(seed=0)[0]
    arc_score = arc_domain.evaluate(resident.base, resident.tokenizer, task)
    assert arc_score.items == {"accuracy": [arc_score.value]} and arc_score.value in (0.0, 1.0)


def test_build_domain_registry_loader_and_errors():
    assert isinstance(build_domain("knowledge_incorporation", {}, None), KnowledgeDomain)
    assert isinstance(build_domain("few_shot_learning", {"n_eval": 2}, None), ArcDomain)
    custom = build_domain(
        "knowledge", {"loader": f"{__name__}:FixedPassages", "n_eval": 1}, ContinuousReward()
    )
    assert [p.id for p in custom.load_data(seed=0)] == [p.id for p in FixedPassages().load_data()]
    assert isinstance(custom.reward_model, ContinuousReward)
    with pytest.raises(ConfigError, match=r"data_config\.max_sample: unknown key .*max_samples"):
        build_domain("knowledge", {"max_sample": 3}, None)
    with pytest.raises(ConfigError, match="unknown domain 'chess'"):
        build_domain("chess", {}, None)
    with pytest.raises(ConfigError, match="cannot import"):
        build_domain("no_such_module_xyz:Domain", {}, None)
    with pytest.raises(ConfigError, match="not a subclass"):
        build_domain(f"{__name__}:FixedPassages", {}, None)
    with pytest.raises(ConfigError, match="needs data_config.path"):
        KnowledgeDomain(dataset_name="squad").load_data(seed=0)


def test_split_items_is_seeded_and_disjoint():
    items = list(range(10))
    train, held = split_items(items, 3, seed=4)
    assert (train, held) == split_items(items, 3, seed=4)
    assert len(held) == 3 and sorted(train + held) == items
    with pytest.raises(ConfigError, match="n_eval"):
        split_items(items, 10, seed=0)


def _docs_example() -> types.ModuleType:
    """Execute the worked example of docs/seal.md as an importable module."""
    text = (ROOT / "docs" / "seal.md").read_text()
    section = text[text.index("## Worked example") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module = types.ModuleType("seal_docs_example")
    sys.modules[module.__name__] = module
    exec(compile(code, "docs/seal.md", "exec"), module.__dict__)
    return module


def test_docs_custom_domain_runs_end_to_end(tiny_spec, tmp_path):
    from posttrain.config import SEALConfig, load_config
    from posttrain.pipelines.seal import run_seal

    example = _docs_example()
    domain = build_domain("seal_docs_example:GlossaryDomain", {"n_eval": 1}, None)
    assert isinstance(domain, BaseDomain) and isinstance(domain.reward_model, ContinuousReward)
    cfg = load_config(
        SEALConfig,
        preset="seal_test",
        overrides=[f"run.output_root={tmp_path}", "run.name=glossary", "max_outer_iterations=1"],
    )
    summary = run_seal(cfg, domain=example.GlossaryDomain())
    assert summary["status"] == "completed" and summary["domain"] == "glossary"
    assert summary["train_contexts"] == 3 and summary["self_edits"] == 3 * cfg.samples_per_iteration
    results = (tmp_path / "glossary" / "report.md").read_text()
    for row in ("| base |", "| base_self_edits |", "| seal_self_edits |"):
        assert row in results


def test_reward_models():
    assert BinaryReward().compute_reward(0.2, 0.3, None) == 1.0
    assert BinaryReward().compute_reward(0.3, 0.3, None) == 0.0
    assert BinaryReward(margin=0.2).compute_reward(0.2, 0.3, None) == 0.0
    assert ContinuousReward().compute_reward(0.5, 0.25, None) == -0.25
    assert SuccessReward(1.0).compute_reward(1.0, 1.0, None) == 1.0
    assert SuccessReward(1.0).compute_reward(0.0, 0.5, None) == 0.0
    assert make_reward_model("success", success_at=0.5).compute_reward(0, 0.5, None) == 1.0
    with pytest.raises(ValueError, match="unknown reward kind"):
        make_reward_model("hinge")
