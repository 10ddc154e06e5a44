"""vLLM's offline `LLM` engine behind cai's Backend interface.

The engine batches everything it is given, so each method hands vLLM the whole list at
once. Prompts go in as token ids built by `cai.backends.tokens`, so the offline engine, the
server and transformers score the identical sequence, and a message content that spells a
control token (`<|im_end|>`) reaches the engine as text, never as that token. Choice
scoring asks vLLM for the raw full-vocabulary log-probs of exactly the choice tokens
(`logprob_token_ids`) at one greedy step; the engine runs in float32 unless told otherwise,
because bf16 quantises log-probs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai.backends.base import (
    Backend,
    BackendError,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
)
from cai.backends.local import LocalBackend, check_model_path
from cai.backends.shared import shared_backend
from cai.backends.tokens import (
    batch_request_prompt_ids,
    check_context,
    choice_token_ids,
    hf_encoder,
)
from cai.logs import engine_output_to_log
from cai.model_names import model_identity
from cai.platform import prepare_vllm_env

_FINISH = {"stop": "stop", "length": "length"}

# What vLLM reports as the model dtype for each dtype setting a local engine is given.
_ENGINE_DTYPES = {
    "float32": "float32",
    "float": "float32",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
}

ENGINES_STARTED = 0
"""vLLM engines this process has started (tests check that resumed work starts none)."""


class VLLMOfflineBackend(LocalBackend):
    """An in-process vLLM engine; pass `engine=` to wrap one that already exists."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "float32",
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        pipeline_parallel_size: int = 1,
        enforce_eager: bool = False,
        gpu_memory_utilization: float | None = None,
        seed: int = 0,
        engine: Any | None = None,
        model_id: str | None = None,
        show_progress: bool = True,
    ) -> None:
        self.show_progress = show_progress
        if engine is None:
            check_model_path(model)

            prepare_vllm_env()
            from vllm import LLM

            kwargs: dict[str, Any] = dict(
                dtype=dtype,
                tensor_parallel_size=tensor_parallel_size,
                pipeline_parallel_size=pipeline_parallel_size,
                enforce_eager=enforce_eager,
                enable_prefix_caching=True,
                seed=seed,
                use_tqdm_on_load=show_progress,
            )
            if max_model_len:
                kwargs["max_model_len"] = max_model_len
            if revision:
                kwargs.update(revision=revision, tokenizer_revision=revision)
            if gpu_memory_utilization is not None:
                kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            global ENGINES_STARTED
            ENGINES_STARTED += 1
            try:
                with engine_output_to_log():
                    engine = LLM(model, **kwargs)
            except (OSError, ValueError) as err:
                raise BackendError(f"vLLM could not load model {model!r}: {err}") from err
            self._owns_engine = True
        else:
            self._owns_engine = False
        self.engine = engine
        self.tokenizer = engine.get_tokenizer()
        self._encode = hf_encoder(self.tokenizer)
        self.max_model_len = engine.llm_engine.model_config.max_model_len
        engine_dtype = str(engine.llm_engine.model_config.dtype).replace("torch.", "")
        if model_id is None:
            model_id = f"vllm:{model_identity(model, revision)}:{engine_dtype}"
        self.model_id = model_id

    # generation -----------------------------------------------------------------------
    def _sampling_params(self, params: GenerationParams):
        """Fresh per request (skip_clone spares vLLM a deep copy of a shared one)."""
        from vllm import SamplingParams

        return SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
            seed=params.seed,
            skip_clone=True,
        )

    def _generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Generation]:
        if not prompts:
            return []
        check_context([len(p) for p in prompts], params.max_tokens, self.max_model_len)
        from vllm.inputs import TokensPrompt

        outputs = self.engine.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompts],
            [self._sampling_params(params) for _ in prompts],
            use_tqdm=self.show_progress and len(prompts) > 1,
        )
        results = []
        for ids, out in zip(prompts, outputs, strict=True):
            completions = sorted(out.outputs, key=lambda c: c.index)
            results.append(
                Generation(
                    texts=[c.text for c in completions],
                    finish_reasons=[
                        _FINISH.get(c.finish_reason or "", "error") for c in completions
                    ],
                    prompt_tokens=len(ids),
                    completion_tokens=[len(c.token_ids) for c in completions],
                )
            )
        return results

    # scoring --------------------------------------------------------------------------
    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        """Scores of the label tokens at one greedy step, the whole batch in one engine call."""
        if not requests:
            return []
        ids_by_choices: dict[tuple[str, ...], list[int]] = {}
        for request in requests:
            if request.choices not in ids_by_choices:
                ids_by_choices[request.choices] = choice_token_ids(self._encode, request.choices)
        choice_ids = [ids_by_choices[r.choices] for r in requests]
        outputs = self._score_outputs(requests, choice_ids)
        scores = []
        for request, ids, out in zip(requests, choice_ids, outputs, strict=True):
            step = out.outputs[0].logprobs[0]
            missing = [i for i in ids if i not in step]
            if missing:
                raise BackendError(
                    f"vLLM returned no log-prob for choice token ids {missing}; "
                    "this vLLM build may not support logprob_token_ids."
                )
            scores.append(
                ChoiceScore.from_logprobs(
                    request.choices,
                    [float(step[i].logprob) for i in ids],
                    len(out.prompt_token_ids) if out.prompt_token_ids is not None else None,
                )
            )
        return scores

    def _score_outputs(self, requests: list[ChoiceRequest], choice_ids: list[list[int]]):
        """The engine's outputs for `requests`, in order."""
        prompts = self._checked_ids(requests)
        return self.engine.generate(
            _token_prompts(prompts),
            _score_params(choice_ids),
            use_tqdm=self.show_progress and len(prompts) > 1,
        )

    def _checked_ids(self, requests: list[ChoiceRequest]) -> list[list[int]]:
        """Prompt token ids; a prompt past the context is refused before the engine sees it."""
        prompts = batch_request_prompt_ids(self.tokenizer, requests)
        check_context([len(p) for p in prompts], 1, self.max_model_len)
        return prompts

    def close(self) -> None:
        if self._owns_engine and self.engine is not None:
            engine, self.engine = self.engine, None
            # Dropping the reference alone left the engine's processes (and their memory)
            # running until this process exited whenever anything else still held the LLM,
            # as in `cai loop`, where each stage's engines then outlived it: stop them here.
            core = getattr(getattr(engine, "llm_engine", None), "engine_core", None)
            if core is not None:
                core.shutdown()
            del engine
            import gc

            gc.collect()


