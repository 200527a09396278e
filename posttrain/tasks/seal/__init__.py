"""SEAL domains and rewards: the contract (`base`), the built-in domains (`domains`), `rewards`.

The task data itself lives in posttrain.tasks.knowledge and posttrain.tasks.arc; this
package adapts them to what the SEAL pipeline asks of a domain.
"""

from posttrain.tasks.seal.base import BaseDomain, DataLoader, InnerUpdate, Performance, Score
from posttrain.tasks.seal.domains import (
    DOMAINS,
    ArcData,
    ArcDomain,
    KnowledgeData,
    KnowledgeDomain,
    build_domain,
    default_oracle_configs,
    split_items,
)
from posttrain.tasks.seal.rewards import (
    BaseRewardModel,
    BinaryReward,
    ContinuousReward,
    SuccessReward,
    make_reward_model,
)

__all__ = [
    "DOMAINS",
    "ArcData",
    "ArcDomain",
    "BaseDomain",
    "BaseRewardModel",
    "BinaryReward",
    "ContinuousReward",
    "DataLoader",
    "InnerUpdate",
    "KnowledgeData",
    "KnowledgeDomain",
    "Performance",
    "Score",
    "SuccessReward",
    "build_domain",
    "default_oracle_configs",
    "make_reward_model",
    "split_items",
]
