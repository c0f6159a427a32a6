"""What a report says about where and from what a study ran: the machine, and the warm start."""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU count, platform and the versions that decide the numbers."""
    import ray
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "ray": ray.__version__,
    }


def model_fingerprint(model_path: str | os.PathLike[str]) -> dict[str, Any]:
    """The model folder and the sha256 (first 16 hex digits) of its weights: the shared warm start."""
    path = Path(model_path)
    digest = hashlib.sha256()
    weights = sorted(path.glob("*.safetensors"))
    for file in weights:
        digest.update(file.read_bytes())
    return {"path": str(path), "sha256": digest.hexdigest()[:16] if weights else None}
