from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annotation.rendering import render_conversation, render_markdown, render_pair

DANGEROUS_TAGS = {
    "script",
    "iframe",
    "svg",
    "img",
    "style",
    "object",
    "embed",
    "link",
    "meta",
    "base",
    "form",
    "input",
    "button",
    "textarea",
    "frame",
    "frameset",
    "math",
    "video",
    "audio",
    "source",
    "template",
    "noscript",
}
SAFE_SCHEMES = ("http://", "https://", "mailto:")


@dataclass
class Parsed:
    tags: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    text: str = ""


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed = Parsed()

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        self.parsed.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):  # noqa: ANN001
        self.parsed.tags.append((tag, dict(attrs)))

    def handle_data(self, data):  # noqa: ANN001
        self.parsed.text += data


def parse(html: str) -> Parsed:
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.parsed


def assert_inert(html: str) -> Parsed:
    """No active content at all: the property every rendering must have."""
    parsed = parse(html)
    for tag, attrs in parsed.tags:
        assert tag not in DANGEROUS_TAGS, f"<{tag}> survived in {html!r}"
        for name, value in attrs.items():
            assert not name.startswith("on"), f"event handler {name} on <{tag}>"
            assert name not in {"style", "src", "srcset", "action", "formaction"}, name
            if name == "href":
                assert value and value.startswith(SAFE_SCHEMES), f"unsafe href {value!r}"
        if tag == "a":
            assert set((attrs.get("rel") or "").split()) >= {"noopener", "noreferrer", "nofollow"}
    return parsed


def test_it_renders_markdown():
    html = render_markdown("# Title\n\nSome **bold**, _em_ and `code`.\n\n- one\n- two")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html and "<em>em</em>" in html
    assert "<code>code</code>" in html and "<li>one</li>" in html


def test_single_newlines_are_line_breaks_as_in_chat():
    assert "line one<br>\nline two" in render_markdown("line one\nline two")


def test_script_tags_are_shown_as_text():
    html = render_markdown("Hi <script>alert(1)</script> there")
    parsed = assert_inert(html)
    assert "<script>alert(1)</script>" in parsed.text


@pytest.mark.parametrize(
    "payload",
    [
        "<img src=x onerror=alert(1)>",
        '<a href="#" onclick="alert(1)">x</a>',
        "<div onmouseover=alert(1)>hover</div>",
        "<body onload=alert(1)>",
        '<p style="background:url(javascript:alert(1))">styled</p>',
        '<span style="position:fixed;top:0">overlay</span>',
        '<iframe src="https://evil.example/"></iframe>',
        "<svg onload=alert(1)><circle r=1></svg>",
        "<svg><script>alert(1)</script></svg>",
        '<math><mi xlink:href="javascript:alert(1)">x</mi></math>',
        '<a href="http://evil.example/">a raw link</a>',
        "<object data=evil.swf></object><embed src=evil.swf>",
        '<meta http-equiv="refresh" content="0;url=https://evil.example/">',
        "<base href=https://evil.example/>",
        "<form action=https://evil.example/><button>go</button></form>",
        "<!-- <script>alert(1)</script> -->",
    ],
)
def test_raw_html_is_inert_and_shown_as_text(payload):
    parsed = assert_inert(render_markdown(payload))
    assert payload in parsed.text


@pytest.mark.parametrize(
    "link",
    [
        "[x](javascript:alert(1))",
        "[x](JaVaScRiPt:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[x](data:image/png;base64,iVBORw0KGgo=)",
        "[x](file:///etc/passwd)",
        "[x](/logout)",
        "[x](//evil.example/path)",
        "<javascript:alert(1)>",
        "[x][ref]\n\n[ref]: javascript:alert(1)",
    ],
)
def test_only_http_https_and_mailto_links_survive(link):
    parsed = assert_inert(render_markdown(link))
    hrefs = [attrs.get("href") for tag, attrs in parsed.tags if tag == "a"]
    assert all(href is None for href in hrefs)


def test_safe_links_keep_their_href_and_get_a_protective_rel():
    html = render_markdown("[docs](https://example.org/a?b=1) and <mailto:someone@example.org>")
    parsed = assert_inert(html)
    links = [attrs for tag, attrs in parsed.tags if tag == "a"]
    assert [link["href"] for link in links] == [
        "https://example.org/a?b=1",
        "mailto:someone@example.org",
    ]
    assert all(link["rel"] == "noopener noreferrer nofollow" for link in links)
    assert all(link["target"] == "_blank" for link in links)


def test_images_are_never_loaded_but_offered_as_a_link():
    html = render_markdown("![a chart](https://evil.example/pixel.png)")
    parsed = assert_inert(html)
    assert not any(tag == "img" for tag, _attrs in parsed.tags)
    assert "image: a chart, not loaded" in parsed.text
    assert ("a", "https://evil.example/pixel.png") in [
        (tag, attrs.get("href")) for tag, attrs in parsed.tags
    ]


def test_a_data_image_is_not_loaded_either():
    parsed = assert_inert(render_markdown("![x](data:image/gif;base64,R0lGODlhAQABAAAAACw=)"))
    assert not any(tag == "img" for tag, _attrs in parsed.tags)


