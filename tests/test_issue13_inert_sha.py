"""Issue 13 point 8: a bare 40-hex commit SHA in text from a result file (a name, a message) becomes no commit
link in the PR comment; the comment's own commit stays as written."""

from __future__ import annotations

import re

import pytest

from guardrail.reports.markdown import escape_md, render_markdown
from tests.test_inert_comment import SHA, doc, rendered

OTHER = "4f3a9c1e77d0b2a85e6f19c3d4b7A0E2C9F81d56"
# What GitHub links as a commit: a run of 7 to 40 hex digits between word boundaries.
COMMITISH = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{7,40}(?![0-9A-Za-z])")


@pytest.mark.parametrize(
    "name",
    [OTHER, f"regressed since {OTHER}", f"org/repo@{OTHER}", f"({OTHER})", f"{OTHER}.", f"a:{OTHER.lower()}"],
)
def test_a_bare_sha_in_untrusted_text_is_defused(name):
    text, links = rendered(escape_md(name))
    # No run of 40, and none of 7+ from the SHA's start (GitHub links a unique prefix too); the rest of the
    # digits are no prefix of this commit.
    assert not any(len(m) == 40 for m in COMMITISH.findall(text)), text
    assert OTHER[:7].lower() not in text.lower(), text
    assert links == []
    assert text.replace("\u200b", "").strip() == name


@pytest.mark.parametrize("name", ["sha256:" + "a" * 64, "g" + OTHER[1:], OTHER[:39], "build 1234567"])
def test_what_is_no_full_sha_is_left_alone(name):
    assert escape_md(name) == name.replace("_", "\\_")


def test_the_comment_keeps_its_own_commit_and_defuses_the_names():
    md = render_markdown(doc(f"w {OTHER}"))
    text, _ = rendered(md)
    assert OTHER not in text
    assert f"`{SHA[:12]}`" in md  # the run's commit, a code span, as before
