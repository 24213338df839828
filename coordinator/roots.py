"""Server paths a client may name: only what resolves inside a configured root (data files, models)."""

from __future__ import annotations

from pathlib import Path

from promptbank_api.errors import PermissionDenied


def looks_local(name: str) -> bool:
    """Whether a name means a path on this server: it says so (`/`, `.`, `~`) or such a path exists. A hub id
    that happens to be a local path is a local path, never handed to a loader that would read it."""
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def require_under(path: str | Path, roots: tuple[str, ...], noun: str, kind: str, flag: str, otherwise: str = "") -> None:
    """PERMISSION_DENIED unless `path`, `~` expanded and symlinks resolved, lies inside one of `roots` (none:
    nothing does). The message calls it `noun` and quotes it as the caller gave it: it names neither the roots
    nor any path the server expanded, so a refusal tells a caller nothing about the server's disk."""
    real = Path(path).expanduser().resolve()
    if any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        return
    if not roots:
        raise PermissionDenied(f"{noun} {str(path)!r} cannot be read: the server reads no {kind} files (start it "
                               f"with {flag} DIR to allow a directory){otherwise}")
    relative = "" if Path(path).expanduser().is_absolute() else \
        " (a relative path is read from the server's working directory, not from a root: give the full path)"
    raise PermissionDenied(f"{noun} {str(path)!r} is outside the server's {kind} roots{relative}{otherwise}")
