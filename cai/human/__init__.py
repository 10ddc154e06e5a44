"""Human preference labels: import them, measure the AI judge against them, route the pairs
the judge is unsure of to people, and mix both sources into one training set.

Every pair is identified by `pair_key(prompt, a, b)`, which ignores answer order, so an AI
row, a human row and an exported labelling item about the same two responses always match.
"""

from cai.human.pairs import pair_key, prompt_messages, response_text

__all__ = ["pair_key", "prompt_messages", "response_text"]