def shared_vllm_backend(model: str, *, revision: str | None = None, **settings: Any) -> Backend:
    """A vLLM backend that starts its engine on first use, shared by every caller in this
    process that names the same model and engine settings (`cai.backends.shared`).

    `settings` are VLLMOfflineBackend's keyword arguments. The model path is checked now, so
    a wrong path fails before any work; the engine starts on the first batch.
    """
    check_model_path(model)
    engine_dtype = _ENGINE_DTYPES.get(str(settings.get("dtype", "float32")))
    if engine_dtype is None:  # a dtype only the engine can resolve: build it now
        return VLLMOfflineBackend(model, revision=revision, **settings)

    model_id = f"vllm:{model_identity(model, revision)}:{engine_dtype}"
    path = Path(model).expanduser()
    where = str(path.resolve()) if path.is_dir() else model
    engine_settings = {k: v for k, v in settings.items() if k != "show_progress"}
    engine_settings["dtype"] = engine_dtype
    key = ("vllm", where, revision, tuple(sorted(engine_settings.items())))
    return shared_backend(
        key, lambda: VLLMOfflineBackend(model, revision=revision, **settings), model_id
    )


def _token_prompts(prompts: list[list[int]]) -> list:
    from vllm.inputs import TokensPrompt

    return [TokensPrompt(prompt_token_ids=ids) for ids in prompts]


def _score_params(choice_ids: list[list[int]]) -> list:
    """One greedy step with the raw log-probs of exactly the label tokens.

    A fresh SamplingParams per request with skip_clone: vLLM would otherwise deep-copy a
    shared one for every request, which costs more than the forward pass on small models."""
    from vllm import SamplingParams

    return [
        SamplingParams(
            max_tokens=1,
            temperature=0.0,
            logprobs=len(ids),
            logprob_token_ids=list(ids),
            detokenize=False,  # only the label log-probs are read
            skip_clone=True,
        )
        for ids in choice_ids
    ]
