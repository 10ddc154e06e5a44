"""transformers on the local device: exact log-probs from a forward pass; the CPU fallback.

Slower than vLLM but needs nothing beyond torch. Each scoring request is one forward pass
over exactly the token sequence `cai.backends.tokens` defines (no padding, so no position
shift), which makes it the reference the vLLM backends are checked against. Message contents
are tokenized there as text: no content can become a control token.
"""

from __future__ import annotations

from typing import Any

from cai.backends.base import (
    BackendError,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
)
from cai.backends.local import LocalBackend, check_model_path
from cai.backends.tokens import (
    check_context,
    choice_token_ids,
    hf_encoder,
    request_prompt_ids,
)
from cai.model_names import model_identity


def _pick_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend(LocalBackend):
    """A causal LM loaded with transformers."""

    def __init__(
        self,
        model: str,
        *,
        revision: str | None = None,
        dtype: str = "float32",
        device: str = "auto",
        model_id: str | None = None,
        show_progress: bool = True,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        check_model_path(model)
        self.device = _pick_device(device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, revision=revision)
            self.model = AutoModelForCausalLM.from_pretrained(
                model, revision=revision, dtype=getattr(torch, dtype)
            )
        except (OSError, ValueError) as err:
            raise BackendError(f"transformers could not load model {model!r}: {err}") from err
        self.model.to(self.device).eval()
        self._encode = hf_encoder(self.tokenizer)
        self.max_model_len = getattr(self.model.config, "max_position_embeddings", None)
        self.show_progress = show_progress
        self.model_id = model_id or f"transformers:{model_identity(model, revision)}:{dtype}"

    def _progress(self, items: list, desc: str):
        if self.show_progress and len(items) > 1:
            from tqdm.auto import tqdm

            return tqdm(items, desc=desc, leave=False)
        return items

    # generation -----------------------------------------------------------------------
    def _generate_one(self, ids: list[int], params: GenerationParams) -> Generation:
        import torch

        input_ids = torch.tensor([ids], device=self.device)
        kwargs: dict[str, Any] = dict(
            max_new_tokens=params.max_tokens,
            num_return_sequences=params.n,
            pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            attention_mask=torch.ones_like(input_ids),
        )
        if params.temperature > 0:
            kwargs.update(do_sample=True, temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(do_sample=False)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.random.fork_rng(devices=[] if self.device == "cpu" else None):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            with torch.inference_mode():
                out = self.model.generate(input_ids, **kwargs)
        texts, reasons, lengths = [], [], []
        eos = self.tokenizer.eos_token_id
        for row in out[:, len(ids) :].tolist():
            if eos is not None and eos in row:
                generated = row.index(eos) + 1  # the EOS counts as generated, as in vLLM
                row = row[: generated - 1]
                reason = "stop"
            else:
                pad = self.tokenizer.pad_token_id
                generated = len(row) if pad in (None, eos) else len([t for t in row if t != pad])
                reason = "length" if generated >= params.max_tokens else "stop"
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            for stop in params.stop:
                if stop in text:
                    text, reason = text[: text.index(stop)], "stop"
            texts.append(text)
            reasons.append(reason)
            lengths.append(generated)
        return Generation(
            texts=texts, finish_reasons=reasons, prompt_tokens=len(ids), completion_tokens=lengths
        )

    def _generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Generation]:
        check_context([len(p) for p in prompts], params.max_tokens, self.max_model_len)
        return [self._generate_one(ids, params) for ids in self._progress(prompts, "generate")]

    # scoring --------------------------------------------------------------------------
    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        import torch

        prompts = [request_prompt_ids(self.tokenizer, self._encode, r) for r in requests]
        check_context([len(p) for p in prompts], 1, self.max_model_len)
        choice_ids = [choice_token_ids(self._encode, r.choices) for r in requests]
        scores = []
        for request, ids, choices in zip(
            requests, self._progress(prompts, "score"), choice_ids, strict=True
        ):
            with torch.inference_mode():
                logits = self.model(torch.tensor([ids], device=self.device)).logits[0, -1]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            scores.append(
                ChoiceScore.from_logprobs(
                    request.choices, [float(logprobs[i]) for i in choices], len(ids)
                )
            )
        return scores

    def close(self) -> None:
        self.model = None
