"""Chat templates rendered once per message shape: the same text as a full render, always.

`writes_contents_verbatim` must accept only templates that write contents as they are, and
`ChatRenderer` must equal the full render whatever the contents, fall back when a template
changes contents in a way the static check missed, and skip the full render once trusted.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai.backends.chat_render import CHECKS, ChatRenderer, writes_contents_verbatim
from cai.backends.tokens import chat_renderer, render_chat
from cai.testing.tiny import CHATML_TEMPLATE

VERBATIM = {
    "chatml (the tiny models')": CHATML_TEMPLATE,
    "smollm2 style": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are helpful<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "tilde joins": "{% for m in messages %}{{ m.role ~ ':' ~ m.content }}{% endfor %}",
    "a slice bound by set": (
        "{% set sys = messages[0] %}{% set rest = messages[1:] %}{{ sys['content'] }}"
        "{% for m in rest %}{{ m['content'] }}{% endfor %}"
    ),
    "first and length": "{{ (messages|first)['content'] }}{{ messages|length }}",
    "filters on the role only": "{% for m in messages %}{{ m.role|upper }}{{ m.content }}{% endfor %}",
}

TRANSFORMING = {
    "trim (llama 3 style)": (
        "{% for message in messages %}{% set content = '<|start_header_id|>' + message['role'] "
        "+ '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{{ content }}"
        "{% endfor %}"
    ),
    "a test on the content": (
        "{% for m in messages %}{% if m.content %}{{ m.content }}{% endif %}{% endfor %}"
    ),
    "captured by set": (
        "{% for m in messages %}{% set x %}{{ m.content }}{% endset %}{{ x|trim }}{% endfor %}"
    ),
    "all messages as json": "{{ messages|tojson }}",
    "get()": "{% for m in messages %}{{ m.get('content') }}{% endfor %}",
    "a macro": (
        "{% macro r(m) %}{{ m.content }}{% endmacro %}{% for m in messages %}{{ r(m) }}{% endfor %}"
    ),
    "today's date": "{{ strftime_now('%d') }}{% for m in messages %}{{ m.content }}{% endfor %}",
    "the previous message": (
        "{% for m in messages %}{{ loop.previtem.content if loop.previtem }}{{ m.content }}"
        "{% endfor %}"
    ),
    "a method of the content": "{% for m in messages %}{{ m.content.split('x')[0] }}{% endfor %}",
    "a conditional expression": (
        "{% for m in messages %}{{ m.content if m.role == 'user' else 'x' }}{% endfor %}"
    ),
    "content bound to a name": "{% set s = messages[0]['content'] %}{{ s }}",
    "a namespace": (
        "{% set ns = namespace(c='') %}{% for m in messages %}{% set ns.c = m %}"
        "{{ ns.c.content }}{% endfor %}"
    ),
    "items()": "{% for m in messages %}{% for k, v in m.items() %}{{ v }}{% endfor %}{% endfor %}",
    "a computed key": "{% for m in messages %}{% for k in m %}{{ m[k] }}{% endfor %}{% endfor %}",
    "the message itself": "{% for m in messages %}{{ m }}{% endfor %}",
    "selectattr": (
        "{% for m in messages|selectattr('role', 'eq', 'user') %}{{ m.content }}{% endfor %}"
    ),
    "a filter block": (
        "{% filter upper %}{% for m in messages %}{{ m.content }}{% endfor %}{% endfilter %}"
    ),
    "not parseable": "{% for m in messages %}",
    "an unknown tag": (
        "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}"
    ),
}


@pytest.mark.parametrize("name", list(VERBATIM))
def test_templates_that_write_contents_as_they_are_are_recognised(name):
    assert writes_contents_verbatim(VERBATIM[name])


@pytest.mark.parametrize("name", list(TRANSFORMING))
def test_templates_that_look_at_or_change_contents_are_refused(name):
    assert not writes_contents_verbatim(TRANSFORMING[name])


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    from transformers import AutoTokenizer

    from cai.testing import build_tokenizer

    path = tmp_path_factory.mktemp("chatml")
    build_tokenizer(path)
    return AutoTokenizer.from_pretrained(path)


content = st.text(st.characters(codec="utf-8"), min_size=0, max_size=40) | st.sampled_from(
    ["  padded  ", "\n\nlines\n", "<|im_end|>", "{{ x }}", "\ue000", ""]
)
role_sequences = st.sampled_from(
    [["user"], ["system", "user"], ["system", "user", "assistant", "user"], ["user", "assistant"]]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(roles=role_sequences, data=st.data())
def test_renderer_gives_the_full_render_for_any_contents(chatml, roles, data):
    messages = [{"role": r, "content": data.draw(content)} for r in roles]
    assert chat_renderer(chatml).render(messages) == render_chat(chatml, messages)


def test_trusted_shapes_skip_the_full_render(chatml):
    calls = []

    def full(messages):
        calls.append(1)
        return render_chat(chatml, messages)

    renderer = ChatRenderer(chatml.chat_template, full)
    assert renderer.verbatim
    conversations = [
        [{"role": "system", "content": f"rules {i}"}, {"role": "user", "content": f"q {i} "}]
        for i in range(10)
    ]
    texts = [renderer.render(c) for c in conversations]
    assert texts == [render_chat(chatml, c) for c in conversations]
    assert len(calls) == 1 + CHECKS  # the stand-in render, then the checks; none after


def test_a_difference_the_static_check_missed_turns_the_shortcut_off():
    """A renderer told a trimming template is verbatim: its first check sees the trimmed
    text, so every render after it is a full one (the static check is what keeps such a
    template off the shortcut; this check catches layouts that differ)."""

    def trimming(messages):
        return "".join(f"<{m['role']}>{m['content'].strip()}</>" for m in messages)

    renderer = ChatRenderer(VERBATIM["tilde joins"], trimming)
    assert renderer.verbatim
    conversations = [[{"role": "user", "content": text}] for text in [" a ", "b", " c ", "d "]]
    for conversation in conversations * 2:
        assert renderer.render(conversation) == trimming(conversation)
    shape = ((("role", "user"),),)
    assert renderer._shapes[shape] is None


def test_a_new_template_on_the_tokenizer_gets_a_new_renderer(chatml):
    messages = [{"role": "user", "content": "hi"}]
    before = chat_renderer(chatml).render(messages)
    original = chatml.chat_template
    try:
        chatml.chat_template = VERBATIM["tilde joins"]
        assert chat_renderer(chatml).render(messages) == "user:hi"
    finally:
        chatml.chat_template = original
    assert chat_renderer(chatml).render(messages) == before


def test_non_text_fields_are_rendered_in_full(chatml):
    messages = [{"role": "user", "content": "hi", "name": ["not", "text"]}]
    renderer = chat_renderer(chatml)
    assert renderer.render(messages) == render_chat(chatml, messages)
    assert not any("not" in str(shape) for shape in renderer._shapes), (
        "a shape with a list field must not be memoised"
    )
