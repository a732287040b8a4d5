"""The README's example runs against the installed package, and says what it prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.skipif(not README.exists(), reason="README not next to the tests (wheel test copy)")
def test_readme_example_runs_and_its_comments_hold():
    text = README.read_text(encoding="utf-8")
    block, sessions = re.findall(r"```python\n(.*?)```", text, re.S)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)
    # The comment on the frame line quotes the MEP guide p.15 frame.
    assert scope["frame"].hex() == "00143f0017000000002c77635b9113db85a135a0575e"
    assert scope["tags"][0] == bytes.fromhex("13db85a135a0575e")
    assert len(scope["sealed"]) == len(b"payload") + 8

    # the session example: what its comments say
    scope = {}
    exec(compile(sessions, "README.md", "exec"), scope)
    assert scope["session"] is scope["meters"][0] and scope["frame"][0] == 0x00
    assert scope["arbiter"].poll_transmit(now=0.0) is None
    assert scope["arbiter"].next_deadline() == 1.024
    assert scope["router"].drops == {"undecodable": 1}
    assert scope["state"]["seq"] == {"last": 1}
