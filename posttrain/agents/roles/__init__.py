"""The six agent roles of seed 000, one module each: a pydantic reply that keeps the seed's JSON
contract and clamps rather than rejects, a deterministic rules policy (`rules_<role>`, used
offline and as the fallback), and the prompt and wire schema LLM backends send.

Only each role's decision key is required (tuner `hparams`, judge `continue`, reward-penalty
`override`, SEAL expert `seal_epochs`, QA generator `items`, QA evaluator `scores`); a reply
without it is invalid and the backend asks once for a repair. `dispatch` maps a role name to
its module. What the roles know about past episodes lives in `posttrain.agents.history`.
"""

from posttrain.agents.roles.base import MAX_TEXT, SEAL_EPOCHS, Reply
from posttrain.agents.roles.dispatch import (
    REPLY_MODELS,
    ROLE_SPECS,
    ROLES,
    SYSTEM_PROMPTS,
    Role,
    RoleSpec,
    build_messages,
    reply_schema,
    role_spec,
    rules_answer,
)
from posttrain.agents.roles.judge import JudgeReply, clearly_degrading, enforce_min_episodes, rules_judge
from posttrain.agents.roles.qa import (
    QAEvalReply,
    QAGenReply,
    QAItem,
    rules_qa_evaluator,
    rules_qa_generator,
    token_f1,
)
from posttrain.agents.roles.reward_penalty import (
    RewardPenaltyReply,
    RewardSignal,
    merge_hparams,
    reward_overrides,
    reward_signal,
    rules_reward_penalty,
)
from posttrain.agents.roles.seal_expert import (
    SealExpertReply,
    SealPlan,
    rules_seal_expert,
    seal_effect_summary,
)
from posttrain.agents.roles.tuner import TunerReply, rules_tuner

__all__ = [
    "MAX_TEXT",
    "REPLY_MODELS",
    "ROLES",
    "ROLE_SPECS",
    "SEAL_EPOCHS",
    "SYSTEM_PROMPTS",
    "JudgeReply",
    "QAEvalReply",
    "QAGenReply",
    "QAItem",
    "Reply",
    "RewardPenaltyReply",
    "RewardSignal",
    "Role",
    "RoleSpec",
    "SealExpertReply",
    "SealPlan",
    "TunerReply",
    "build_messages",
    "clearly_degrading",
    "enforce_min_episodes",
    "merge_hparams",
    "reply_schema",
    "reward_overrides",
    "reward_signal",
    "role_spec",
    "rules_answer",
    "rules_judge",
    "rules_qa_evaluator",
    "rules_qa_generator",
    "rules_reward_penalty",
    "rules_seal_expert",
    "rules_tuner",
    "seal_effect_summary",
    "token_f1",
]
