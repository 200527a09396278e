"""SEAL knowledge incorporation: passages with questions, self-edit prompts, no-context grading.

A passage is shown to the generator, which writes a self-edit (implications, Q&A pairs,
rewrites or facts). Each line of the self-edit becomes one training sequence, plus the
passage itself; a LoRA update on those sequences should let the model answer the passage's
questions *without* seeing the passage, which `evaluate` measures by SQuAD EM and token F1.

Data comes from SQuAD v1/v2 JSON files (`squad`), from a Hugging Face dataset when one is
reachable, or, by default and offline, from `generate_fictional_passages` (`fictional`):
passages about invented entities whose names are built from syllables, so a base model
cannot already know the answers and any gain comes from the update.
"""

from posttrain.tasks.knowledge.fictional import generate_fictional_passages
from posttrain.tasks.knowledge.grading import (
    Judge,
    clean_prediction,
    evaluate,
    grade,
    qa_prompt,
    qa_prompts,
)
from posttrain.tasks.knowledge.passages import QA, Passage, passage_text, split_passages
from posttrain.tasks.knowledge.self_edits import (
    SELF_EDIT_KINDS,
    SelfEditKind,
    create_self_edit_prompt,
    self_edit_prompt,
    self_edit_to_sequences,
    sequences_to_rows,
)
from posttrain.tasks.knowledge.squad import load_hf_squad, passages_to_squad, read_squad, write_squad

__all__ = [
    "QA",
    "SELF_EDIT_KINDS",
    "Judge",
    "Passage",
    "SelfEditKind",
    "clean_prediction",
    "create_self_edit_prompt",
    "evaluate",
    "generate_fictional_passages",
    "grade",
    "load_hf_squad",
    "passage_text",
    "passages_to_squad",
    "qa_prompt",
    "qa_prompts",
    "read_squad",
    "self_edit_prompt",
    "self_edit_to_sequences",
    "sequences_to_rows",
    "split_passages",
    "write_squad",
]
