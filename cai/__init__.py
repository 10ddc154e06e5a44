"""cai: Constitutional AI and RLAIF, from a constitution file to a trained policy."""

__version__ = "0.1.0"
