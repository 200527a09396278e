"""posttrain/train/rl.py: the dynamic-KL callback with the real controller, the ADLF reward
function's arithmetic and logging, the contrastive loss, and curriculum order reaching a real
GRPO trainer on tiny-random."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from posttrain.tasks.conversations import (
    contrastive_pairs,
    curriculum_order,
    read_scored_conversations,
    sample_path,
    split_by_prompt,
    to_prompts,
)
from posttrain.train.args import RLArgs
from posttrain.train.contrastive import ContrastiveAux
from posttrain.train.kl import AdaptiveKLController, FixedKLController
from posttrain.train.rewards import coherence, faithfulness, length_penalty
from posttrain.train.rl import ADLFReward, KLControlCallback, rl_train


def _log(callback: KLControlCallback, step: int, kl: float) -> dict:
    logs = {"loss": 0.1, "kl": kl}
    callback.on_log(SimpleNamespace(), SimpleNamespace(global_step=step), None, logs=logs)
    return logs


def test_kl_callback_moves_beta_towards_the_target():
    trainer = SimpleNamespace(beta=123.0)
    callback = KLControlCallback(AdaptiveKLController(init_beta=0.1, kl_target=0.05, horizon=10))
    callback.attach(trainer)
    assert trainer.beta == 0.1
    # KL 4x the target: the error clips at +0.2, so one step multiplies beta by 1.02.
    logs = _log(callback, 1, 0.2)
    assert logs["beta"] == 0.1  # the row records the beta the step ran with
    assert trainer.beta == pytest.approx(0.102)
    # Three steps logged at once below the target: error -0.2 over n=3 steps -> x(1 - 0.06).
    _log(callback, 4, 0.0)
    assert trainer.beta == pytest.approx(0.102 * 0.94)
    # At the target nothing moves; a step without a KL value moves nothing either.
    before = trainer.beta
    _log(callback, 5, 0.05)
    callback.on_log(SimpleNamespace(), SimpleNamespace(global_step=6), None, logs={"loss": 0.1})
    assert trainer.beta == pytest.approx(before)


def test_kl_callback_state_survives_a_checkpoint(tmp_path):
    callback = KLControlCallback(AdaptiveKLController(0.1, 0.05, 10))
    callback.attach(SimpleNamespace(beta=0.0))
    for step in (1, 2):
        _log(callback, step, 0.3)
    ckpt = tmp_path / "checkpoint-2"
    ckpt.mkdir()
    callback.on_save(SimpleNamespace(output_dir=str(tmp_path)), SimpleNamespace(global_step=2), None)
    saved = json.loads((ckpt / "kl_controller.json").read_text())
    assert saved["controller"]["beta"] == pytest.approx(0.1 * 1.02**2)

    fresh = SimpleNamespace(beta=0.0)
    restored = KLControlCallback(AdaptiveKLController(0.1, 0.05, 10))
    restored.attach(fresh)
    restored.load(ckpt)
    assert fresh.beta == pytest.approx(0.1 * 1.02**2) and restored.last_step == 2


def test_fixed_controller_keeps_beta():
    trainer = SimpleNamespace(beta=0.0)
    callback = KLControlCallback(FixedKLController(0.04))
    callback.attach(trainer)
    for step in range(1, 4):
        assert _log(callback, step, 5.0)["beta"] == 0.04
    assert trainer.beta == 0.04


def test_adlf_reward_is_the_seed_formula_and_logs_every_component():
    contexts = ["What is the capital of France? Paris is in Europe.", "How many legs does a spider have?"]
    completions = [
        "The capital of France is Paris.",
        "Bananas are yellow and bananas are yellow and bananas.",
    ]
    logged: dict[str, float] = {}
    batches: list = []
    reward = ADLFReward(
        lambda prompts, comps: [0.8, 0.2],
        {"coherence": 1.0, "length": 1.0, "quality": 0.5},
        alpha=0.3,
        length_target=(2, 64),
        on_batch=lambda step, rows: batches.append((step, rows)),
    )
    out = reward(
        prompts=contexts,
        completions=completions,
        context=contexts,
        trainer_state=SimpleNamespace(global_step=6),
        log_metric=logged.__setitem__,
    )
    coh = coherence(contexts, completions)
    length = length_penalty(completions, None, (2, 64))
    for i, external in enumerate((0.8, 0.2)):
        internal = (1.0 * coh[i] + 0.5 * external) / 1.5 + length[i]
        assert out[i] == pytest.approx(0.7 * external + 0.3 * internal)
    assert coh[0] > coh[1] and length[1] < length[0] == 0.0  # the hand-made cases order as expected
    assert set(logged) >= {f"adlf/{k}" for k in ("coherence", "length", "faithfulness", "quality", "reward")}
    assert logged["adlf/external"] == pytest.approx(0.5)
    assert logged["adlf/faithfulness"] == pytest.approx(sum(faithfulness(contexts, completions)) / 2)
    step, rows = batches[0]
    assert step == 7 and rows[1]["completion"] == completions[1] and rows[1]["reward"] == out[1]


def test_contrastive_loss_learns_to_rank_the_better_answer(tiny_spec):
    from posttrain.models import ResidentModel

    resident = ResidentModel(tiny_spec)
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    train, _ = split_by_prompt(read_scored_conversations(sample_path()), 0.2, 0)
    pairs = contrastive_pairs(train[:30], fmt="role_markers")[:4]
    aux = ContrastiveAux(resident.tokenizer, pairs, temperature=0.5, weight=1.0, batch_size=len(pairs))
    assert aux.batch(0) == aux.batch(1) == aux.order  # one batch holds every pair
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(5):
        loss, _ = aux.loss(model, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0] - 0.1, losses
    assert aux.loss(model, 0)[1] == 1.0  # every pair now ranks the higher-scored answer first


def test_curriculum_order_reaches_the_grpo_trainer(tiny_spec, tmp_path):
    from posttrain.models import ResidentModel

    resident = ResidentModel(tiny_spec)
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    train, _ = split_by_prompt(read_scored_conversations(sample_path()), 0.2, 0)
    rows = to_prompts(curriculum_order(train, "score"), "standard")
    assert [r["context"] for r in rows[:2]] != [r["context"] for r in to_prompts(train, "standard")[:2]]
    seen: list[list[str]] = []
    reward = ADLFReward(
        lambda prompts, comps: [0.5] * len(comps),
        {"length": 1.0},
        alpha=0.5,
        on_batch=lambda step, batch: seen.append([r["context"] for r in batch]),
    )
    hp = RLArgs(batch_size=2, num_generations=2, max_completion_length=4, max_steps=2, shuffle=False)
    result = rl_train(
        model,
        resident.tokenizer,
        rows,
        reward,
        tmp_path,
        hp,
        kl_controller=FixedKLController(0.05),
        checkpoints=False,
    )
    assert result.status == "completed" and result.steps == 2
    # Step 1 sees the two easiest prompts (each num_generations times), step 2 the next two.
    assert seen[0] == [rows[0]["context"]] * 2 + [rows[1]["context"]] * 2
    assert seen[1] == [rows[2]["context"]] * 2 + [rows[3]["context"]] * 2
    steps = [r for r in result.extra["log"] if "loss" in r]
    assert [r["beta"] for r in steps] == [0.05, 0.05] and all("kl" in r for r in steps)
