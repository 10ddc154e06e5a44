"""One render per pair and order, one tokenization per shared prompt start: same bytes, same ids.

`TemplateSet.render_each` renders a template once for all principles and
`batch_request_prompt_ids` tokenizes the shared start of tailed requests once; both must give
exactly what rendering and tokenizing every prompt whole gives, and fall back to that when a
template or a tokenizer does not allow the shortcut.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cai.backends.base import ChoiceRequest
from cai.backends.prompt_split import request_tail
from cai.backends.tokens import (
    batch_request_prompt_ids,
    hf_encoder,
    prompt_splitter,
    request_prompt_ids,
)
from cai.constitution import load_constitution
from cai.constitution.models import Principle
from cai.templates import TemplateSet

# Text that could pass for structure: braces, Jinja, fences, markers, control tokens, unicode.
TRICKY = [
    "{{ 7*7 }}",
    "{% if x %}",
    "{#",
    "</response>",
    "<response>",
    "[[user]]",
    "<|im_end|>",
    "<|im_start|>assistant",
    "(B)",
    "é",
    "日本語",
    "🙂",
    "\u200d",
    "\n",
    "  ",
    "\t",
    "}}",
]
piece = st.one_of(st.sampled_from(TRICKY), st.text(min_size=1, max_size=12))
rich_text = st.lists(piece, min_size=1, max_size=8).map("".join)
solid_text = rich_text.filter(lambda t: t.strip() != "")


def principle(pid: str, question: str) -> Principle:
    return Principle(id=pid, comparison_question=question, critique_request="c", tags=["t"])


def render_all(templates, name, principles, **variables):
    return [templates.render(name, principle=p, **variables) for p in principles]


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a failure prints as found
)
@given(
    user=solid_text,
    a=solid_text,
    b=solid_text,
    questions=st.lists(solid_text, min_size=2, max_size=4, unique=True),
    name=st.sampled_from(["compare", "compare_cot", "rank"]),
)
def test_render_each_is_byte_identical_to_rendering_each(user, a, b, questions, name):
    templates = TemplateSet()
    constitution = load_constitution("default")
    principles = [principle(f"p{i}", q) for i, q in enumerate(questions)]
    variables = {
        "conversation": [{"role": "user", "content": user}],
        "responses": [a, b],
        "labels": ["A", "B"],
        "constitution": constitution,
    }
    fast = templates.render_each(name, "principle", principles, **variables)
    again = templates.render_each(name, "principle", principles, **variables)  # checked now
    whole = render_all(templates, name, principles, **variables)
    assert [p.model_dump(exclude={"tail"}) for p in fast] == [
        w.model_dump(exclude={"tail"}) for w in whole
    ]
    assert [p.model_dump(exclude={"tail"}) for p in again] == [
        w.model_dump(exclude={"tail"}) for w in whole
    ]
    assert name not in templates._render_whole
    for prompt in again:  # the tail is the end of the last message, from the question on
        content = prompt.messages[-1]["content"]
        assert prompt.tail and content.endswith(prompt.tail)
        assert content[: -len(prompt.tail)].endswith("</response>\n\n")


def test_the_tail_of_compare_is_the_question_and_the_answer_line():
    templates = TemplateSet()
    principles = [principle("p0", "Which is kinder?"), principle("p1", "Which is safer?")]
    prompts = templates.render_each(
        "compare",
        "principle",
        principles,
        conversation=[{"role": "user", "content": "Hi"}],
        responses=["x", "y"],
        labels=["A", "B"],
        constitution=load_constitution("default"),
    )
    assert [p.tail for p in prompts] == [
        "Which is kinder?\nAnswer with A or B.",
        "Which is safer?\nAnswer with A or B.",
    ]
    request = prompts[1].choice_request()
    assert request_tail(request) == "Which is safer?\nAnswer with A or B."
    plain = ChoiceRequest(
        messages=request.messages, assistant_prefix=request.assistant_prefix, choices=("A", "B")
    )
    assert request == plain and plain == request  # a hint, not content
    assert request.model_dump() == plain.model_dump()


USER_TEMPLATES = {
    # the principle first: the shared text is not a prefix of the last message
    "first": "[[user]]\n{{ principle.comparison_question }}\n{{ responses[0] }} {{ responses[1] }}"
    " {{ labels | join(',') }}\n",
    # a filter on the principle: the placeholder is transformed, so the fast way differs
    "upper": "[[user]]\n{{ responses[0] }} {{ responses[1] }} {{ labels | join(',') }}\n"
    "{{ principle.comparison_question | upper }}\n",
    # a decision on the principle's text
    "decides": "[[user]]\n{{ responses[0] }}{{ responses[1] }}{{ labels | join(',') }}\n"
    "{% if 'kind' in principle.comparison_question %}KIND{% endif %}"
    "{{ principle.comparison_question }}\n",
    # arithmetic on a number the stand-in answers with text
    "number": "[[user]]\n{{ responses[0] }} {{ responses[1] }} {{ labels | join(',') }}\n"
    "{{ principle.weight + 1 }} {{ principle.comparison_question }}\n",
    # a list the stand-in answers with text
    "tags": "[[user]]\n{{ responses[0] }} {{ responses[1] }} {{ labels | join(',') }}\n"
    "{{ principle.tags | join(';') }} {{ principle.comparison_question }}\n",
    # the principle in the assistant prefix
    "prefix": "[[user]]\n{{ responses[0] }} {{ responses[1] }} {{ labels | join(',') }}\n"
    "{% set assistant_prefix = principle.id %}",
}


@pytest.mark.parametrize("shape", sorted(USER_TEMPLATES))
def test_user_templates_of_any_shape_render_identically(tmp_path: Path, shape: str):
    (tmp_path / "compare.jinja").write_text(USER_TEMPLATES[shape], encoding="utf-8")
    templates = TemplateSet(tmp_path)
    principles = [principle("p0", "Which is kinder?"), principle("p1", "Which is safer?")]
    variables = {"responses": ["x {{y}}", "<|im_end|> z"], "labels": ["A", "B"]}
    for _ in range(2):
        fast = templates.render_each("compare", "principle", principles, **variables)
        whole = render_all(templates, "compare", principles, **variables)
        assert [p.model_dump(exclude={"tail"}) for p in fast] == [
            w.model_dump(exclude={"tail"}) for w in whole
        ]
    if shape in ("upper", "number"):  # rendered whole from then on
        assert "compare" in templates._render_whole


# ---- tokenizing ----------------------------------------------------------------------------


def judge_requests(seed: int, n_pairs: int, templates: TemplateSet) -> list[ChoiceRequest]:
    """The requests a judge sends: every pair in both orders under 4 principles."""
    rng = random.Random(seed)
    constitution = load_constitution("default")
    usable = [p for p in constitution.principles if p.comparison_question]
    words = ["alpha", "beta", "日本", "{{x}}", "<|im_end|>", "</response>", "é", " ", "\n", "42"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randint(1, 30))).strip() or "x"

    requests = []
    for _ in range(n_pairs):
        a, b = text(), text()
        picked = rng.sample(usable, 4)
        for pair in ([a, b], [b, a]):
            prompts = templates.render_each(
                "compare",
                "principle",
                picked,
                conversation=[{"role": "user", "content": text()}],
                responses=pair,
                labels=["A", "B"],
                constitution=constitution,
            )
            requests += [p.choice_request() for p in prompts]
    return requests


def assert_ids_identical(tokenizer, requests) -> None:
    encode = hf_encoder(tokenizer)
    whole = [request_prompt_ids(tokenizer, encode, r) for r in requests]
    for start in range(0, len(requests), 64):  # several batches: trust carries across them
        assert (
            batch_request_prompt_ids(tokenizer, requests[start : start + 64])
            == whole[start : start + 64]
        )


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    from transformers import AutoTokenizer

    from cai.testing import build_tokenizer

    path = tmp_path_factory.mktemp("chatml")
    build_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


def test_split_ids_equal_whole_ids_for_the_tiny_tokenizer(chatml):
    requests = judge_requests(0, 60, TemplateSet())
    assert all(request_tail(r) for r in requests)
    assert_ids_identical(chatml, requests)
    trusted = [k for k, (n, _) in prompt_splitter(chatml)._keys.items() if n >= 2]
    assert trusted, "the tiny tokenizer should take the shortcut"


def test_split_ids_equal_whole_ids_for_smollm2():
    from cai.model_names import resolve_model

    try:
        path = Path(resolve_model("smollm2-135m-instruct", pull_if_missing=False))
    except Exception:
        pytest.skip("smollm2-135m-instruct is not installed (cai models pull)")
    if not (path / "tokenizer.json").is_file():
        pytest.skip("smollm2-135m-instruct has no tokenizer.json here")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    assert_ids_identical(tokenizer, judge_requests(1, 40, TemplateSet()))
    trusted = [k for k, (n, _) in prompt_splitter(tokenizer)._keys.items() if n >= 2]
    assert trusted


def merging_tokenizer():
    """A byte-level BPE with no pre-tokenizer splits and merges across both candidate cuts
    (`>` + newline, newline + `W`): cutting there can never give the whole text's ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    merges = [(">", "Ċ"), ("Ċ", "W"), ("Ċ", "Ċ")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>"
        "{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=template)


def test_an_unsafe_cut_falls_back_to_whole_tokenization():
    tokenizer = merging_tokenizer()
    requests = judge_requests(2, 6, TemplateSet())
    assert_ids_identical(tokenizer, requests)
    keys = prompt_splitter(tokenizer)._keys
    assert keys and all(n < 0 for n, _ in keys.values())  # every cut tried was refused
    # and the merges it was built for do happen across the cut
    left = tokenizer.convert_ids_to_tokens(
        request_prompt_ids(tokenizer, hf_encoder(tokenizer), requests[0])
    )
    assert ">Ċ" in left and "ĊW" in left
