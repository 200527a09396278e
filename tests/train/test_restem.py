"""SEAL's inner loop and ReST-EM pieces on tiny-random: exact resets, rejection, M-step."""

from __future__ import annotations

import json

import pytest
import torch

from posttrain.config import SEALConfig, load_config
from posttrain.models import ResidentModel, lora_state
from posttrain.pipelines.seal import run_seal
from posttrain.store import Store
from posttrain.tasks.seal import BaseRewardModel, KnowledgeDomain
from posttrain.train.args import SFTArgs
from posttrain.train.restem import (
    GENERATOR,
    GeneratorAdapter,
    InnerLoop,
    SelfEditSample,
    derive_seed,
    restem_rows,
    reward_stats,
    select_kept,
    trend,
)

ROWS = [{"text": f"Zhaemor is the capital of Vrakeia, founded in {1700 + i}."} for i in range(4)]
PROMPT = [{"role": "user", "content": "List the implications of: Zhaemor is the capital of Vrakeia."}]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _inner(resident: ResidentModel) -> InnerLoop:
    hp = SFTArgs(learning_rate=1e-2, batch_size=1, epochs=2, warmup_ratio=0.0, max_length=64, packing=False)
    return InnerLoop(resident, r=8, alpha=16, dropout=0.0, hp=hp, adapter_seed=1)


def test_reset_restores_base_logits_exactly_after_inner_and_m_step(tiny_spec, tmp_path):
    resident = ResidentModel(tiny_spec)
    ids = torch.tensor([[1, 500, 900, 42, 7, 311]])
    with torch.no_grad():
        base = resident.base(input_ids=ids).logits.clone()
    inner = _inner(resident)
    generator = GeneratorAdapter(inner.model, resident.tokenizer, r=4, alpha=8, seed=2)
    result = inner.adapt(ROWS, seed=3)
    assert result.status == "completed" and result.steps == 8
    inner.model.eval()
    with torch.no_grad():
        adapted = inner.model(input_ids=ids).logits
    assert (adapted - base).abs().max() > 1e-3
    inner.reset()
    with torch.no_grad():
        assert torch.equal(inner.model(input_ids=ids).logits, base)

    # The M-step trains the generator adapter only: the inner adapter and the base stay put.
    inner_before = {n: t for n, t in lora_state(inner.model).items() if ".default." in n}
    gen_before = {n: t for n, t in lora_state(inner.model).items() if f".{GENERATOR}." in n}
    rows = [
        {"prompt": PROMPT, "completion": [{"role": "assistant", "content": "Zhaemor is in Vrakeia."}]}
    ] * 4
    hp = SFTArgs(learning_rate=1e-2, batch_size=2, epochs=2, warmup_ratio=0.0, max_length=128)
    m = generator.m_step(rows, tmp_path / "mstep", hp, restart=True)
    assert m.status == "completed" and m.steps > 0 and generator.trained_rounds == 1
    after = lora_state(inner.model)
    assert all(torch.equal(after[n], t) for n, t in inner_before.items())
    assert any(not torch.equal(after[n], t) for n, t in gen_before.items())
    assert inner.model.active_adapter == "default"
    with torch.no_grad():
        assert torch.equal(inner.model(input_ids=ids).logits, base)
    generator.restart()  # back to the base generator, bit for bit
    assert all(torch.equal(lora_state(inner.model)[n], t) for n, t in gen_before.items())


def test_generation_is_seeded_and_the_untrained_generator_is_the_base(tiny_spec):
    resident = ResidentModel(tiny_spec)
    inner = _inner(resident)
    generator = GeneratorAdapter(inner.model, resident.tokenizer, r=4, alpha=8, seed=2)
    kw = dict(k=2, temperature=1.0, top_p=1.0, max_new_tokens=8, batch_size=2, seed=11)
    first, seeds = generator.generate([PROMPT, PROMPT, PROMPT], **kw)
    again, _ = generator.generate([PROMPT, PROMPT, PROMPT], **kw)
    base, _ = generator.generate([PROMPT, PROMPT, PROMPT], use_base=True, **kw)
    assert first == again == base
    assert [len(x) for x in first] == [2, 2, 2] and first[0][0] != first[0][1]
    assert seeds == [derive_seed(11, "generate", 0)] * 2 + [derive_seed(11, "generate", 1)]


