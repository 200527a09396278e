"""`posttrain align` config (seeds 002 and 004)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from posttrain.config.finetune import DPOTrainSettings
from posttrain.config.sections import (
    DPOLoss,
    ExecutorSettings,
    LoraSettings,
    MaxSteps,
    ModelSettings,
    RunSettings,
    Strict,
    TrainSettings,
)


class AlignDataSettings(Strict):
    train_rows: int = Field(
        400,
        ge=4,
        description="tool_use: generated training turns (grouped into whole episodes for SFT); "
        "meetings: scenarios for the direct predictor.",
    )
    pool_rows: int = Field(
        0,
        ge=0,
        description="tool_use: requests from the function pool's training families added to SFT "
        "(hundreds of invented functions, masked names, distractors, ~15% no-call rows); 0 = none.",
    )
    tools_file: str | None = Field(
        None,
        description="tool_use: a file of OpenAI function specs (JSON/JSONL/YAML); requests for these "
        "tools, written from their descriptions, join SFT and the synthetic pairs.",
    )
    tools_rows: int = Field(200, ge=0, description="tool_use: rows for the tools of data.tools_file.")
    tool_format: Literal["react", "chat_template"] = Field(
        "react",
        description="tool_use: how function-pool and data.tools_file rows are written and read: react = "
        "seed 004's Thought→Action text (any model); chat_template = the model's own tool format via "
        "apply_chat_template(tools=...), for a template that supports tools (e.g. Qwen2.5), so the "
        "adapter works with the clients its users have. The five tools' ReAct episodes stay react.",
    )
    agent_demos: int = Field(
        48, ge=0, description="meetings: scripted tool-using demos added to SFT (tool_use ignores it)."
    )
    val_rows: int = Field(16, ge=0, description="SFT conversations held out for the eval loss (0 = none).")
    seed: int = Field(42, description="Seed of the training data; rollouts and evaluation draw their own.")
    compact_prompt: bool = Field(
        True, description="Short system prompt (format + tool signatures): half the tokens of the full one."
    )
    max_length: int = Field(
        768, ge=64, description="Tokens per SFT conversation or DPO pair; longer ones are cut."
    )


class AlignRolloutSettings(Strict):
    prompts: int = Field(
        16, ge=1, description="Held-in prompts (tool_use episodes, meetings scenarios) the SFT model acts on."
    )
    k: int = Field(4, ge=1, description="Trajectories per prompt: the first greedy, the others sampled.")
    temperature: float = Field(0.8, gt=0.0, description="Sampling temperature of the extra trajectories.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus mass of the extra trajectories.")
    max_steps: int = Field(6, ge=1, description="ReAct turns per trajectory.")
    force_answer: bool = Field(
        True,
        description="meetings: a trajectory still calling tools at its last turn is asked for the Final "
        "Answer instead (its answer Thought prefilled); traces mark it forced. false = every turn free.",
    )
    max_new_tokens: int = Field(96, ge=1, description="Tokens per generated turn.")
    batch_size: int = Field(16, ge=1, description="Conversations per batched generate call.")
    seed: int = Field(
        1,
        description="Seed of the held-in prompts and of sampling (ray: shard i samples with seed + i).",
    )
    prompts_per_task: int = Field(
        8, ge=1, description="executor ray: held-in prompts per rollout task (local runs them all at once)."
    )


class AlignPairSettings(Strict):
    synthetic: int = Field(
        96,
        ge=0,
        description="Synthetic pairs: tool_use rows with one defect each; meetings scripted trajectories "
        "ranked by reward.",
    )
    on_policy: int = Field(
        64, ge=0, description="At most this many on-policy pairs (best vs worst SFT trajectory of a prompt)."
    )
    min_margin: float = Field(0.2, ge=0.0, description="Reward gap a pair needs to count as clearly ranked.")


class AlignDPOTrainSettings(DPOTrainSettings):
    """Align's DPO stage: DPO's defaults, stopped after 40 steps rather than an epoch of pairs."""

    max_steps: MaxSteps = Field(40, description="Stop after this many optimizer steps (-1 = use epochs).")


class AlignDPOSettings(Strict):
    beta: float = Field(0.1, gt=0.0, description="DPO temperature: higher stays closer to the SFT model.")
    gate: bool = Field(
        True,
        description="Keep DPO only if it scores above SFT's gate metrics on the task's validation sets "
        "(tool_use: AST accuracy + must-call on tool families that training and evaluation never see); "
        "otherwise (a tie included) the SFT adapter is the final one. Tasks without validation sets skip it.",
    )
    gate_items: int = Field(48, ge=1, description="Requests per validation set the gate scores.")
    loss_type: DPOLoss = Field(
        "sigmoid",
        description="TRL DPO loss type (sigmoid, ipo, hinge, ...); 'sigmoid+sft' adds an NLL term on the "
        "chosen answer (RPO), which keeps DPO from unlearning what SFT taught.",
    )
    train: AlignDPOTrainSettings = Field(
        default_factory=AlignDPOTrainSettings,
        description="Optimisation of the DPO stage (the SFT adapter is its starting point and reference).",
    )


class AlignEvalSettings(Strict):
    models: list[Literal["base", "sft", "dpo"]] = Field(
        default_factory=lambda: ["base", "sft", "dpo"], description="Which models the final table compares."
    )
    episodes: int = Field(
        24, ge=1, description="tool_use: held-out episodes per split; every turn of each is scored."
    )
    items: int = Field(
        200,
        ge=1,
        description="tool_use: scored requests per function-pool split (seen and unseen tool families).",
    )
    scenarios: int = Field(32, ge=1, description="meetings: held-out scenarios.")
    max_steps: int = Field(6, ge=1, description="ReAct turns per evaluated episode.")
    force_answer: bool = Field(
        True,
        description="meetings: an episode still calling tools at its last turn is asked for the Final "
        "Answer instead; the figures report the forced share (agent_forced). false = the free loop.",
    )
    constrained: bool = Field(
        False,
        description="tool_use: function-pool turns (these figures and the DPO gate's) decoded inside their "
        "tools' grammar: a call of an offered tool with schema-valid arguments, or a final answer "
        "(Thought→Action only).",
    )
    relevance_gate: float | Literal["auto"] | None = Field(
        None,
        description="tool_use, with constrained: each function-pool turn may call only the offered tool "
        "the request is most about, and only when its noisy-channel relevance score (nats per request "
        "token, posttrain.toolcall.relevance) reaches this threshold; under it, a final answer. auto = "
        "the threshold that keeps relevance_gate_keep of calls, set on validation tool families. "
        "null = the model chooses among all offered tools.",
    )
    relevance_gate_scorer: Literal["model", "base", "trained"] = Field(
        "model",
        description="tool_use, with relevance_gate: which model's channel scores the gate: the evaluated "
        "model itself, its base model with the adapter off (tuning on calls blunts the tuned model's "
        "channel at high recall; the base one's threshold is calibrated once for every model), or "
        "trained: a LoRA on the base fitted for the gate's decision before SFT (relevance_adapter/, "
        "posttrain.train.relevance), its threshold set on the training families held back from it "
        "and the validation families.",
    )
    relevance_scorer_rows: int = Field(
        300,
        ge=1,
        description="tool_use, with relevance_gate_scorer trained: requests of the training families "
        "(30% that no offered tool fits) the scorer is fitted on, one epoch (~6 min for 300 with "
        "smollm2-135m on 2 CPU cores).",
    )
    relevance_scorer_lr: float = Field(
        3e-4, gt=0.0, description="tool_use, with relevance_gate_scorer trained: the scorer's learning rate."
    )
    relevance_gate_keep: float = Field(
        0.9,
        gt=0.0,
        le=1.0,
        description="tool_use, with relevance_gate auto: the share of validation-family calls (for a "
        "trained scorer: of those and the training families held back from it) the calibrated threshold lets "
        "through (must-call comes first; irrelevance is what remains).",
    )
    rerank_arguments: bool = Field(
        False,
        description="tool_use: each function-pool call's arguments re-read by the model: of the call and "
        "its single schema-valid edits (an optional argument dropped or added with a value the "
        "request names, another enum value, another number or name of the request, two arguments "
        "swapped, a misspelt string snapped to the request's words), the one under which the request "
        "is likeliest, less a penalty for each value the request does not name or whose shape its "
        "parameter does not allow (posttrain.toolcall.rerank). Thought→Action only.",
    )
    rerank_scorer: Literal["model", "base", "trained"] = Field(
        "model",
        description="tool_use, with rerank_arguments: whose channel re-reads the arguments: the evaluated "
        "model's own, the base model's with the adapter off, or the trained relevance scorer's "
        "(needs relevance_gate_scorer trained). base and trained score alike for every model, so "
        "their scores are shared: a call two models wrote alike is scored once.",
    )
    rerank_policy_weight: float = Field(
        0.0,
        ge=0.0,
        description="tool_use, with rerank_arguments: the evaluated model's own likelihood of each "
        "candidate's arguments, added to the channel's score at this weight (0: off). It judges the "
        "candidates that keep the call's arguments (values, swaps), so whether to add or drop one "
        "stays the channel's; about twice the rerank's scoring time (posttrain.toolcall.rerank).",
    )
    model_splits: dict[Literal["base", "sft", "dpo"], list[str]] = Field(
        default_factory=dict,
        description="The evaluation splits a model is scored on, for a model that need not be scored on "
        "all of them (one not named here is): each split left out saves a whole evaluation pass.",
    )
    max_new_tokens: int = Field(96, ge=1, description="Tokens per generated turn.")
    batch_size: int = Field(16, ge=1, description="Conversations per batched generate call.")
    seed: int = Field(1000, description="Seed of the held-out data; never used for training or tuning.")


class AlignConfig(Strict):
    """`posttrain align`: SFT -> trajectories with rewards -> preference pairs -> DPO -> evaluation."""

    task: Literal["tool_use", "meetings"] = Field("tool_use", description="Which task to align for.")
    model: ModelSettings = Field(
        default_factory=ModelSettings, description="Which model and how to place it."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter shape (SFT and DPO).")
    data: AlignDataSettings = Field(default_factory=AlignDataSettings, description="Training data.")
    sft: TrainSettings = Field(default_factory=TrainSettings, description="Optimisation of the SFT stage.")
    rollouts: AlignRolloutSettings = Field(
        default_factory=AlignRolloutSettings, description="Trajectories of the SFT model."
    )
    pairs: AlignPairSettings = Field(default_factory=AlignPairSettings, description="Preference pairs.")
    dpo: AlignDPOSettings = Field(default_factory=AlignDPOSettings, description="DPO stage.")
    evaluation: AlignEvalSettings = Field(
        default_factory=AlignEvalSettings, description="Held-out base/SFT/DPO comparison."
    )
    executor: ExecutorSettings = Field(
        default_factory=ExecutorSettings, description="Where the rollout shards run."
    )
    run: RunSettings = Field(default_factory=RunSettings, description="Run directory and store.")
