"""Client-side PEFT adapter directories: the two files only, and never a pickle.

The server validates the contents (bank/peft_format.py); this only moves bytes and refuses `.bin`/`.pt`
weights before they leave the machine.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PICKLE_NAMES = ("adapter_model.bin", "adapter_model.pt", "adapter_model.pth")


def read_adapter(path: Path) -> tuple[bytes, bytes]:
    if not path.is_dir():
        raise ValueError(f"{path} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    config, weights = path / CONFIG_NAME, path / WEIGHTS_NAME
    if not weights.exists():
        pickled = [n for n in PICKLE_NAMES if (path / n).exists()]
        if pickled:
            raise ValueError(f"{path / pickled[0]} is a pickle file, which promptbank refuses; save the adapter with "
                             f"safe_serialization=True (safetensors)")
        raise ValueError(f"{path} has no {WEIGHTS_NAME}")
    if not config.exists():
        raise ValueError(f"{path} has no {CONFIG_NAME}")
    return config.read_bytes(), weights.read_bytes()


def write_adapter(path: Path, config: bytes, weights: bytes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / CONFIG_NAME).write_bytes(config)
    (path / WEIGHTS_NAME).write_bytes(weights)
    return path
