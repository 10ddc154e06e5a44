"""`--push-to-hub REPO`: a trained model's directory, card included, to a Hub repository.

The real `huggingface_hub.HfApi` client does the work (`create_repo`, then `upload_folder`,
one commit). The endpoint is read when the push happens (`HF_ENDPOINT`, else the Hub), so a
mirror or a local fake of the Hub API receives the same calls. What stays local is left out:
checkpoints (a resumed run's state, not the model), cai's logs and run lock, and
`cai_training.json` (the card's facts with this machine's paths).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel

from cai.errors import CaiError
from cai.hub import hub_endpoint, hub_offline

LOCAL_ONLY = [
    "checkpoint-*",
    "checkpoint-*/**",
    "checkpoints/**",
    "logs/**",
    ".cai.lock",
    "cai_training.json",
    "*.tmp",
]
"""upload_folder ignore patterns: what a run leaves that is not part of the model."""


_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$")


class PushError(CaiError, RuntimeError):
    """The model could not be pushed to the Hub."""


def _repo_id(value: str | None) -> str | None:
    if value is not None and (not _REPO_ID.match(value) or ".." in value):
        raise ValueError(
            f"push_to_hub {value!r} is not a Hub repository id: use owner/name (or name, "
            "for your own namespace)"
        )
    return value or None


HubRepoId = Annotated[str | None, AfterValidator(_repo_id)]
"""The `push_to_hub` setting: a repository id, checked on load (None = no push)."""


class PushResult(BaseModel):
    repo_id: str
    url: str
    commit: str | None
    private: bool
    files: list[str]


def _files(folder: Path) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    names = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
    return list(filter_repo_objects(names, ignore_patterns=LOCAL_ONLY))


def push_model(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    commit_message: str | None = None,
) -> PushResult:
    """Create `repo_id` (kept if it exists) and upload the model directory in one commit."""
    folder = Path(folder)
    if not (folder / "README.md").is_file():
        raise PushError(
            f"{folder} holds no README.md model card",
            fix="Push the directory a cai trainer saved (it writes the card with the model).",
        )
    if hub_offline():
        raise PushError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE is set",
            fix="Unset HF_HUB_OFFLINE to push, or push later with "
            f"`hf upload {repo_id} <model dir>`.",
        )
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=endpoint or hub_endpoint(), token=token)
    files = _files(folder)
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        info = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            ignore_patterns=LOCAL_ONLY,
            commit_message=commit_message or "Upload model trained with cai",
        )
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = (
            "Log in with `hf auth login` or set HF_TOKEN to a token with write access."
            if status in (401, 403)
            else "Check the repository id and your network, then push again."
        )
        raise PushError(
            f"pushing to {repo_id} failed ({str(err).splitlines()[0]})", fix=hint
        ) from None
    except (OSError, httpx2.TransportError) as err:  # refused, DNS: the Hub is not there
        raise PushError(
            f"pushing to {repo_id} failed: {api.endpoint} cannot be reached ({err})",
            fix="Check the network (or HF_ENDPOINT), then push again.",
        ) from None
    return PushResult(
        repo_id=repo_id,
        url=str(url),
        commit=getattr(info, "oid", None),
        private=private,
        files=files,
    )


def push_if_asked(folder: str | Path, repo_id: str | None, private: bool) -> PushResult | None:
    """The trainers' one call after saving: push when `push_to_hub` names a repository."""
    if not repo_id:
        return None
    return push_model(folder, repo_id, private=private)
