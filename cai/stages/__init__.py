"""The labeling stages, one file each; `cai.pipeline` runs them.

    base.py         what a stage is: its declared inputs and outputs, the run it works in,
                    its counted chunk worker and picklable recipe
    summary.py      the shape every stage's result shares
    sample.py       prompts -> samples/ (n policy responses per prompt)
    judge.py        samples -> judgments/ (pairwise AI judgments, one judge or a panel)
    preferences.py  judgments -> the TRL preference dataset + card, filtered pairs
    revise.py       prompts -> critique/revision chains -> SFT data (SL-CAI)

Each stage file owns its settings, its worker and recipe, its identity (the fingerprint
that decides what a rerun reuses), its check and run, its summary, and the `Stage` entry
that declares what it reads and writes.
"""
