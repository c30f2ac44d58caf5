"""The README's Python snippets run as written (those that need no file the user brings)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
RUNNABLE = [b for b in BLOCKS if "vgg16.npz" not in b]      # users bring VGG16 themselves


def test_the_readme_has_snippets():
    assert len(RUNNABLE) >= 3


@pytest.mark.parametrize("code", [
    pytest.param(code, id=f"block{i}",
                 marks=[pytest.mark.slow] if "TrainingSetup" in code else [])   # it trains
    for i, code in enumerate(RUNNABLE)])
def test_readme_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                  # snippets may write files
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
