"""The tool_use task: calculator / search / calendar tools, held-out tools, and SFT + preference data.

Tools (split "train"): `calculator`, `search` (BM25 over the bundled knowledge base) and the
calendar as three tools, `calendar_list`, `calendar_add`, `calendar_free_slot`: one function per
action keeps each schema small and lets argument accuracy be judged per action (BFCL style), where
one tool with an `action` enum would make every argument conditional. Split "heldout" adds
`unit_converter` and `weather` (over the bundled `weather.csv`), with their own prompt templates.

Modules: `tools/` (one per tool), `registry` (the tools of a split), `scoring` (answers and
arguments against the gold), `plans` (episode planners), `defects` (rejected turns for
preference pairs), `data` (rows and their JSONL files), `metrics` (the figures of a model's
turns and the trajectory reward), `align` (the task as `posttrain align` runs it), `user_eval`
(a user's rows with their own tools and BFCL-shaped gold, and the AST-accuracy figures).
"""

from posttrain.tasks.tool_use.align import (
    TOOL_SPLITS,
    ToolUseAlign,
    evaluate_tool_use,
    tool_use_episode_rows,
    tool_use_first_turns,
    tool_use_system_prompt,
    with_system_prompt,
)
from posttrain.tasks.tool_use.data import generate_tool_use_data, read_tool_use_data, write_tool_use_data
from posttrain.tasks.tool_use.defects import DEFECTS
from posttrain.tasks.tool_use.metrics import (
    TOOL_USE_METRICS,
    score_turn,
    tool_use_trajectory_reward,
    tool_use_turn_metrics,
)
from posttrain.tasks.tool_use.registry import HELDOUT_TOOLS, TRAIN_TOOLS, Split, build_registry
from posttrain.tasks.tool_use.scoring import NO_CALL, OMITTED, answer_matches, arguments_match, score_call
from posttrain.tasks.tool_use.tools import (
    KB_PATH,
    SEED_EVENTS,
    WEATHER_PATH,
    BM25Index,
    CalculatorError,
    Calendar,
    CalendarError,
    calculate,
    convert_units,
    load_kb,
    load_weather,
    search,
    search_ids,
    weather,
)
from posttrain.tasks.tool_use.user_eval import (
    USER_EVAL_METRICS,
    EvalItem,
    read_eval_items,
    score_reply,
    user_eval_conversations,
    user_eval_figures,
)

__all__ = [
    "DEFECTS",
    "NO_CALL",
    "OMITTED",
    "USER_EVAL_METRICS",
    "EvalItem",
    "HELDOUT_TOOLS",
    "KB_PATH",
    "SEED_EVENTS",
    "TOOL_SPLITS",
    "TOOL_USE_METRICS",
    "TRAIN_TOOLS",
    "WEATHER_PATH",
    "BM25Index",
    "CalculatorError",
    "Calendar",
    "CalendarError",
    "Split",
    "ToolUseAlign",
    "answer_matches",
    "arguments_match",
    "build_registry",
    "calculate",
    "convert_units",
    "evaluate_tool_use",
    "generate_tool_use_data",
    "load_kb",
    "load_weather",
    "read_tool_use_data",
    "read_eval_items",
    "score_call",
    "score_reply",
    "score_turn",
    "search",
    "search_ids",
    "tool_use_episode_rows",
    "tool_use_first_turns",
    "tool_use_system_prompt",
    "tool_use_trajectory_reward",
    "tool_use_turn_metrics",
    "user_eval_conversations",
    "user_eval_figures",
    "weather",
    "with_system_prompt",
    "write_tool_use_data",
]
