"""The lean inner loop against the TRL/HF Trainer path: same rows, seed and hparams, same losses."""

from __future__ import annotations

import pytest
import torch

from posttrain.models import ResidentModel, lora_state
from posttrain.train.args import SFTArgs
from posttrain.train.lean import collate, lean_train, prepare_examples, summed_loss, tokenize_row
from posttrain.train.sft import sft_train

TEXT_ROWS = [
    {"text": f"Vraelis Khodrun founded the town of Zhaemor in {1800 + 7 * i}, beside river {i}."}
    for i in range(6)
]
CHAT_ROWS = [
    {
        "prompt": [{"role": "user", "content": f"Who founded Zhaemor number {i}?"}],
        "completion": [{"role": "assistant", "content": "Vraelis Khodrun" + " indeed" * i}],
    }
    for i in range(5)
]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The CI box is 2 shared cores; one thread avoids oversubscription and keeps this fast.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def resident(tiny_spec):
    return ResidentModel(tiny_spec)


def _hp(**kw) -> SFTArgs:
    base = dict(
        learning_rate=5e-3,
        batch_size=1,
        epochs=2,
        warmup_ratio=0.2,
        scheduler="cosine",
        packing=False,
        seed=7,
        max_length=64,
        logging_steps=1,
    )
    return SFTArgs(**{**base, **kw})


@pytest.mark.parametrize(
    ("rows", "kw", "steps"),
    [
        (TEXT_ROWS, {"batch_size": 1}, 12),  # SEAL knowledge: one sequence per step, as in the paper
        (CHAT_ROWS, {"batch_size": 2, "gradient_accumulation_steps": 2}, 4),  # padding + accumulation
    ],
    ids=["text-batch1", "chat-batch2-ga2"],
)
def test_lean_losses_match_the_trainer(resident, rows, kw, steps, tmp_path):
    hp = _hp(**kw)
    # LoRA dropout on: the lean loop also reproduces the Trainer's use of the global RNG.
    model = resident.fresh_adapter(8, 16, 0.1, seed=0)
    ref = sft_train(model, resident.tokenizer, rows, None, tmp_path, hp, checkpoints=False, eval_before=False)
    ref_weights = lora_state(model)
    model = resident.fresh_adapter(8, 16, 0.1, seed=0)
    ours = lean_train(model, resident.tokenizer, rows, hp)
    assert ours.status == ref.status == "completed"
    assert [s for s, _ in ours.losses] == [s for s, _ in ref.losses]
    assert len(ours.losses) == steps
    for (_, a), (_, b) in zip(ours.losses, ref.losses, strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert ours.losses[-1][1] < ours.losses[0][1] - 0.05  # it did learn
    for name, value in lora_state(model).items():
        assert torch.allclose(value, ref_weights[name], atol=1e-5), name


def test_padding_carries_no_loss(resident):
    """A right-padded batch's summed loss is the sum of each row's loss alone."""
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    tok = resident.tokenizer
    short, long = (tokenize_row(tok, r) for r in (TEXT_ROWS[0], {"text": TEXT_ROWS[1]["text"] * 3}))
    assert len(short.input_ids) < len(long.input_ids)
    model.eval()
    with torch.no_grad():
        batch = collate([short, long], tok.pad_token_id, "cpu")
        assert (batch["labels"][0, len(short.input_ids) :] == -100).all()
        together = summed_loss(model, batch)
        apart = sum(summed_loss(model, collate([ex], tok.pad_token_id, "cpu")) for ex in (short, long))
    assert float(together) == pytest.approx(float(apart), rel=1e-5)


def test_tokenization_follows_trl(resident):
    tok = resident.tokenizer
    text = tokenize_row(tok, TEXT_ROWS[0])
    assert text.input_ids[-1] == tok.eos_token_id and text.labels == text.input_ids
    chat = tokenize_row(tok, CHAT_ROWS[1])
    masked = sum(label == -100 for label in chat.labels)
    prompt = tok.apply_chat_template(CHAT_ROWS[1]["prompt"], add_generation_prompt=True, return_dict=True)
    prompt_len = len(prompt["input_ids"])
    assert masked == prompt_len  # loss on the completion only
    assert tok.decode([t for t in chat.labels if t != -100]).startswith("Vraelis Khodrun indeed")
    examples = prepare_examples(tok, TEXT_ROWS, max_length=8, seed=0)
    assert len(examples) == 6 and all(len(ex.input_ids) == 8 for ex in examples)


def test_packing_is_refused_and_nan_stops_before_the_update(resident):
    model = resident.fresh_adapter(8, 16, 0.0, seed=0)
    with pytest.raises(ValueError, match="packing=False"):
        lean_train(model, resident.tokenizer, TEXT_ROWS, _hp(packing=True))
    name = next(n for n, _ in model.named_parameters() if "lora_A" in n)
    with torch.no_grad():
        dict(model.named_parameters())[name][0, 0] = float("nan")
    before = lora_state(model)
    result = lean_train(model, resident.tokenizer, TEXT_ROWS, _hp())
    assert result.status == "diverged" and "step 1" in result.error and result.steps == 0
    for key, value in lora_state(model).items():
        assert torch.equal(before[key].nan_to_num(7.0), value.nan_to_num(7.0)), key
