"""README.md read with a Markdown parser (markdown-it, CommonMark): what renders as code is code,
what is meant as a heading is one."""

from __future__ import annotations

import re
from pathlib import Path

from markdown_it import MarkdownIt

README = Path(__file__).resolve().parents[1] / "README.md"


def tokens():
    return MarkdownIt("commonmark").parse(README.read_text(encoding="utf-8"))


def test_every_code_fence_is_closed():
    lines = README.read_text(encoding="utf-8").splitlines()
    for token in tokens():
        if token.type == "fence":
            start, end = token.map
            # An unclosed fence runs to the end of the document, swallowing what follows.
            assert lines[end - 1].strip().startswith(token.markup), (
                f"README.md line {start + 1}: the {token.markup}{token.info} fence is not closed")


def test_every_heading_line_is_a_heading():
    lines = README.read_text(encoding="utf-8").splitlines()
    in_fence = {i for t in tokens() if t.type in ("fence", "code_block")
                for i in range(*t.map)}
    # Level 2 to 4 (a shell block's "# comment" is not a heading); the title is line 1.
    meant = {0} | {i for i, line in enumerate(lines) if re.match(r"#{2,4} \S", line)}
    rendered = {t.map[0] for t in tokens() if t.type == "heading_open"}
    assert not meant & in_fence, [lines[i] for i in sorted(meant & in_fence)]
    assert meant == rendered


def test_python_examples_are_code():
    """Every line of the Results example (``r.…``) renders inside a code block, not as prose."""
    code = "".join(t.content for t in tokens() if t.type == "fence")
    lines = README.read_text(encoding="utf-8").splitlines()
    calls = [line.strip() for line in lines if re.match(r"r\.\w+\(", line.strip())]
    assert len(calls) >= 8
    assert all(call in code for call in calls)
