"""Engines that start only when there is work, and one engine per model and settings."""

from __future__ import annotations

import pytest

from cai.backends import BackendSpec, parse_backend_spec
from cai.backends.base import BackendError, ChoiceRequest, GenerationParams
from cai.backends.lazy import LazyBackend
from cai.backends.owned import RoleHandover
from cai.backends.scripted import ScriptedBackend
from cai.backends.shared import SharedBackend, open_entries, shared_backend


class Counted(ScriptedBackend):
    """A scripted backend that counts how often it is closed."""

    def __init__(self, model_id: str = "m") -> None:
        super().__init__(model_id=model_id)
        self.closed = 0

    def close(self) -> None:
        self.closed += 1


class Builder:
    """build() for a LazyBackend, remembering every backend it built."""

    def __init__(self, model_id: str = "m") -> None:
        self.model_id = model_id
        self.built: list[Counted] = []

    def __call__(self) -> Counted:
        self.built.append(Counted(self.model_id))
        return self.built[-1]


REQUEST = ChoiceRequest(messages=[{"role": "user", "content": "A or B?"}], choices=("A", "B"))
PARAMS = GenerationParams(n=1, max_tokens=4)


def test_lazy_builds_nothing_until_a_batch_has_work():
    build = Builder()
    lazy = LazyBackend(build, "m")
    assert lazy.model_id == "m"
    assert lazy.score_choices([]) == []
    assert lazy.generate_chat([], PARAMS) == []
    assert lazy.generate_text([], PARAMS) == []
    assert getattr(lazy, "stats", None) is None  # probing call statistics starts nothing
    assert build.built == [] and not lazy.built
    lazy.close()
    assert build.built == []


def test_lazy_builds_once_and_closes_what_it_built():
    build = Builder()
    lazy = LazyBackend(build, "m")
    assert lazy.score_choices([REQUEST, REQUEST])[0].probs == [0.5, 0.5]
    assert lazy.generate_chat([[{"role": "user", "content": "hi"}]], PARAMS)[0].texts
    assert lazy.backend().calls == {"generate": 1, "score": 2}  # forwarded to the one built backend
    assert len(build.built) == 1
    lazy.close()
    assert build.built[0].closed == 1
    with pytest.raises(BackendError, match="closed"):
        lazy.score_choices([REQUEST])


def test_lazy_refuses_an_engine_that_is_not_the_promised_model():
    build = Builder(model_id="vllm:m:bfloat16")
    lazy = LazyBackend(build, "vllm:m:float16")
    with pytest.raises(BackendError, match="bfloat16") as caught:
        lazy.score_choices([REQUEST])
    assert caught.value.key == "dtype"
    assert build.built[0].closed == 1


def test_shared_handles_use_one_backend_and_the_last_close_closes_it():
    build = Builder()
    first = shared_backend(("k", 1), build, "m")
    second = shared_backend(("k", 1), build, "m")
    other = shared_backend(("k", 2), Builder("n"), "n")
    assert first.shared is second.shared and first.shared is not other.shared
    first.score_choices([REQUEST])
    second.score_choices([REQUEST])
    assert len(build.built) == 1 and build.built[0].calls["score"] == 2
    first.close()
    first.close()  # a second close of the same handle releases nothing more
    assert build.built[0].closed == 0
    second.close()
    assert build.built[0].closed == 1
    again = shared_backend(("k", 1), build, "m")  # after the last close: a fresh backend
    again.score_choices([REQUEST])
    assert len(build.built) == 2
    again.close()
    other.close()
    assert open_entries() == 0


def _vllm_spec(model_dir, **extra) -> BackendSpec:
    return parse_backend_spec({"kind": "vllm", "model": str(model_dir), **extra})


def test_roles_naming_the_same_vllm_model_share_one_unstarted_engine(tiny_model_dir):
    from cai.backends import vllm_offline

    started = vllm_offline.ENGINES_STARTED
    with RoleHandover() as roles:
        policy = roles.next(_vllm_spec(tiny_model_dir))
        baseline = roles.next(_vllm_spec(tiny_model_dir, show_progress=True))
        judge = roles.next(_vllm_spec(tiny_model_dir, cache_path=None))
        assert isinstance(policy, SharedBackend)
        assert policy.shared is baseline.shared is judge.shared
        assert open_entries() == 1
        assert policy.model_id.startswith("vllm:") and policy.model_id.endswith(":float32")
    assert open_entries() == 0
    assert started == vllm_offline.ENGINES_STARTED  # nobody asked for work: nothing started


def test_roles_with_other_engine_settings_get_their_own_engine(tiny_model_dir):
    with RoleHandover() as roles:
        policy = roles.next(_vllm_spec(tiny_model_dir, max_model_len=512))
        baseline = roles.next(_vllm_spec(tiny_model_dir, max_model_len=1024))
        assert isinstance(policy, SharedBackend) and isinstance(baseline, SharedBackend)
        assert policy.shared is not baseline.shared
        assert open_entries() == 1  # the policy's was released when the baseline's was made
    assert open_entries() == 0


def test_a_given_backend_is_the_callers_and_a_bad_path_fails_before_any_work(tmp_path):
    given = Counted()
    with RoleHandover() as roles:
        assert roles.next(_vllm_spec(tmp_path / "nowhere"), given) is given
    assert given.closed == 0
    from cai.backends.vllm_offline import shared_vllm_backend

    with pytest.raises(BackendError, match="does not exist"):
        shared_vllm_backend(str(tmp_path / "nowhere"))
    assert open_entries() == 0
