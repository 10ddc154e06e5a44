"""The reward service as a config entry: `reward: {kind: remote, url: ..., mode: ...}`.

The settings of `RemoteJudgeReward`, typed, for trainers configured by YAML (cai's PPO).
Only pydantic here, so a training config can name it without importing an HTTP client.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cai.reward.protocol import Mode


class RemoteRewardSpec(BaseModel):
    """A running `cai reward serve` as the reward."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["remote"] = "remote"
    url: str = Field(pattern=r"^https?://")
    """The service's base URL, e.g. http://127.0.0.1:8100."""
    mode: Mode = "score"
    """score: P(follows) per response; rank: Bradley-Terry within each prompt's group;
    compare: P(beats the reference column)."""
    token_env: str = "CAI_REWARD_TOKEN"
    """The environment variable holding the bearer token, when the service needs one."""
    deadline_s: float = Field(600.0, gt=0)
    """How long a call keeps retrying while the service is down before the run stops."""
    timeout_s: float = Field(300.0, gt=0)

    def client(self):
        """The `RemoteJudgeReward` these settings describe."""
        from cai.reward.client import RemoteJudgeReward

        return RemoteJudgeReward(
            self.url,
            self.mode,
            token_env=self.token_env,
            deadline_s=self.deadline_s,
            timeout_s=self.timeout_s,
        )
