"""Where the bundled `constitutions/` and `prompts/` directories live.

They sit at the repository root next to the `cai` package, which is where an editable
install (and a source checkout) finds them; a wheel installs them as data files under
`<prefix>/share/cai/`. `CAI_RESOURCES_DIR` points elsewhere when neither applies.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cai.errors import InputError

_ENV = "CAI_RESOURCES_DIR"


def resources_root() -> Path:
    """The directory holding `constitutions/` and `prompts/`."""
    override = os.environ.get(_ENV)
    if override:
        return Path(override).expanduser().resolve()
    source_checkout = Path(__file__).resolve().parent.parent
    if (source_checkout / "constitutions").is_dir():
        return source_checkout
    installed = Path(sys.prefix) / "share" / "cai"
    return installed if (installed / "constitutions").is_dir() else source_checkout


def _bundled(kind: str) -> Path:
    path = resources_root() / kind
    if not path.is_dir():
        raise InputError(
            f"bundled {kind}/ directory not found at {path}: cai looks for it next to the "
            f"`cai` package (an editable install or a source checkout has it); set {_ENV} to the "
            f"directory that contains {kind}/ if you installed cai another way"
        )
    return path


def constitutions_dir() -> Path:
    """The bundled constitutions (`constitutions/*.yaml`)."""
    return _bundled("constitutions")


def prompts_dir() -> Path:
    """The bundled prompt templates (`prompts/*.jinja`)."""
    return _bundled("prompts")


def bundled_constitution_names() -> list[str]:
    """Names usable wherever a constitution path is accepted (file stems, sorted)."""
    try:
        directory = constitutions_dir()
    except FileNotFoundError:
        return []
    return sorted(p.stem for p in directory.glob("*.yaml"))
