"""Conference meeting-success prediction (seed 002): scenarios, tools, trajectories, rewards, data.

Two attendees, A and B, meet at a conference; their features set a documented success
probability (`FORMULA_DOC`). A model predicts it from text (phase 1, SFT) or gathers the
features with tools before answering (phase 2, trajectories); trajectories ranked by
`calculate_reward` become DPO preference pairs (phase 3). `posttrain align` trains on demos that
answer after 0-3 calls, forces the answer at the step cap and ranks by `calibrated_reward`.

scenario.py holds the formula and the hidden outcome; tools.py the three tools; trajectories.py
the prompt, answer format and scripted agents; checklist.py the per-term checklist answers open
with; reward.py answer parsing, rewards and metrics; data.py CSV, SFT rows, preference pairs and
trace files; agent.py the agent in the ReAct loop; align.py the task as `posttrain align` runs it.
Everything is deterministic given a seed and needs no model.
"""

from posttrain.tasks.meetings.agent import (
    FORCE_INSTRUCTION,
    FORCED_PREFIX,
    episode_trajectory,
    force_final_answers,
    meetings_agent_prompt,
    meetings_registry,
    meetings_system_prompt,
    run_meetings_agent,
    trajectory_messages,
)
from posttrain.tasks.meetings.align import (
    MeetingsAlign,
    evaluate_meetings,
    meetings_metrics,
    meetings_references,
)
from posttrain.tasks.meetings.data import (
    CSV_COLUMNS,
    SFT_INSTRUCTION,
    build_preference_pairs,
    csv_row,
    read_csv,
    save_pairs,
    save_traces,
    sft_rows,
    trace_record,
    write_csv,
)
from posttrain.tasks.meetings.reward import (
    CalibratedReward,
    RewardBreakdown,
    accuracy,
    brier,
    calculate_reward,
    calibrated_reward,
    majority_baseline,
    oracle_accuracy,
    parse_prediction,
    tool_use_score,
)
from posttrain.tasks.meetings.scenario import (
    DAYS,
    FORMULA_DOC,
    REASONS,
    ROLES,
    SENIORITY,
    TERMS,
    TIMES_OF_DAY,
    TOPICS,
    Person,
    Scenario,
    generate_scenarios,
    input_text,
    reason_from_terms,
    role_complementarity,
)
from posttrain.tasks.meetings.tools import (
    TOOL_NAMES,
    ExecutedCall,
    execute_call,
    get_profile,
    get_schedule_context,
    make_tools,
    tool_schemas,
    topic_overlap,
)
from posttrain.tasks.meetings.trajectories import (
    AGENT_INSTRUCTION,
    ANSWER_THOUGHT,
    DEMO_CALL_WEIGHTS,
    DEMO_CALLS,
    Trajectory,
    agent_prompt,
    demo_trajectory,
    final_answer,
    informed_probability,
    scripted_trajectories,
    scripted_trajectory,
)

__all__ = [
    "AGENT_INSTRUCTION",
    "ANSWER_THOUGHT",
    "DEMO_CALLS",
    "DEMO_CALL_WEIGHTS",
    "FORCED_PREFIX",
    "FORCE_INSTRUCTION",
    "CSV_COLUMNS",
    "DAYS",
    "FORMULA_DOC",
    "REASONS",
    "ROLES",
    "SENIORITY",
    "SFT_INSTRUCTION",
    "TERMS",
    "TIMES_OF_DAY",
    "TOOL_NAMES",
    "TOPICS",
    "CalibratedReward",
    "ExecutedCall",
    "MeetingsAlign",
    "Person",
    "RewardBreakdown",
    "Scenario",
    "Trajectory",
    "accuracy",
    "agent_prompt",
    "brier",
    "build_preference_pairs",
    "calculate_reward",
    "calibrated_reward",
    "csv_row",
    "demo_trajectory",
    "episode_trajectory",
    "evaluate_meetings",
    "execute_call",
    "final_answer",
    "force_final_answers",
    "generate_scenarios",
    "get_profile",
    "get_schedule_context",
    "informed_probability",
    "input_text",
    "majority_baseline",
    "make_tools",
    "meetings_agent_prompt",
    "meetings_metrics",
    "meetings_references",
    "meetings_registry",
    "meetings_system_prompt",
    "oracle_accuracy",
    "parse_prediction",
    "read_csv",
    "reason_from_terms",
    "role_complementarity",
    "run_meetings_agent",
    "save_pairs",
    "save_traces",
    "scripted_trajectories",
    "scripted_trajectory",
    "sft_rows",
    "tool_schemas",
    "tool_use_score",
    "topic_overlap",
    "trace_record",
    "trajectory_messages",
    "write_csv",
]
