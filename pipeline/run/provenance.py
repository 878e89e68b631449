"""What a run was made with: the code's commit and the library versions worth comparing runs by."""

from __future__ import annotations

import os
import subprocess


def git_commit(root: str) -> str:
    """The checkout's HEAD commit, or 'unknown' outside a git checkout."""
    result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def environment_tags() -> dict[str, str]:
    """Library versions and this host's cores and torch threads."""
    import sentence_transformers
    import torch
    import transformers

    return {"version/torch": torch.__version__,
            "version/transformers": transformers.__version__,
            "version/sentence_transformers": sentence_transformers.__version__,
            "host/cpu_count": str(os.cpu_count()),
            "host/torch_threads": str(torch.get_num_threads())}