def _sample(ctx: str, j: int, reward: float, gain: float, valid: bool = True) -> SelfEditSample:
    s = SelfEditSample(0, ctx, j, PROMPT, f"edit {ctx}{j}", 0, valid=valid, score_before=0.5)
    s.score_after, s.reward = 0.5 + gain, reward
    return s


def test_select_kept_rules():
    samples = [
        _sample("a", 0, 0.0, 0.0),
        _sample("a", 1, 1.0, 0.25),
        _sample("a", 2, 1.0, 0.5),
        _sample("b", 0, 0.0, -0.2),
        _sample("c", 0, 1.0, 0.125),
        _sample("c", 1, 1.0, 0.2, valid=False),
    ]
    kept = select_kept(samples, "all_positive")
    assert [(s.context_id, s.sample_index) for s in kept] == [("a", 2), ("a", 1), ("c", 0)]
    assert [s.kept for s in samples] == [False, True, True, False, True, False]
    top = select_kept(samples, "top1")
    assert [(s.context_id, s.sample_index) for s in top] == [("a", 2), ("c", 0)]
    assert [(s.context_id, s.sample_index) for s in select_kept(samples, "all_positive", min_gain=0.25)] == [
        ("a", 2),
        ("a", 1),
    ]
    assert len(select_kept(samples, "all_positive", max_per_context=1)) == 2
    rows = restem_rows(top)
    assert rows[0]["prompt"] == PROMPT and rows[0]["completion"][0]["content"] == "edit a2"
    stats = reward_stats(samples)
    assert stats["reward_mean"] == pytest.approx(4 / 6) and stats["success_rate"] == pytest.approx(4 / 6)
    assert stats["reward_hist"] == {"0": 2, "1": 4} and stats["n_valid"] == 5
    assert trend([0.1, 0.2, 0.3]) == pytest.approx(0.1) and trend([0.5]) is None


class ScriptedReward(BaseRewardModel):
    """Rewards in a fixed order, one per scored self-edit: what ReST-EM must keep is known."""

    def __init__(self, rewards: list[float]) -> None:
        self.rewards = list(rewards)
        self.calls: list[tuple[float, float]] = []

    def compute_reward(self, before: float, after: float, task: object) -> float:
        self.calls.append((before, after))
        return self.rewards[len(self.calls) - 1]


def test_restem_keeps_only_rewarded_self_edits(tiny_spec, tmp_path):
    script = [0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0]  # 3 contexts x 2 samples x 2 rounds
    reward = ScriptedReward(script)
    cfg = load_config(
        SEALConfig,
        preset="seal_test",
        overrides=[
            f"run.output_root={tmp_path}",
            "run.name=scripted",
            "restem.keep=all_positive",
            "evaluation.enabled=false",
            "inner.epochs=1",
        ],
    )
    domain = KnowledgeDomain(reward_model=reward, **cfg.data_config)
    summary = run_seal(cfg, domain=domain)
    assert summary["self_edits"] == 12 and summary["kept"] == 4
    store = Store(f"sqlite:///{tmp_path / 'posttrain.db'}")
    edits = store.list_self_edits(store.find_run("scripted").id)
    assert [e.reward for e in edits] == script
    assert [e.kept for e in edits] == [r > 0 for r in script]
    assert len(reward.calls) == 12
    rows = [json.loads(x) for x in (tmp_path / "scripted" / "metrics.jsonl").read_text().splitlines()]
    assert [r["n_kept"] for r in rows] == [2, 2] and [r["m_step"] for r in rows] == ["trained", "trained"]
    assert [r["mstep_rows"] for r in rows] == [2, 2]
    assert (tmp_path / "scripted" / "generator_adapter" / GENERATOR / "adapter_model.safetensors").exists()
