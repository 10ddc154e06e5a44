"""PPO for language models (the RL stage of RL-CAI), on torch, transformers and accelerate.

TRL removed its PPO trainer, so `cai` owns this loop: `config` (settings), `setup` (prompts,
DeepSpeed settings and the LR schedule, checked before any model loads), `core` (the math),
`models` (policy + value head, frozen reference), `rollout` (swappable samplers), `batch`
(a rollout as tensors, scored by policy and reference), `rewards` (reward functions), `ptx`
(the SFT rows of PPO-ptx), `trainer` (the loop), `checkpoints` (resume and the final model),
`logging` (metrics and plots). Import the pieces from their modules; this package import
stays light.
"""