def test_code_fences_are_highlighted_with_classes_not_styles():
    html = render_markdown("```python\ndef add(a, b):\n    return a + b\n```")
    parsed = assert_inert(html)
    assert '<code class="language-python">' in html
    assert '<span class="k">def</span>' in html
    assert '<span class="nf">add</span>' in html
    assert '<div class="code-lang">python</div>' in html
    assert "return a + b" in parsed.text


def test_a_closing_script_tag_inside_a_code_fence_stays_text():
    source = "```html\n</script><script>alert(1)</script>\n```"
    html = render_markdown(source)
    parsed = assert_inert(html)
    assert "</script><script>alert(1)</script>" in parsed.text
    assert "<script" not in html


def test_an_unknown_fence_language_is_shown_plain():
    html = render_markdown('```not-a-language onload="x"\n<b>bold?</b>\n```')
    parsed = assert_inert(html)
    assert "<b>bold?</b>" in parsed.text
    assert "<code>" in html  # no language class for an unknown lexer
    assert 'onload="x"' not in html


def test_indented_code_is_escaped():
    parsed = assert_inert(render_markdown("    <script>alert(1)</script>"))
    assert "<script>alert(1)</script>" in parsed.text


def test_class_attributes_cannot_be_forged():
    # Markdown cannot emit attributes, and the sanitiser drops classes it does not know.
    from annotation.rendering import sanitize_html

    cleaned = sanitize_html('<span class="k topbar">x</span><div class="alert">y</div>')
    assert '<span class="k">x</span>' in cleaned
    assert "topbar" not in cleaned and "alert" not in cleaned


def test_tables_render_without_inline_alignment_styles():
    html = render_markdown("| a | b |\n|--:|:--|\n| 1 | 2 |")
    assert_inert(html)
    assert "<table>" in html and "<td>1</td>" in html


def test_the_conversation_keeps_roles_and_renders_each_turn():
    turns = render_conversation(
        [
            {"role": "system", "content": "Rules"},
            {"role": "user", "content": "Hi <b>there</b>"},
            {"role": "assistant", "content": [{"type": "text", "text": "**Hello**"}]},
            {"role": "tool<script>", "content": None},
        ]
    )
    assert [(turn.role, turn.role_label) for turn in turns] == [
        ("system", "System"),
        ("user", "User"),
        ("assistant", "Assistant"),
        ("other", "tool<script>"),  # escaped by the template, never used as a class
    ]
    assert "&lt;b&gt;there&lt;/b&gt;" in turns[1].html
    assert "<strong>Hello</strong>" in turns[2].html


def test_odd_conversation_shapes_do_not_crash():
    assert render_conversation(None) == ()
    (only,) = render_conversation("just a string")
    assert only.role == "user" and "just a string" in only.html
    (odd,) = render_conversation([42])
    assert odd.role == "other" and "42" in odd.html


def test_render_pair_renders_every_part():
    rendered = render_pair(
        {
            "conversation": [{"role": "user", "content": "Q"}],
            "response_a": "<script>a</script>",
            "response_b": "*b*",
            "annotation_guideline": "",
            "task_category": "x",
        }
    )
    assert "&lt;script&gt;a&lt;/script&gt;" in rendered.response_a
    assert "<em>b</em>" in rendered.response_b
    assert rendered.guideline == ""


def test_a_huge_code_block_is_escaped_without_highlighting():
    code = "x = '<script>'\n" * 10_000
    html = render_markdown(f"```python\n{code}```")
    assert '<span class="k">' not in html
    assert "&lt;script&gt;" in html


HOSTILE_PIECES = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[x](javascript:alert(1))",
    "```",
    "```html\n",
    "</script>",
    "<svg onload=alert(1)>",
    '<a href="http://evil.example/">',
    "![i](http://evil.example/p.png)",
    "<iframe src=//evil.example>",
    "`",
    "*",
    "_",
    "\n",
    "\n\n",
    "    ",
    "> ",
    "- ",
    "| a |\n|---|\n",
    "<",
    ">",
    '"',
    "'",
    "&",
    "javascript:",
    "[",
    "](",
    ")",
    "<!--",
    "-->",
    "<style>",
    "style=",
    "onerror=",
    "data:text/html,",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(HOSTILE_PIECES), st.text(max_size=8)), max_size=25))
def test_any_mix_of_hostile_pieces_renders_inert(pieces):
    assert_inert(render_markdown("".join(pieces)))


def test_the_diff_marks_only_the_differing_token_and_escapes_everything():
    from annotation.rendering import render_diff

    html = render_diff("return n % 2 == 1 <b>", "return n % 2 == 0 <b>")
    assert html == (
        'return n % 2 == <del class="diff-a" title="only in A">1</del>'
        '<ins class="diff-b" title="only in B">0</ins> &lt;b&gt;'
    )
    assert render_diff("same\ntext", "same\ntext") == "same\ntext"
    assert "<script>" not in render_diff("<script>x</script>", "<script>y</script>")


def test_the_diff_stays_fast_on_repetitive_text_and_gives_up_on_huge_text():
    from annotation.rendering import MAX_DIFF_CHARS, render_diff

    # Cubic for difflib without its junk heuristic: minutes; bounded here.
    html = render_diff("x " * 1500, "y " * 1500)
    assert html.count("diff-a") >= 1 and html.count("diff-b") >= 1
    assert render_diff("a" * (MAX_DIFF_CHARS + 1), "b") == ""
