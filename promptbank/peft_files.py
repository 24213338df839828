"""Client-side PEFT adapter folders: the two files only, and never a pickle.

The server validates the contents (bank/peft_format.py); this only moves bytes, refuses `.bin`/`.pt`
weights before they leave the machine, and writes atomically so a reader never sees half an adapter.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from promptbank_api.files import PEFT_CONFIG, PEFT_WEIGHTS, PICKLE_SUFFIXES


def read_adapter(path: Path) -> tuple[bytes, bytes]:
    """(adapter_config.json, adapter_model.safetensors) bytes of an adapter folder."""
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory holding {PEFT_CONFIG} and {PEFT_WEIGHTS}")
    config, weights = path / PEFT_CONFIG, path / PEFT_WEIGHTS
    if not weights.is_file():
        pickled = sorted(f.name for f in path.iterdir() if f.suffix in PICKLE_SUFFIXES)
        if pickled:
            raise ValueError(f"{path / pickled[0]} is a pickle file, which promptbank refuses (loading one can run "
                             f"arbitrary code); save the adapter with safe_serialization=True (safetensors)")
        raise ValueError(f"{path} has no {PEFT_WEIGHTS}")
    if not config.is_file():
        raise ValueError(f"{path} has no {PEFT_CONFIG}")
    return config.read_bytes(), weights.read_bytes()


def write_adapter(path: Path, config: bytes, weights: bytes) -> Path:
    """Write the two files so that `PeftModel.from_pretrained(base, path)` loads them."""
    path.mkdir(parents=True, exist_ok=True)
    for name, data in ((PEFT_WEIGHTS, weights), (PEFT_CONFIG, config)):
        fd, tmp = tempfile.mkstemp(dir=path, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path
