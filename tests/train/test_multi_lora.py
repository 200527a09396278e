"""K LoRA updates trained in one batched pass against K separate `lean_train` runs, on tiny-random."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch

from posttrain.config import SEALConfig, load_config
from posttrain.errors import ConfigError
from posttrain.models import ResidentModel, lora_state
from posttrain.pipelines.seal import run_seal
from posttrain.tasks import knowledge
from posttrain.tasks.seal import KnowledgeDomain, Score
from posttrain.train import multi_lora
from posttrain.train.args import SFTArgs
from posttrain.train.lean import lean_train
from posttrain.train.multi_lora import InnerRun, multi_lean_train, score_together
from posttrain.train.restem import InnerLoop

# Three self-edits of different lengths and row counts, so rows pad and updates run out at
# different steps (4, 6 and 3 rows -> 8, 12 and 9 steps at 2, 2 and 3 epochs, batch 1).
EDITS = [
    [{"text": f"Vraelis Khodrun founded Zhaemor in {1800 + i}."} for i in range(4)],
    [
        {"text": f"The river {i} of Vrakeia runs north past the old mill of Khodrun, year {1700 + i}."}
        for i in range(6)
    ],
    [{"text": f"Zhaemor {i}."} for i in range(3)],
]
CHAT = [
    [
        {
            "prompt": [{"role": "user", "content": f"Who founded Zhaemor {i}?"}],
            "completion": [{"role": "assistant", "content": "Vraelis Khodrun" + " indeed" * (i + k)}],
        }
        for i in range(3 + k)
    ]
    for k in range(3)
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def resident(tiny_spec):
    resident = ResidentModel(tiny_spec)
    resident.fresh_adapter(8, 16, 0.0, seed=0)
    return resident


def _hp(**kw) -> SFTArgs:
    # max_grad_norm this low clips every step: equality then needs clipping by each adapter's norm.
    base = dict(
        learning_rate=5e-3,
        batch_size=1,
        epochs=2,
        warmup_ratio=0.2,
        scheduler="cosine",
        packing=False,
        max_length=64,
        max_grad_norm=0.05,
    )
    return SFTArgs(**{**base, **kw})


def _default_state(model) -> dict[str, torch.Tensor]:
    return {n: t for n, t in lora_state(model).items() if ".default." in n}


def _separately(resident, updates):
    out = []
    for rows, hp in updates:
        resident.reset_adapter()
        result = lean_train(resident.model, resident.tokenizer, rows, hp)
        out.append((result, _default_state(resident.model)))
    resident.reset_adapter()
    return out


@pytest.mark.parametrize(
    ("edits", "kw", "steps", "head_apart"),
    [
        (EDITS, {}, [8, 12, 9], True),  # SEAL knowledge: one row of each self-edit per step
        (EDITS, {}, [8, 12, 9], False),  # the model's own forward with logits_to_keep (other heads)
        (
            CHAT,
            {"batch_size": 2, "gradient_accumulation_steps": 2, "epochs": 4},
            [4, 4, 6],
            True,
        ),  # padding + accumulation
    ],
    ids=["text-batch1", "text-batch1-full-forward", "chat-batch2-ga2"],
)
def test_batched_updates_equal_separate_lean_runs(resident, edits, kw, steps, head_apart, monkeypatch):
    if not head_apart:  # llama runs its head apart; an empty list sends it down the generic path
        monkeypatch.setattr(multi_lora, "PLAIN_HEAD_TYPES", frozenset())
    assert (multi_lora._body_and_head(resident.model) is not None) == head_apart
    seeds_lr = [(11, {}), (12, {"learning_rate": 2e-2, "scheduler": "linear"}), (13, {"epochs": 3})]
    updates = [(rows, _hp(seed=s, **{**kw, **o})) for rows, (s, o) in zip(edits, seeds_lr, strict=True)]
    alone = _separately(resident, updates)
    initial = _default_state(resident.model)
    together = multi_lean_train(resident.model, resident.tokenizer, updates)
    # The pass trains copies: the model's own adapter is still at its initial weights.
    for name, value in _default_state(resident.model).items():
        assert torch.equal(value, initial[name]), name
    assert [len(t.result.losses) for t in together] == steps
    for (ref, ref_weights), got in zip(alone, together, strict=True):
        assert got.result.status == ref.status == "completed"
        assert [s for s, _ in got.result.losses] == [s for s, _ in ref.losses]
        for (_, a), (_, b) in zip(got.result.losses, ref.losses, strict=True):
            assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
        assert got.result.losses[-1][1] < got.result.losses[0][1]  # it learned
        assert set(got.weights) == set(ref_weights)
        for name, value in got.weights.items():
            assert torch.allclose(value, ref_weights[name], atol=2e-5), name
    # Three different updates, not one copied three times.
    a_name = next(n for n in initial if "lora_B" in n)
    assert not torch.allclose(together[0].weights[a_name], together[1].weights[a_name])


def test_a_sliding_window_model_pads_instead_of_packing(resident, monkeypatch):
    # Packed rows attend by SDPA without a mask, which would look past a sliding window.
    config = resident.model.get_base_model().config
    assert multi_lora._body_and_head(resident.model) is not None
    monkeypatch.setattr(config, "sliding_window", 8, raising=False)
    monkeypatch.setattr(config, "use_sliding_window", True, raising=False)
    assert multi_lora._body_and_head(resident.model) is None


def test_a_diverged_update_stops_alone(resident):
    # Packed into one sequence with the others: its NaNs must not reach their rows.
    updates = [(EDITS[0], _hp(seed=1)), (EDITS[1], _hp(seed=2, learning_rate=1e30)), (EDITS[2], _hp(seed=3))]
    alone = _separately(resident, updates)
    together = multi_lean_train(resident.model, resident.tokenizer, updates)
    assert alone[1][0].status == together[1].result.status == "diverged"
    assert together[1].result.steps == alone[1][0].steps
    for i in (0, 2):
        assert together[i].result.status == "completed"
        assert [loss for _, loss in together[i].result.losses] == pytest.approx(
            [loss for _, loss in alone[i][0].losses], rel=1e-5, abs=1e-5
        )


def test_dropout_is_refused(tiny_spec):
    resident = ResidentModel(tiny_spec)
    resident.fresh_adapter(8, 16, 0.1, seed=0)
    with pytest.raises(ValueError, match="dropout 0"):
        multi_lean_train(resident.model, resident.tokenizer, [(EDITS[0], _hp())])
    with pytest.raises(ConfigError, match="inner.lora.dropout=0"):
        load_config(
            SEALConfig, preset="seal_test", overrides=["inner.batch_updates=2", "inner.lora.dropout=0.1"]
        )


def _probe_nll(model, tokenizer, text: str) -> float:
    """How well the adapted model predicts `text`: a continuous score every weight moves."""
    ids = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        return float(model(**ids, labels=ids["input_ids"]).loss)


def test_score_together_scores_like_one_at_a_time(resident):
    passages = knowledge.generate_fictional_passages(3, seed=0)
    domain = KnowledgeDomain(dataset_name="fictional", answer_tokens=6)
    hp = replace(_hp(), max_grad_norm=1.0)
    inner = InnerLoop(resident, r=8, alpha=16, dropout=0.0, hp=hp, adapter_seed=0)
    jobs = [(p, domain.self_edit_update(p, "\n".join(p.context.split(". ")[:3])).rows) for p in passages]
    runs = [(p, rows, seed) for p, rows in jobs for seed in (5, 6)]  # two inner runs per self-edit

    def measure(p):
        f1 = domain.evaluate(inner.model, inner.tokenizer, p).value
        return f1, _probe_nll(inner.model, inner.tokenizer, p.context)

    one_at_a_time = []
    for p, rows, seed in runs:
        inner.adapt(rows, seed)
        one_at_a_time.append(measure(p))
    probes: list[float] = []

    def evaluate(i: int) -> float:
        f1, nll = measure(runs[i][0])
        probes.append(nll)
        return f1

    scores = score_together(inner, [InnerRun(rows, seed) for _, rows, seed in runs], evaluate)
    assert scores == [f1 for f1, _ in one_at_a_time]  # the same F1 per run
    assert probes == pytest.approx([nll for _, nll in one_at_a_time], rel=1e-5)
    assert len(set(round(x, 4) for x in probes)) == len(runs)  # each run's own update was evaluated
    base = _probe_nll(inner.model, inner.tokenizer, passages[0].context)
    inner.reset()
    assert base == _probe_nll(inner.model, inner.tokenizer, passages[0].context)  # ends reset


class ProbeDomain(KnowledgeDomain):
    """Knowledge incorporation scored by the passage's NLL (tiny-random's F1 is 0 everywhere)."""

    def evaluate(self, model, tokenizer, task) -> Score:
        value = -_probe_nll(model, tokenizer, task.context)
        return Score(value, {"f1": [value], "em": [0.0]})


def test_seal_e_step_batched_equals_one_at_a_time(tiny_spec, tmp_path):
    scores = {}
    for batch in (1, 3):
        cfg = load_config(
            SEALConfig,
            preset="seal_test",
            overrides=[
                f"run.output_root={tmp_path}",
                f"run.name=b{batch}",
                "max_outer_iterations=1",
                "evaluation.enabled=false",
                "inner.runs=2",
                f"inner.batch_updates={batch}",
            ],
        )
        run_seal(cfg, domain=ProbeDomain(**cfg.data_config))
        lines = (tmp_path / f"b{batch}" / "self_edits.jsonl").read_text().splitlines()
        scores[batch] = [json.loads(line)["run_scores"] for line in lines]
    flat = [s for runs in scores[1] for s in runs]
    assert len(flat) == 12 and all(math.isfinite(s) for s in flat)  # 3 contexts x 2 samples x 2 runs
    assert len(set(round(s, 4) for s in flat)) > 6  # the self-edits' updates differ
    for one, batched in zip(scores[1], scores[3], strict=True):
        assert batched == pytest.approx(one, rel=1e-5)
