"""Bad config values, files and `--set` overrides: each refused before a folder exists or a model loads."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from tests.hostile.conftest import TEST, refused

# (--set override, what the message must name)
BAD_SETS = [
    ("train.scheduler=bogus", "train.scheduler"),
    ("train.scheduler=Cosine", "train.scheduler"),
    ("model.device=gpu", "model.device"),
    ("model.device=cuda:x", "model.device"),
    ("model.device=", "model.device"),
    ("model.attn_implementation=bogus", "model.attn_implementation"),
    ("model.dtype=fp8", "model.dtype"),
    ("train.report_to=bogus", "train.report_to"),
    ("lora.target_modules=[]", "lora.target_modules"),
    ("lora.target_modules=['']", "lora.target_modules"),
    ("lora.target_modules=q_proj", "lora.target_modules"),
    ("train.max_steps=-5", "train.max_steps"),
    ("train.max_steps=0", "train.max_steps"),
    ("train.max_steps=-2", "train.max_steps"),
    ("train.max_steps=ten", "train.max_steps"),
    ("train.max_steps=2.5", "train.max_steps"),
    ("train.learning_rate=0", "train.learning_rate"),
    ("train.learning_rate=-1e-4", "train.learning_rate"),
    ("train.learning_rate=fast", "train.learning_rate"),
    ("train.batch_size=0", "train.batch_size"),
    ("train.gradient_accumulation_steps=0", "train.gradient_accumulation_steps"),
    ("train.epochs=0", "train.epochs"),
    ("train.warmup_ratio=2", "train.warmup_ratio"),
    ("train.weight_decay=-1", "train.weight_decay"),
    ("train.max_grad_norm=0", "train.max_grad_norm"),
    ("train.save_steps=0", "train.save_steps"),
    ("train.save_total_limit=0", "train.save_total_limit"),
    ("train.logging_steps=0", "train.logging_steps"),
    ("train.packing=maybe", "train.packing"),
    ("lora.r=0", "lora.r"),
    ("lora.r=100000", "lora.r"),
    ("lora.alpha=0", "lora.alpha"),
    ("lora.dropout=1.5", "lora.dropout"),
    ("lora.dropout=-0.1", "lora.dropout"),
    ("data.max_length=8", "data.max_length"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("data.max_train=0", "data.max_train"),
    ("data.max_val=0", "data.max_val"),
    ("run.name=a/b", "run.name"),
    ("run.name=.hidden", "run.name"),
    ("run.name=' '", "run.name"),
    ("run.output_root=''", "run.output_root"),
    ("train.lr=1e-4", "train.lr"),
    ("trian.max_steps=3", "trian"),
    ("train=5", "'train' is a section"),
    ("lora=[1, 2]", "'lora' is a section"),
    ("model.name.sub=1", "model.name"),
]


@pytest.mark.parametrize(("override", "needle"), BAD_SETS, ids=[s for s, _ in BAD_SETS])
def test_sft_refuses_a_bad_override(cli, tmp_path, override, needle):
    refused(cli("sft", *TEST, "--set", override, "--name", "x"), needle, root=tmp_path)


@pytest.mark.parametrize(
    ("command", "override", "needle"),
    [
        ("dpo", "dpo.loss_type=bogus", "dpo.loss_type"),
        ("dpo", "dpo.beta=0", "dpo.beta"),
        ("dpo", "train.packing=true", "train.packing"),
        ("dpo", "train.max_steps=-5", "train.max_steps"),
        ("tune", "trial.max_steps=-5", "trial.max_steps"),
        ("tune", "agents.tuner=bogus", "agents.tuner"),
        ("tune", "agents.backend=bogus", "agents.backend"),
        ("tune", "agents.max_episodes=0", "agents.max_episodes"),
        ("rlhf", "rl.max_steps=0", "rl.max_steps"),
        ("rlhf", "train.scheduler=bogus", "train.scheduler"),
        ("seal", "inner.scheduler=bogus", "inner.scheduler"),
        ("seal", "restem.lora.target_modules=[]", "restem.lora.target_modules"),
    ],
)
def test_other_recipes_refuse_a_bad_override(cli, tmp_path, command, override, needle):
    preset = {"dpo": "test", "tune": "tune_test", "rlhf": "rlhf_test", "seal": "seal_test"}[command]
    refused(cli(command, "--preset", preset, "--set", override, "--name", "x"), needle, root=tmp_path)


def test_align_refuses_a_zero_step_dpo_stage(cli, tmp_path):
    refused(
        cli("align", "--task", "tool_use", "--preset", "align_test", "--set", "dpo.train.max_steps=0"),
        "dpo.train.max_steps",
        root=tmp_path,
    )


def test_a_missing_target_module_is_refused_before_the_model_loads(cli, tmp_path):
    line = refused(cli("sft", *TEST, "--set", "lora.target_modules=[nope_proj]"), "nope_proj", root=tmp_path)
    assert "q_proj" in line  # the message lists the layers the model has


def test_a_target_module_given_by_dotted_suffix_is_accepted():
    from posttrain.models import check_target_modules

    check_target_modules("tiny-random", ["self_attn.q_proj", "down_proj"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_a_cuda_device_on_a_cpu_machine_is_refused(cli, tmp_path, device):
    refused(cli("sft", *TEST, "--set", f"model.device={device}"), f"model.device={device}", root=tmp_path)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_on_a_machine_without_it_is_refused(cli, tmp_path):
    refused(cli("sft", *TEST, "--set", "model.device=mps"), "model.device=mps", root=tmp_path)


def test_flash_attention_on_cpu_is_refused(cli, tmp_path):
    refused(
        cli(
            "sft", *TEST, "--set", "model.device=cpu", "--set", "model.attn_implementation=flash_attention_2"
        ),
        "flash_attention_2",
        root=tmp_path,
    )


@pytest.mark.parametrize("reporter", ["tensorboard", "wandb", "mlflow", "comet_ml"])
def test_a_reporter_that_is_not_installed_is_refused(cli, tmp_path, reporter):
    from posttrain.config.constants import REPORTERS

    if any(importlib.util.find_spec(m) for m in REPORTERS[reporter]):
        pytest.skip(f"{reporter} is installed here")
    refused(
        cli("sft", *TEST, "--set", f"train.report_to={reporter}"),
        f"train.report_to={reporter}",
        root=tmp_path,
    )


def test_the_scheduler_and_loss_lists_match_the_installed_libraries():
    from transformers.trainer_utils import SchedulerType

    from posttrain.config.constants import SCHEDULERS

    assert set(SCHEDULERS) == {s.value for s in SchedulerType}


# --- config files -----------------------------------------------------------------------------


def test_a_config_file_that_is_not_utf8(cli, tmp_path):
    (tmp_path / "bad.yaml").write_bytes(b"train:\n  max_steps: \xff\xfe\n")
    refused(cli("sft", "-c", "bad.yaml"), "bad.yaml", "UTF-8", root=tmp_path)


def test_a_config_path_that_is_a_directory(cli, tmp_path):
    (tmp_path / "conf").mkdir()
    refused(cli("sft", "-c", "conf"), "conf", "directory", root=tmp_path)


def test_a_missing_config_file(cli, tmp_path):
    refused(cli("sft", "-c", "nope.yaml"), "nope.yaml", "not found", root=tmp_path)


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("broken.yaml", "train: [1, 2\n", "not valid YAML"),
        ("list.yaml", "- 1\n- 2\n", "mapping"),
        ("scalar.yaml", "5\n", "mapping"),
        ("broken.json", '{"train": ', "not valid YAML/JSON"),
        ("section.yaml", "train: 5\n", "'train' is a section"),
        ("nested.yaml", "lora:\n  r: 8\nmodel: tiny-random\n", "'model' is a section"),
        ("unknown.yaml", "trainn:\n  max_steps: 3\n", "unknown key 'trainn'"),
        ("negative.yaml", "train:\n  batch_size: -5\n", "train.batch_size"),
        ("tabs.yaml", "train:\n\tmax_steps: 3\n", "not valid YAML"),
    ],
)
def test_a_bad_config_file_is_named(cli, tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    refused(cli("sft", *TEST, "-c", name, "--max-steps", "2"), name, needle, root=tmp_path)


def test_an_unknown_preset_suggests_the_nearest(cli, tmp_path):
    refused(cli("sft", "--preset", "tset"), "unknown preset 'tset'", "test", root=tmp_path)


def test_a_set_without_equals(cli, tmp_path):
    refused(cli("sft", *TEST, "--set", "train.max_steps"), "train.max_steps", "key.sub=value", root=tmp_path)
