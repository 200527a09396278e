"""ADLF reward components (seed 003): external reward-model score blended with internal signals.

    reward   = (1 - alpha) * external + alpha * internal                      (`adlf_reward`)
    internal = weighted mean of the [0, 1] scores + sum of weighted penalties  (`internal_reward`)

Internal components, each reported on its own (`reward_breakdown`), one module each:

| name         | function         | range   | meaning                                               |
|--------------|------------------|---------|-------------------------------------------------------|
| coherence    | `coherence`      | [0, 1]  | TF-IDF cosine between prompt and response             |
| length       | `length_penalty` | [-1, 0] | 0 inside the token band; negative outside or repeating |
| fluency      | `fluency`        | [0, 1]  | exp(-mean NLL / temperature) under a reference model  |
| faithfulness | `faithfulness`   | [0, 1]  | share of the response's numbers and names the prompt backs |

"quality" (seed 003's quality_weight) is not computed here: it names whatever overall
quality score the caller supplies, normally the normalised reward-model score, so the
multi-objective weights fluency/faithfulness/quality can all go to `internal_reward`.

Every function takes prompts and responses as plain strings or as TRL conversational
messages (lists of {role, content}). Formatted prompts may be passed too: chat-template
tokens, the ChatML/Llama-3 system block, the role/turn markers of
`posttrain.tasks.conversations` and a `<score=N>` prefix are stripped before the text
metrics look at them. Cleaner still is the `context` column of `to_prompts` rows, which
TRL's GRPO/RLOO trainers pass to reward functions as a keyword argument.
"""

from posttrain.train.rewards.coherence import coherence
from posttrain.train.rewards.combine import (
    COMPONENTS,
    PENALTIES,
    adlf_reward,
    internal_components,
    internal_reward,
    normalize_external,
    reward_breakdown,
)
from posttrain.train.rewards.faithfulness import extract_names, extract_numbers, faithfulness
from posttrain.train.rewards.fluency import fluency
from posttrain.train.rewards.length import length_penalty, repeated_ngram_fraction
from posttrain.train.rewards.text import Text, plain_text

__all__ = [
    "COMPONENTS",
    "PENALTIES",
    "Text",
    "adlf_reward",
    "coherence",
    "extract_names",
    "extract_numbers",
    "faithfulness",
    "fluency",
    "internal_components",
    "internal_reward",
    "length_penalty",
    "normalize_external",
    "plain_text",
    "repeated_ngram_fraction",
    "reward_breakdown",
]
