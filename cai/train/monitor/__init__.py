"""Reward-hacking monitor for policy training (PPO, GRPO, RLOO).

Every `monitor.every` steps the policy answers a fixed set of evaluation prompts; the reward,
the constitutional judge's win rate against the reference policy, length and boilerplate
drift, refusals and KL are written to `logs/monitor.jsonl`, and rules on their trends warn or
stop the run (`config.py` documents each setting, `metrics.py` each number).
"""

from cai.train.monitor.config import MonitorConfig

__all__ = ["MonitorConfig"]
