"""Agent backends behind one interface.

`Backend.complete_json(role, messages, schema, context)` returns a validated reply model:
- `RulesBackend` ignores `messages` and answers from `context` with the role's rules policy;
- `OpenAIBackend` (any OpenAI-compatible endpoint) and `LocalBackend` (a Hugging Face model
  with llguidance JSON-schema constrained decoding) generate text from `messages`.

LLM output is parsed leniently (prose and code fences around the JSON are fine), validated
with the clamping reply models, repaired once (the error goes back to the model), and if the
repair fails too the rules policy answers and the fallback is logged. Nothing a model writes
raises out of `complete_json`. Every attempt goes to `AgentLog` (agents.jsonl and the store).
"""

from posttrain.agents.backends.base import AgentLog, Backend, Generate
from posttrain.agents.backends.factory import make_backend
from posttrain.agents.backends.local import LocalBackend
from posttrain.agents.backends.openai import OpenAIBackend
from posttrain.agents.backends.repair import REPAIR_PROMPT, complete_with_repair, extract_json, parse_reply
from posttrain.agents.backends.rules import RulesBackend

__all__ = [
    "REPAIR_PROMPT",
    "AgentLog",
    "Backend",
    "Generate",
    "LocalBackend",
    "OpenAIBackend",
    "RulesBackend",
    "complete_with_repair",
    "extract_json",
    "make_backend",
    "parse_reply",
]
