"""`cai eval judge`: a grid of judge configurations on the field's judge benchmarks.

items.py     what a benchmark row becomes: items to score, pairs and groups to judge
formats.py   one mapper per published format (RewardBench, RewardBench 2, RM-Bench,
             JudgeBench, MT-Bench human judgments, HH-RLHF) and format detection
sampling.py  --limit as a stratified sample over subsets
grid.py      the grid file: benchmarks x judges x constitutions x templates x methods
run.py       each cell through the stage runner (resumable, cached, scaled out)
scoring.py   each benchmark's own score (section weights, best-of-4, Ties, style matrix)
metrics.py   accuracy with bootstrap intervals, flips, ties, length bias, principles, cost
anchors.py   published numbers to compare with, and how like-for-like each comparison is
report.py    report.md, report.html, report.json and the accuracy plot
"""
