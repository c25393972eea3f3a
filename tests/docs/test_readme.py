"""The README's library snippet runs, and its numbers agree with the dense Hessian."""
import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_library_snippet_runs_and_matches_dense_hessian(capsys):
    blocks = python_blocks()
    assert blocks, "the README has no python snippet"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    top, exact, tr = namespace["top"], namespace["exact"], namespace["tr"]
    assert torch.allclose(top.eigenvalues, exact.double(), rtol=1e-4, atol=1e-7), (top.eigenvalues, exact)
    assert abs(sum(b.estimate for b in tr.blocks.values()) - tr.estimate) < 1e-6 * max(1.0, abs(tr.estimate))
    H = namespace["H"]
    assert H.size < sum(p.numel() for p in namespace["model"].parameters())  # pruned weights are not coordinates
    summary, block = namespace["summary"], namespace["first_layer"]
    dense_block = torch.stack([block.matvec(e) for e in torch.eye(block.size)], dim=1)
    assert summary.trace.method == "exact" and summary.n_hvp == block.size
    assert abs(summary.trace.estimate - float(torch.trace(dense_block))) < 1e-4 * abs(summary.trace.estimate)


def test_readme_mentions_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text.split("##")[0] and "make test" in text.split("##")[0]
