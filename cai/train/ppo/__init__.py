"""PPO for language models (the RL stage of RL-CAI), on torch, transformers and accelerate.

TRL removed its PPO trainer, so `cai` owns this loop: `config` (settings), `core` (the math),
`models` (policy + value head, frozen reference), `rollout` (swappable samplers),
`rewards` (reward functions), `trainer` (the loop), `logging` (metrics and plots).
Import the pieces from their modules; this package import stays light.
"""
