"""Tiny, random, fully local models: no hub, deterministic for a seed.

Tests, benchmarks and users who want to try `cai` without downloading anything build a
small Llama policy, a matching sequence-classification reward model and a byte-level BPE
tokenizer trained on the fly, all saved as ordinary Hugging Face directories that
transformers, vLLM and TRL load like any real checkpoint.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_WORDS = (
    "the a an and or but if then because so of to in on for with as by from at about into over "
    "after before under between without is are was were be been being have has had do does did "
    "can could will would should may might must not no yes i you he she it we they me him her us "
    "them my your his its our their this that these those what which who whom whose when where why "
    "how all any both each few more most other some such only own same than too very just also "
    "answer question response assistant human user model helpful harmless honest safe unsafe "
    "harmful ethical legal illegal advice explain describe help please thank sorry cannot should "
    "better worse best worst choose option principle critique revise revision request identify "
    "ways specific dangerous toxic racist sexist polite kind accurate true false clear concise "
    "medical doctor health drug dose pain symptom risk emergency call professional information "
    "people person child friend family time day year work school home world life water food "
    "money car computer code python write read make take give get know think say tell ask "
    "want need use find feel try leave call good new first last long great little old big high "
    "small large next early young important public bad able "
).split()


@dataclass(frozen=True)
class TinySpec:
    """Shape of a tiny model. head_dim must be >= 32: vLLM's CPU attention refuses smaller."""

    vocab_size: int = 1024
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_hidden_layers: int = 2
    intermediate_size: int = 256
    max_position_embeddings: int = 2048
    seed: int = 0

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def _corpus(seed: int, n_lines: int = 3000) -> list[str]:
    """Deterministic pseudo-English used to train the tokenizer."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 16))]
        sentence = " ".join(words).capitalize() + rng.choice([".", "?", "!", ","])
        if rng.random() < 0.2:
            sentence = f"({rng.choice('ABCD')}) {sentence} {rng.randint(0, 999)}"
        lines.append(sentence)
    return lines


def build_tokenizer(out_dir: str | Path, spec: TinySpec = TinySpec()):
    """Train a byte-level BPE tokenizer with a ChatML template and save it to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(spec.seed), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        chat_template=CHATML_TEMPLATE,
    )
    fast.padding_side = "left"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def _saved_tokenizer(out: Path, spec: TinySpec, tokenizer):
    if tokenizer is None:
        return build_tokenizer(out, spec)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return tokenizer


def _llama_config(spec: TinySpec, tokenizer, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        num_hidden_layers=spec.num_hidden_layers,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=spec.max_position_embeddings,
        head_dim=spec.head_dim,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        torch_dtype="float32",
        **extra,
    )


def build_tiny_causal_lm(out_dir: str | Path, spec: TinySpec = TinySpec(), tokenizer=None) -> Path:
    """Build and save a random Llama causal LM plus its tokenizer; returns the directory.
    `tokenizer`: one `build_tokenizer` already trained for this spec, saved instead of
    training it again (a test session trains it once for all its models)."""
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    out = Path(out_dir)
    tokenizer = _saved_tokenizer(out, spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(_llama_config(spec, tokenizer)).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(out)
    _write_manifest(out, "causal-lm", spec)
    return out


def build_tiny_reward_model(
    out_dir: str | Path, spec: TinySpec = TinySpec(), tokenizer=None
) -> Path:
    """Build and save a random Llama sequence-classification reward model (one score);
    `tokenizer` as in `build_tiny_causal_lm`."""
    import torch
    from transformers import LlamaForSequenceClassification

    out = Path(out_dir)
    tokenizer = _saved_tokenizer(out, spec, tokenizer)
    torch.manual_seed(spec.seed + 1)
    model = LlamaForSequenceClassification(_llama_config(spec, tokenizer, num_labels=1))
    model.to(torch.float32).save_pretrained(out)
    _write_manifest(out, "reward-model", spec)
    return out


def _write_manifest(out: Path, kind: str, spec: TinySpec) -> None:
    (out / "cai_tiny.json").write_text(json.dumps({"kind": kind, **asdict(spec)}, indent=2))
