"""Bad command-line flags: sizes below 1, negative temperatures, out-of-range ports, outputs that
are folders. Each is refused before any model loads, with the flag in the message."""

from __future__ import annotations

import pytest

from tests.hostile.conftest import TEST, refused, write_rows


@pytest.mark.parametrize("command", ["sft", "dpo"])
@pytest.mark.parametrize("steps", ["-5", "0", "-2"])
def test_max_steps_below_one_is_refused(cli, tmp_path, command, steps):
    refused(cli(command, *TEST, "--max-steps", steps), "max_steps", steps, root=tmp_path)


@pytest.mark.parametrize(
    ("command", "preset", "flag"),
    [("tune", "tune_test", "trial.max_steps"), ("rlhf", "rlhf_test", "rl.max_steps")],
)
def test_max_steps_of_the_other_recipes_is_refused(cli, tmp_path, command, preset, flag):
    refused(cli(command, "--preset", preset, "--max-steps", "0"), flag, root=tmp_path)


@pytest.mark.parametrize("steps", ["ten", "1.5", ""])
def test_max_steps_that_is_not_a_number(cli, tmp_path, steps):
    refused(cli("sft", *TEST, "--max-steps", steps), "--max-steps", root=tmp_path)


@pytest.mark.parametrize("name", ["a/b", "../up", ".x", "/abs"])
def test_a_run_name_that_is_not_one_folder_is_refused_before_training(cli, tmp_path, name):
    refused(cli("sft", *TEST, "--name", name), "run.name", name, root=tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


EVAL_FLAGS = [
    ("--max-steps", "0"),
    ("--batch-size", "0"),
    ("--max-new-tokens", "0"),
    ("--n", "0"),
    ("--n", "-3"),
]


@pytest.mark.parametrize(("flag", "value"), EVAL_FLAGS)
def test_eval_sizes_below_one(cli, tmp_path, flag, value):
    refused(cli("eval", "--task", "tool_use", "--model", "tiny-random", flag, value), flag, value)


def test_eval_output_that_is_a_folder(cli, tmp_path):
    (tmp_path / "out").mkdir()
    refused(cli("eval", "--task", "tool_use", "--model", "tiny-random", "-o", "out"), "--output", "out")


@pytest.fixture
def prompts(tmp_path):
    return write_rows(tmp_path / "prompts.jsonl", [{"prompt": "hi"}, {"prompt": "there"}])


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--batch-size", "0"),
        ("--batch-size", "-1"),
        ("--max-new-tokens", "0"),
        ("--max-new-tokens", "-1"),
        ("--temperature", "-1"),
        ("--temperature", "-0.5"),
    ],
)
def test_generate_bad_sizes(cli, tmp_path, prompts, flag, value):
    refused(cli("generate", "-i", prompts, "-o", "out.jsonl", "-m", "tiny-random", flag, value), flag, value)
    assert not (tmp_path / "out.jsonl").exists()


def test_generate_output_that_is_a_folder_is_refused_before_generating(cli, tmp_path, prompts):
    (tmp_path / "out").mkdir()
    result = cli("generate", "-i", prompts, "-o", "out", "-m", "tiny-random")
    refused(result, "--output", "out", "directory")
    assert "generating" not in result.out


def test_generate_output_under_a_file(cli, tmp_path, prompts):
    refused(cli("generate", "-i", prompts, "-o", "prompts.jsonl/x.jsonl", "-m", "tiny-random"), "is a file")


def test_generate_missing_input(cli, tmp_path):
    refused(cli("generate", "-i", "nope.jsonl", "-o", "out.jsonl", "-m", "tiny-random"), "nope.jsonl")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_chat_sizes_below_one(cli, value):
    refused(cli("chat", "-m", "tiny-random", "--max-new-tokens", value), "--max-new-tokens", value)


@pytest.mark.parametrize("port", ["99999", "-1", "65536", "http"])  # 0 is valid: any free port
def test_serve_port_out_of_range(cli, port):
    refused(cli("serve", "-m", "tiny-random", "--port", port), "--port", port)


def test_serve_unknown_tool_prompt(cli):
    refused(
        cli("serve", "-m", "tiny-random", "--port", "1", "--tool-prompt", "long"), "--tool-prompt", "long"
    )


@pytest.mark.parametrize("size", ["-1", "many"])  # 0 is valid: nothing waits, every overlap gets 503
def test_serve_max_queue_below_zero(cli, size):
    refused(cli("serve", "-m", "tiny-random", "--port", "1", "--max-queue", size), "--max-queue", size)


@pytest.mark.parametrize("limit", ["-1", "0"])
def test_runs_list_limit_below_one(cli, limit):
    refused(cli("runs", "list", "--limit", limit), "--limit", limit)


@pytest.mark.parametrize("n", ["0", "-5"])
def test_tool_use_data_needs_at_least_one_row(cli, tmp_path, n):
    refused(cli("data", "tool-use", "--out", "rows.jsonl", "--n", n), "--n", n)
    assert not (tmp_path / "rows.jsonl").exists()


def test_tool_use_data_out_that_is_a_folder(cli, tmp_path):
    (tmp_path / "rows").mkdir()
    refused(cli("data", "tool-use", "--out", "rows", "--n", "2"), "--out", "rows", "directory")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("sft", "--bogus"), "--bogus"),
        (("sft", "--max-step", "3"), "--max-step"),
        (("frobnicate",), "frobnicate"),
        (("sft", *TEST, "--launcher", "slurm"), "--launcher slurm"),
        (("sft", *TEST, "--num-processes", "2"), "--launcher accelerate"),
        (("sft", *TEST, "--launcher", "accelerate", "--num-processes", "0"), "--num-processes"),
        (("sft", *TEST, "--launcher", "accelerate", "--deepspeed", "zero9"), "zero9"),
        (("sft", *TEST, "--launcher", "accelerate", "--deepspeed", "zero2", "--fsdp"), "--fsdp"),
        (("align", "--task", "chess"), "chess"),
        (("align",), "--task"),
        (("eval", "--task", "chess", "-m", "tiny-random"), "chess"),
        (("seal", "--preset", "seal_test", "--log-level", "LOUD"), "LOUD"),
        (("tune", "--preset", "tune_test", "--seal", "maybe"), "maybe"),
        (("tune", "--preset", "tune_test", "--tuner", "oracle"), "oracle"),
        (("tune", "--preset", "tune_test", "--episodes", "0"), "max_episodes"),
        (("runs", "show", "abc"), "abc"),
        (("sft", *TEST, "--resume"), "--name"),
    ],
)
def test_misused_flags(cli, tmp_path, args, needle):
    refused(cli(*args), needle, root=tmp_path)


def test_no_arguments_prints_help_and_exits_2(cli):
    result = cli()
    assert result.code == 2 and "Usage" in result.out + result.err and "Traceback" not in result.err


def test_help_exits_0(cli):
    result = cli("sft", "--help")
    assert result.code == 0 and "--max-steps" in result.out
