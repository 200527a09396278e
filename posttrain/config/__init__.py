"""Config models, YAML presets and `--set a.b=c` overrides.

One pydantic model per recipe, built from the shared sections in `sections.py`; every field has
a default and a description. The CLI validates here and hands plain values down; nothing below
the pipelines sees a config object. This package imports nothing of posttrain but errors.
"""

from posttrain.config.align import (
    AlignConfig,
    AlignDataSettings,
    AlignDPOSettings,
    AlignEvalSettings,
    AlignPairSettings,
    AlignRolloutSettings,
)
from posttrain.config.constants import DEFAULT_MODEL, LORA_TARGETS
from posttrain.config.finetune import DPOConfig, DPOSettings, SFTConfig
from posttrain.config.loading import (
    config_reference,
    dump_config,
    load_config,
    parse_override,
    preset_names,
)
from posttrain.config.quickstart import QuickstartConfig
from posttrain.config.rlhf import RLHF_ALIASES, RewardModelSettings, RLHFConfig, parse_rlhf_flags
from posttrain.config.seal import (
    SEALConfig,
    SEALEvalSettings,
    SEALGenerationSettings,
    SEALInnerSettings,
    SEALReSTEMSettings,
    SEALRewardSettings,
)
from posttrain.config.search_space import SearchSpace
from posttrain.config.sections import (
    DataSettings,
    ExecutorSettings,
    LoraSettings,
    ModelSettings,
    RunSettings,
    TrainSettings,
)
from posttrain.config.tune import AgentSettings, SealStageSettings, TrialSettings, TuneConfig

__all__ = [
    "DEFAULT_MODEL",
    "LORA_TARGETS",
    "RLHF_ALIASES",
    "AgentSettings",
    "AlignConfig",
    "AlignDPOSettings",
    "AlignDataSettings",
    "AlignEvalSettings",
    "AlignPairSettings",
    "AlignRolloutSettings",
    "DPOConfig",
    "DPOSettings",
    "DataSettings",
    "ExecutorSettings",
    "LoraSettings",
    "ModelSettings",
    "QuickstartConfig",
    "RLHFConfig",
    "RewardModelSettings",
    "RunSettings",
    "SEALConfig",
    "SEALEvalSettings",
    "SEALGenerationSettings",
    "SEALInnerSettings",
    "SEALReSTEMSettings",
    "SEALRewardSettings",
    "SealStageSettings",
    "SearchSpace",
    "SFTConfig",
    "TrainSettings",
    "TrialSettings",
    "TuneConfig",
    "config_reference",
    "dump_config",
    "load_config",
    "parse_override",
    "parse_rlhf_flags",
    "preset_names",
]
