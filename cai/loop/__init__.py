"""`cai loop`: iterative RLAIF rounds (sample from policy r, label, train, measure, repeat).

    config.py    the settings (`LoopConfig`) and the fingerprint a rerun must match
    state.py     `loop_state.json`: per-round stage starts and finishes, written atomically
    data.py      a round's prompt slice, human overrides, and the mix of rounds it trains on
    context.py   what every stage of a round reads (`RoundContext`)
    round.py     the stage order of one round and the stage that runs at each step
    steps.py     prompts, labelling (`cai run`) and data stages
    training.py  reward-model refresh and the policy step (dpo, grpo or ppo)
    measure.py   judged win rates vs the previous and the starting policy
    report.py    the per-round table (summary.md, summary.json) and loop.png
    run.py       lock -> check inputs -> rounds until done or stopped -> report

Layout of `output_dir`:
  rounds/<r>/prompts.jsonl                    the round's prompts
  rounds/<r>/samples/ judgments/ preferences  `cai run`'s outputs for policy r
  rounds/<r>/data/pairs.jsonl, train.jsonl    the round's pairs, the mix it trains on
  rounds/<r>/reward_model/ policy/ eval/      the refreshed reward model, policy r+1, win rates
  loop_state.json, config.resolved.yaml, summary.md, summary.json, loop.png
"""

from cai.loop.config import LoopConfig, load_loop_config
from cai.loop.run import LoopResult, run_loop

__all__ = ["LoopConfig", "LoopResult", "load_loop_config", "run_loop"]
