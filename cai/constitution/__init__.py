"""Constitutions: the principles that AI feedback follows, loaded from YAML.

from cai.constitution import load_constitution, sample_principles
constitution = load_constitution("default")          # or a path to your own file
picked = sample_principles(constitution, key=pair_id, k=2, seed=0)
"""

from cai.constitution.errors import ConstitutionError, ConstitutionIssue
from cai.constitution.loading import (
    load_constitution,
    load_constitution_text,
    locate_constitution,
)
from cai.constitution.models import (
    Constitution,
    ConstitutionDefaults,
    FewShotExample,
    Principle,
)
from cai.constitution.sampling import sample_principles

__all__ = [
    "Constitution",
    "ConstitutionDefaults",
    "ConstitutionError",
    "ConstitutionIssue",
    "FewShotExample",
    "Principle",
    "load_constitution",
    "load_constitution_text",
    "locate_constitution",
    "sample_principles",
]
