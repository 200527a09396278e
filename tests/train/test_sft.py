"""The SFT wrapper in-process: NaN guard, and fallback past a half-written checkpoint."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import ResidentModel, lora_state
from posttrain.tasks.instructions import load_sft_dataset, sample_path
from posttrain.train.args import SFTArgs
from posttrain.train.loop import COMPLETE_MARKER, latest_complete_checkpoint, safe_perplexity
from posttrain.train.sft import sft_train


@pytest.fixture(scope="module")
def data():
    return load_sft_dataset(sample_path("alpaca"), max_train=48, max_val=8)


@pytest.fixture()
def resident(tiny_spec):
    return ResidentModel(tiny_spec)


def _hp(**kw) -> SFTArgs:
    base = dict(learning_rate=2e-3, batch_size=4, max_steps=6, warmup_ratio=0.0, save_steps=2, max_length=128)
    return SFTArgs(**{**base, **kw})


def test_nan_weight_ends_run_as_diverged_without_updating(resident, data, tmp_path):
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    name = next(n for n, _ in model.named_parameters() if "lora_A" in n)
    with torch.no_grad():
        dict(model.named_parameters())[name][0, 0] = float("nan")
    before = lora_state(model)
    result = sft_train(model, resident.tokenizer, data[0], data[1], tmp_path, _hp(), eval_before=False)
    assert result.status == "diverged" and "step 1" in result.error
    after = lora_state(model)
    for key in before:  # the optimizer never stepped: every weight is bit-identical
        assert torch.equal(before[key].nan_to_num(7.0), after[key].nan_to_num(7.0)), key


def test_resume_skips_a_half_written_checkpoint(resident, data, tmp_path):
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    ref = sft_train(model, resident.tokenizer, data[0], None, tmp_path, _hp())
    # What a kill during the step-6 save leaves: truncated files and no completion marker.
    half = tmp_path / "checkpoint-6"
    (half / COMPLETE_MARKER).unlink()
    for f in ("adapter_model.safetensors", "optimizer.pt"):
        (half / f).write_bytes((half / f).read_bytes()[:100])
    assert latest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-4"
    assert not half.exists()

    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    resumed = sft_train(model, resident.tokenizer, data[0], None, tmp_path, _hp(), resume=True)
    assert [s for s, _ in resumed.losses] == [5, 6]
    for (step, loss), (rstep, rloss) in zip(ref.losses[-2:], resumed.losses, strict=True):
        assert step == rstep and rloss == pytest.approx(loss, rel=1e-5)


def test_perplexity_is_guarded():
    assert safe_perplexity(0.0) == 1.0
    assert safe_perplexity(1e6) == safe_perplexity(50.0) < float("inf")
    assert safe_perplexity(float("nan")) < float("inf")


def test_resident_model_never_reloads(resident, data, tmp_path):
    base_ids = {id(p) for n, p in resident.base.named_parameters() if "lora_" not in n}
    for seed, r in ((0, 8), (1, 8), (2, 16)):
        model = resident.fresh_adapter(r, 2 * r, 0.0, seed=seed)
        sft_train(
            model,
            resident.tokenizer,
            data[0],
            None,
            tmp_path / str(seed),
            _hp(max_steps=2),
            checkpoints=False,
        )
    now = {id(p) for n, p in resident.model.named_parameters() if "lora_" not in n}
    assert base_ids == now
    assert (
        sum("lora_A" in n for n, _ in resident.model.named_parameters()) == 14
    )  # one adapter, 7 targets x 2 layers


def test_packed_examples_do_not_attend_to_each_other(resident):
    """Packing relies on transformers building a block-diagonal mask from reset position_ids."""
    a, b = torch.randint(5, 1000, (1, 7)), torch.randint(5, 1000, (1, 5))
    base = resident.base
    with torch.no_grad():
        alone = base(input_ids=b, use_cache=False).logits
        packed = base(
            input_ids=torch.cat([a, b], 1),
            position_ids=torch.cat([torch.arange(7), torch.arange(5)])[None],
            use_cache=False,
        ).logits
    assert torch.allclose(packed[:, 7:], alone, atol=1e-5)


@pytest.mark.parametrize("packing", [True, False])
def test_lean_loss_equals_trl_loss(resident, data, tmp_path, packing):
    """Our loss only projects label positions to the vocabulary; the number must not change."""
    from trl import SFTTrainer

    from posttrain.train.sft import build_sft_trainer

    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    trainer, _ = build_sft_trainer(
        model, resident.tokenizer, data[0], None, tmp_path, _hp(packing=packing), checkpoints=False
    )
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        ours = trainer.compute_loss(model, dict(batch))
        theirs = SFTTrainer.compute_loss(trainer, model, dict(batch))
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_packed_rows_accumulated_train_like_the_flattened_batch(resident, data, tmp_path, monkeypatch):
    """Without varlen attention a packed batch runs one row per forward; the update must be the
    one padding-free flattening (block-diagonal attention over the whole batch) gives."""
    import posttrain.train.sft as sft

    hp = _hp(max_steps=3, save_steps=100)
    states = {}
    for flattened in (False, True):
        monkeypatch.setattr(sft, "varlen_attention", lambda model, flat=flattened: flat)
        model = resident.fresh_adapter(8, 16, 0.0, seed=0)
        result = sft_train(model, resident.tokenizer, data[0], None, tmp_path / str(flattened), hp)
        assert result.status == "completed" and result.steps == 3
        states[flattened] = (lora_state(model), [loss for _, loss in result.losses])
    (rows, row_losses), (flat, flat_losses) = states[False], states[True]
    assert row_losses == pytest.approx(flat_losses, rel=1e-4)
    for key in flat:
        torch.testing.assert_close(rows[key], flat[key], rtol=1e-4, atol=1e-6)


def test_eval_loss_is_the_token_mean_whatever_the_eval_batching(resident, data, tmp_path, monkeypatch):
    import posttrain.train.sft as sft

    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    losses = []
    # max_length 64: about one example per packed row, so batching changes a mean of means
    for flattened in (False, True):  # one row per batch, then 4 rows flattened into one sequence
        monkeypatch.setattr(sft, "varlen_attention", lambda model, flat=flattened: flat)
        out = tmp_path / str(flattened)
        losses.append(sft.evaluate_loss(model, resident.tokenizer, data[1], out, max_length=64))
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
