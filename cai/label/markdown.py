"""A small, escape-first Markdown renderer for the labelling page.

Safety by construction: every piece of text from the data goes through `html.escape` before
anything else, and the renderer only ever adds its own fixed tags around escaped text. The
only attribute built from data is the `href` of a link, and only for `http://` / `https://`
URLs (escaped, quoted). A response holding `<script>` or `<img onerror=...>` is therefore
shown as those characters and never becomes markup.

Supported: fenced code blocks (``` or ~~~, with a language name), `inline code`, headings,
paragraphs (line breaks and indentation kept), bullet and numbered lists, block quotes,
pipe tables, horizontal rules, **bold**, *italic*, ~~strike~~ and [links](https://...).
Anything else is shown as the text it is.
"""

from __future__ import annotations

import html
import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([A-Za-z0-9_+#.-]*)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_RULE = re.compile(r"^ {0,3}([-*_])(\s*\1){2,}\s*$")
_BULLET = re.compile(r"^ {0,3}[-*+]\s+(.*)$")
_NUMBER = re.compile(r"^ {0,3}(\d{1,9})[.)]\s+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>\s?(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_LINK = re.compile(r"\[([^\]\n]{1,500})\]\((https?://[^\s()<>]{1,2000})\)")
_BOLD = re.compile(r"\*\*(?=\S)([^<>\n]+?)(?<=\S)\*\*")
_BOLD_U = re.compile(r"(?<!\w)__(?=\S)([^<>\n]+?)(?<=\S)__(?!\w)")
_ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*<>\n]+?)(?<=\S)\*(?![\w*])")
_ITALIC_U = re.compile(r"(?<![\w_])_(?=\S)([^_<>\n]+?)(?<=\S)_(?![\w_])")
_STRIKE = re.compile(r"~~(?=\S)([^~<>\n]+?)(?<=\S)~~")
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
MAX_QUOTE_DEPTH = 4


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def inline(text: str) -> str:
    """One line (or cell) of text as HTML: escaped, then code spans, links and emphasis."""
    kept: list[str] = []

    def keep(fragment: str) -> str:
        kept.append(fragment)
        return f"\x00{len(kept) - 1}\x00"

    parts = []
    last = 0
    for match in _CODE_SPAN.finditer(text):
        parts.append(escape(text[last : match.start()]))
        parts.append(keep(f"<code>{escape(match.group(2).strip(' ') or match.group(2))}</code>"))
        last = match.end()
    parts.append(escape(text[last:]))
    out = "".join(parts)
    out = _LINK.sub(
        lambda m: keep(
            f'<a href="{m.group(2)}" rel="noopener noreferrer nofollow" target="_blank">'
            f"{m.group(1)}</a>"
        ),
        out,
    )
    out = _BOLD.sub(r"<strong>\1</strong>", out)
    out = _BOLD_U.sub(r"<strong>\1</strong>", out)
    out = _ITALIC.sub(r"<em>\1</em>", out)
    out = _ITALIC_U.sub(r"<em>\1</em>", out)
    out = _STRIKE.sub(r"<del>\1</del>", out)
    for _ in range(3):  # a link's text may hold a code span
        out = _PLACEHOLDER.sub(lambda m: kept[int(m.group(1))], out)
    return out


def _cells(line: str) -> list[str]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|") and not text.endswith("\\|"):
        text = text[:-1]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", text)]


def _table(header: str, rows: list[str]) -> str:
    head = "".join(f'<th scope="col">{inline(c)}</th>' for c in _cells(header))
    body = "".join(
        "<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _is_table_start(lines: list[str], i: int) -> bool:
    return (
        "|" in lines[i]
        and i + 1 < len(lines)
        and "-" in lines[i + 1]
        and bool(_TABLE_RULE.match(lines[i + 1]))
        and len(_cells(lines[i])) == len(_cells(lines[i + 1]))
    )


def _starts_block(lines: list[str], i: int) -> bool:
    line = lines[i]
    return bool(
        _FENCE.match(line)
        or _HEADING.match(line)
        or _RULE.match(line)
        or _BULLET.match(line)
        or _NUMBER.match(line)
        or _QUOTE.match(line)
        or _is_table_start(lines, i)
    )


Block = tuple[str, int]
"""A block's HTML and the index of the line after it."""


def _fenced(lines: list[str], i: int, depth: int) -> Block | None:
    fence = _FENCE.match(lines[i])
    if not fence:
        return None
    marker, lang = fence.group(1), fence.group(2)
    body: list[str] = []
    i += 1
    while i < len(lines):
        close = lines[i].strip()
        if close.startswith(marker[0] * len(marker)) and not close.strip(marker[0]):
            i += 1
            break
        body.append(lines[i])
        i += 1
    label = f' class="language-{escape(lang)}"' if lang else ""
    tag = f' data-lang="{escape(lang)}"' if lang else ""
    return f"<pre{tag}><code{label}>{escape(chr(10).join(body))}</code></pre>", i


def _heading(lines: list[str], i: int, depth: int) -> Block | None:
    heading = _HEADING.match(lines[i])
    if not heading:
        return None
    level = min(6, len(heading.group(1)) + 2)  # the page's own headings are h1-h2
    return f"<h{level}>{inline(heading.group(2))}</h{level}>", i + 1


def _rule(lines: list[str], i: int, depth: int) -> Block | None:
    return ("<hr>", i + 1) if _RULE.match(lines[i]) else None


def _table_block(lines: list[str], i: int, depth: int) -> Block | None:
    if not _is_table_start(lines, i):
        return None
    header = lines[i]
    i += 2
    rows = []
    while i < len(lines) and lines[i].strip() and "|" in lines[i]:
        rows.append(lines[i])
        i += 1
    return _table(header, rows), i


def _quote(lines: list[str], i: int, depth: int) -> Block | None:
    if not _QUOTE.match(lines[i]):
        return None
    inner = []
    while i < len(lines) and (m := _QUOTE.match(lines[i])):
        inner.append(m.group(1))
        i += 1
    if depth >= MAX_QUOTE_DEPTH:
        content = "<p>" + escape("\n".join(inner)) + "</p>"
    else:
        content = "".join(_blocks(inner, depth + 1))
    return f"<blockquote>{content}</blockquote>", i


def _list(lines: list[str], i: int, depth: int) -> Block | None:
    line = lines[i]
    if not (_BULLET.match(line) or _NUMBER.match(line)):
        return None
    ordered = bool(_NUMBER.match(line)) and not _BULLET.match(line)
    pattern = _NUMBER if ordered else _BULLET
    items: list[list[str]] = []
    start = _NUMBER.match(line).group(1) if ordered else None
    while i < len(lines):
        current = lines[i]
        match = pattern.match(current)
        if match:
            items.append([match.group(match.lastindex)])
            i += 1
        elif current.strip() and current.startswith((" ", "\t")) and items:
            items[-1].append(current.strip())
            i += 1
        else:
            break
    body = "".join(f"<li>{inline(chr(10).join(item))}</li>" for item in items)
    if not ordered:
        return f"<ul>{body}</ul>", i
    first = int(start)
    attr = f' start="{first}"' if first != 1 else ""
    return f"<ol{attr}>{body}</ol>", i


def _paragraph(lines: list[str], i: int, depth: int) -> Block:
    paragraph = [lines[i]]
    i += 1
    while i < len(lines) and lines[i].strip() and not _starts_block(lines, i):
        paragraph.append(lines[i])
        i += 1
    return f"<p>{inline(chr(10).join(paragraph))}</p>", i


_BLOCK_READERS = (_fenced, _heading, _rule, _table_block, _quote, _list)
"""Tried in this order on a block's first line; a line none of them takes starts a paragraph."""


def _blocks(lines: list[str], depth: int) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block = next(
            (found for read in _BLOCK_READERS if (found := read(lines, i, depth))), None
        ) or _paragraph(lines, i, depth)
        out.append(block[0])
        i = block[1]
    return out


def render_markdown(text: str) -> str:
    """Markdown text as safe HTML (see the module docstring)."""
    text = str(text).replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd")
    return "".join(_blocks(text.split("\n"), 0))
