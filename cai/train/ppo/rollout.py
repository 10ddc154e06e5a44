"""Rollout engines: turn prompt token ids into sampled response token ids.

The trainer only sees the `RolloutEngine` protocol, so the sampler can be swapped:
`TransformersRollout` calls `model.generate` on the live policy (works everywhere, nothing to
sync); `VLLMRollout` samples with a colocated vLLM engine (much faster on a GPU) and receives
the policy's new weights after every PPO step through `sync_weights`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class Rollout:
    """Sampled responses, token ids only (decoded text is the reward function's business)."""

    query_ids: list[list[int]]
    response_ids: list[list[int]]
    finished: list[bool]
    """True when the response ended with EOS (False: it hit max_new_tokens)."""
    extra: dict = field(default_factory=dict)


@runtime_checkable
class RolloutEngine(Protocol):
    def generate(
        self, queries: list[list[int]], max_new_tokens: int, temperature: float, seed: int
    ) -> Rollout:
        """Sample one response per query with the current policy weights; query i draws its
        randomness from seed `seed + i` alone, so a response does not depend on which other
        queries share the batch (or the process)."""

    def sync_weights(self, policy: nn.Module) -> None:
        """Make the engine sample from `policy`'s current weights (no-op when it shares them)."""


def cut_at_eos(tokens: list[int], eos_ids: set[int], pad_id: int | None) -> tuple[list[int], bool]:
    """Keep tokens up to and including the first EOS; drop trailing padding."""
    out: list[int] = []
    for token in tokens:
        if token in eos_ids:
            out.append(token)
            return out, True
        out.append(token)
    if pad_id is not None and pad_id not in eos_ids:
        while out and out[-1] == pad_id:
            out.pop()
    return out, False


def eos_ids_of(tokenizer, extra: int | list[int] | None = None) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(extra)
    return ids


class SeededSampler:
    """Ancestral sampling at `temperature` with one random stream per row, as a logits processor
    for `generate` in greedy mode: row i takes its t-th token by inverting the CDF of
    softmax(logits / temperature) at the t-th uniform of a CPU generator seeded with seeds[i],
    and returns scores that leave only that token (greedy decoding then picks it).

    Each response thus depends only on its prompt, its seed and the weights, not on which other
    prompts share the batch or the process: N processes holding b prompts each sample exactly
    what one process holding all N * b prompts samples (up to float rounding of the logits),
    which is what makes an N-process PPO run reproduce a one-process run with the same global
    batch. The distribution is softmax(logits / temperature) unchanged (no top-k, no top-p).
    """

    def __init__(
        self, seeds: list[int], prompt_width: int, max_new_tokens: int, temperature: float
    ) -> None:
        self.uniforms = torch.stack(
            [
                torch.rand(
                    max_new_tokens,
                    generator=torch.Generator().manual_seed(int(s) % 2**63),
                    dtype=torch.float64,
                )
                for s in seeds
            ]
        )
        self.prompt_width = prompt_width
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        t = min(input_ids.shape[1] - self.prompt_width, self.uniforms.shape[1] - 1)
        wide = torch.float32 if scores.device.type == "mps" else torch.float64
        probs = torch.softmax(scores.to(wide) / self.temperature, dim=-1)
        cdf = probs.cumsum(-1)
        u = self.uniforms[:, t].to(cdf.device, wide).unsqueeze(1) * cdf[:, -1:]
        picks = torch.searchsorted(cdf, u, right=True).clamp(max=scores.shape[-1] - 1)
        only = torch.full_like(scores, float("-inf"))
        return only.scatter_(1, picks, 0.0)


class TransformersRollout:
    """Sampling with `generate` on the policy being trained: pure ancestral sampling (no top-k,
    no top-p, so the sampled distribution is exactly the one PPO's ratio uses), one seeded
    random stream per query (`SeededSampler`)."""

    def __init__(
        self,
        tokenizer,
        policy_context: Callable[[], contextlib.AbstractContextManager[nn.Module]],
        device: torch.device,
    ) -> None:
        self.tokenizer = tokenizer
        self.policy_context = policy_context
        self.device = device

    def sync_weights(self, policy: nn.Module) -> None:
        """Nothing to do: generation runs on the live parameters."""

    @torch.no_grad()
    def generate(
        self, queries: list[list[int]], max_new_tokens: int, temperature: float, seed: int
    ) -> Rollout:
        from transformers import GenerationConfig, LogitsProcessorList

        pad_id = self.tokenizer.pad_token_id
        width = max(len(q) for q in queries)
        input_ids = torch.full((len(queries), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(queries), width), dtype=torch.long)
        for row, query in enumerate(queries):
            input_ids[row, width - len(query) :] = torch.tensor(query)
            attention[row, width - len(query) :] = 1
        sampler = SeededSampler(
            [seed + i for i in range(len(queries))], width, max_new_tokens, temperature
        )
        with self.policy_context() as policy:
            eos = eos_ids_of(self.tokenizer, policy.generation_config.eos_token_id)
            config = GenerationConfig(
                do_sample=False,  # the SeededSampler samples; greedy takes its pick
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=sorted(eos),
            )
            output = policy.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
                logits_processor=LogitsProcessorList([sampler]),
            )
        responses, finished = [], []
        for row in output[:, width:].tolist():
            tokens, done = cut_at_eos(row, eos, pad_id)
            if not tokens:  # an empty response cannot carry a reward; keep one pad token
                tokens = [pad_id]
            responses.append(tokens)
            finished.append(done)
        return Rollout(
            query_ids=[list(q) for q in queries], response_ids=responses, finished=finished
        )


