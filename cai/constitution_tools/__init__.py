"""Tools that run a judge over a constitution: test cases, lint, votes and induction.

They sit above `cai.judge` (which itself reads `cai.constitution`), so the constitution's
data model and loading never depend on the judge.

- `casetest`: `cai constitution test`, expected verdicts checked against a real judge;
- `lint` and `lintreport`: `cai constitution lint`, static checks of the file, and findings
  from judgments it made (`votes`) and human labels of the same pairs;
- `induce`: `cai constitution induce`, principles learned from human preference pairs;
- `similarity`: the text similarity that near-duplicate lint and induction share.
"""
