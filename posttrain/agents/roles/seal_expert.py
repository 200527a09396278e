"""The SEAL expert (seed 000 §3.4): how many SEAL refinement epochs the next SEAL stage gets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from posttrain.agents.history import EpisodeSummary, as_history, seal_improvement
from posttrain.agents.roles.base import Reply, SealEpochs, Text, json_object

SYSTEM_PROMPT = (
    "You are the SEAL expert. SEAL refines the best TRAIN configuration for 1 or 2 more epochs. "
    "Decide seal_epochs for the next SEAL stage from whether SEAL helped (negative seal_delta), "
    "hurt or was neutral, and explain. You do not change TRAIN hyperparameters."
)


class SealPlan(BaseModel):
    """The SEAL epochs the tuner plans alongside its hyperparameters."""

    model_config = ConfigDict(extra="ignore")

    seal_epochs: SealEpochs = 1


class SealExpertReply(Reply):
    """Seed §3.4: `{say, seal_epochs, evaluation}`; seal_epochs snaps to 1 or 2."""

    say: Text = ""
    seal_epochs: SealEpochs
    evaluation: Text = ""


def seal_effect_summary(history: Sequence[EpisodeSummary | Mapping[str, Any]]) -> str:
    """Seed episode step 3: one line on how SEAL changed the eval loss so far."""
    deltas = [(e.episode, -seal_improvement(e, as_history(history))) for e in as_history(history)]
    deltas = [(ep, d) for ep, d in deltas if d != 0.0]
    if not deltas:
        return "SEAL has not run yet."
    helped = sum(d < 0 for _, d in deltas)
    shown = ", ".join(f"ep{ep}: {d:+.4f}" for ep, d in deltas[-4:])
    return (
        f"SEAL eval-loss delta vs its base TRAIN (negative = helped): {shown}; helped {helped}/{len(deltas)}."
    )


def rules_seal_expert(
    history: Sequence[EpisodeSummary | Mapping[str, Any]], tol: float = 0.001
) -> SealExpertReply:
    """Two SEAL epochs while the last SEAL stage lowered the loss by more than `tol`, else one."""
    h = as_history(history)
    ran = [e for e in h if e.seal_delta is not None or e.seal_eval_loss is not None]
    if not ran:
        return SealExpertReply(say="No SEAL result yet.", seal_epochs=1, evaluation="start with 1 SEAL epoch")
    last = ran[-1]
    improvement = seal_improvement(last, h)
    if improvement > tol:
        verdict, epochs = f"SEAL helps (loss -{improvement:.4f}): refine for 2 epochs", 2
    elif improvement < -tol:
        verdict, epochs = f"SEAL hurts (loss +{-improvement:.4f}): keep it to 1 epoch", 1
    else:
        verdict, epochs = "SEAL is neutral: 1 epoch is enough", 1
    return SealExpertReply(say=verdict.split(":")[0] + ".", seal_epochs=epochs, evaluation=verdict)


def answer(context: Mapping[str, Any]) -> SealExpertReply:
    """The rules policy fed from the role context `AgentTeam` builds."""
    return rules_seal_expert(context.get("history") or [])


def schema(context: Mapping[str, Any], text: dict[str, Any]) -> dict[str, Any]:
    """The wire schema of the reply; `text` is the bounded string schema for free text."""
    return json_object({"say": text, "seal_epochs": {"type": "integer", "enum": [1, 2]}, "evaluation": text})