class VLLMRollout:
    """Sampling with a vLLM engine colocated with training; `sync_weights` pushes the policy's
    parameters into the engine (`model.load_weights`, which maps HF names to vLLM's fused
    layers) and drops the prefix cache, whose entries were computed with the old weights.

    With the engine core in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, which
    `create_colocated_engine` sets) tensors are handed over by reference; otherwise they
    travel through a safetensors directory the engine reloads from.
    """

    def __init__(self, llm, tokenizer, sync_dir: str | None = None) -> None:
        self.llm = llm
        self.tokenizer = tokenizer
        self.sync_dir = sync_dir
        self.synced_versions = 0

    @torch.no_grad()
    def generate(
        self, queries: list[list[int]], max_new_tokens: int, temperature: float, seed: int
    ) -> Rollout:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        eos = eos_ids_of(self.tokenizer)
        params = [
            SamplingParams(
                n=1,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                max_tokens=max_new_tokens,
                seed=seed + i,
                stop_token_ids=sorted(eos),
            )
            for i in range(len(queries))
        ]
        prompts = [TokensPrompt(prompt_token_ids=list(q)) for q in queries]
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        responses, finished = [], []
        for out in outputs:
            completion = out.outputs[0]
            tokens = list(completion.token_ids)
            done = completion.finish_reason == "stop"
            if done and (not tokens or tokens[-1] not in eos):
                tokens.append(self.tokenizer.eos_token_id)
            tokens, _ = cut_at_eos(tokens, eos, None)
            if not tokens:
                tokens = [self.tokenizer.pad_token_id]
            responses.append(tokens)
            finished.append(done)
        return Rollout(
            query_ids=[list(q) for q in queries], response_ids=responses, finished=finished
        )

    def sync_weights(self, policy: nn.Module) -> None:
        """Reload the engine's weights in place through vLLM's `reload_weights` worker method,
        then drop stale prefix-cache entries.

        In-process engines get the policy's tensors by reference. An engine in another process
        cannot receive tensors through its RPC channel, so the weights go through a safetensors
        directory (`sync_dir`, rewritten on every sync) that the engine reloads from.
        """
        if self._in_process():
            weights = [(name, t.detach()) for name, t in policy.state_dict().items()]
            kwargs = {"weights_iterator": weights, "is_checkpoint_format": True}
        else:
            if self.sync_dir is None:
                import tempfile

                self.sync_dir = tempfile.mkdtemp(prefix="cai-vllm-sync-")
            policy.save_pretrained(self.sync_dir, safe_serialization=True)
            kwargs = {"weights_path": self.sync_dir, "is_checkpoint_format": True}
        self.llm.collective_rpc("reload_weights", kwargs=kwargs)
        self.llm.reset_prefix_cache()
        self.synced_versions += 1

    def _in_process(self) -> bool:
        engine = getattr(self.llm, "llm_engine", None)
        core = getattr(getattr(engine, "engine_core", None), "engine_core", None)
        return core is not None


def create_colocated_engine(
    model_path: str, gpu_memory_utilization: float, max_model_len: int, seed: int, dtype: str
):
    """A vLLM engine in this process, sharing the GPU with training (rollout_engine: vllm):
    in-process, weight syncs pass tensors by reference instead of serialising them."""
    import os

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM

    return LLM(
        model_path,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=max_model_len,
        seed=seed,
        dtype=dtype,
        enable_prefix_caching=True,
    )


@contextlib.contextmanager
def unwrapped_for_generation(accelerator, model: nn.Module) -> Iterator[nn.Module]:
    """The bare policy for `generate`; under DeepSpeed ZeRO-3 its shards are gathered first."""
    unwrapped = accelerator.unwrap_model(model)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(model.parameters())):
            yield unwrapped.policy
    else:
        yield unwrapped.policy
