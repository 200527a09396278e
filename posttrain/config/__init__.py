"""Config models, YAML presets and `--set a.b=c` overrides.

One pydantic model per recipe, built from the shared sections in `sections.py`; every field has
a default and a description. The CLI validates here and hands plain values down; nothing below
the pipelines sees a config object. This package imports nothing of posttrain but errors.
"""

from posttrain.config.aliases import flags_to_overrides, rename_aliases, rename_overrides
from posttrain.config.align import (
    AlignConfig,
    AlignDataSettings,
    AlignDPOSettings,
    AlignDPOTrainSettings,
    AlignEvalSettings,
    AlignPairSettings,
    AlignRolloutSettings,
)
from posttrain.config.constants import DEFAULT_MODEL, LORA_TARGETS
from posttrain.config.finetune import DPOConfig, DPOSettings, DPOTrainSettings, SFTConfig
from posttrain.config.loading import (
    config_reference,
    dump_config,
    load_config,
    parse_override,
    preset_names,
    resumed_config,
)
from posttrain.config.quickstart import QuickstartConfig
from posttrain.config.rlhf import (
    RLHF_ALIASES,
    ADLFSettings,
    RewardModelSettings,
    RLHFConfig,
    RLHFDataSettings,
    RLHFEvalSettings,
    RLHFSFTSettings,
    RLHFTrainSettings,
    RLSettings,
)
from posttrain.config.seal import (
    SEAL_ALIASES,
    SEALConfig,
    SEALEvalSettings,
    SEALGenerationSettings,
    SEALInnerSettings,
    SEALReSTEMSettings,
    SEALRewardSettings,
    seal_preset,
)
from posttrain.config.search_space import SearchSpace
from posttrain.config.sections import (
    DataSettings,
    DataSplitSettings,
    ExecutorSettings,
    LoraSettings,
    ModelSettings,
    OptimSettings,
    RunSettings,
    TrainSettings,
)
from posttrain.config.tune import AgentSettings, SealStageSettings, TrialSettings, TuneConfig

__all__ = [
    "DEFAULT_MODEL",
    "LORA_TARGETS",
    "RLHF_ALIASES",
    "SEAL_ALIASES",
    "ADLFSettings",
    "RLHFDataSettings",
    "RLHFEvalSettings",
    "RLHFSFTSettings",
    "RLHFTrainSettings",
    "RLSettings",
    "AgentSettings",
    "AlignConfig",
    "AlignDPOSettings",
    "AlignDPOTrainSettings",
    "AlignDataSettings",
    "AlignEvalSettings",
    "AlignPairSettings",
    "AlignRolloutSettings",
    "DPOConfig",
    "DPOSettings",
    "DPOTrainSettings",
    "DataSettings",
    "DataSplitSettings",
    "ExecutorSettings",
    "LoraSettings",
    "ModelSettings",
    "OptimSettings",
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
    "flags_to_overrides",
    "rename_aliases",
    "rename_overrides",
    "seal_preset",
    "preset_names",
    "resumed_config",
]
