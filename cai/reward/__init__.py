"""The constitutional judge as a reward service for the RL trainers people already run.

`cai reward serve` (`cai.reward.app`, `cai.reward.service`) puts one judge behind HTTP with
micro-batching; `RemoteJudgeReward` (`cai.reward.client`) is its client with TRL's reward
function signature; `cai.reward.verl` is a verl reward function; OpenRLHF calls
`/get_reward` as it is. See docs/reward-service.md.
"""

from __future__ import annotations

from cai.reward.client import AsyncRemoteJudgeReward, RemoteJudgeReward, RewardServiceError

__all__ = ["AsyncRemoteJudgeReward", "RemoteJudgeReward", "RewardServiceError"]
