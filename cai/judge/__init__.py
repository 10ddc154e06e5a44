"""AI judgments: pairwise and k-wise preference labels, and parsing of judge output."""
