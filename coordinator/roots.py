"""Server paths a client may name: only what resolves inside a configured root (data files, models)."""

from __future__ import annotations

from pathlib import Path

from promptbank_api.errors import PermissionDenied


def looks_local(name: str) -> bool:
    """Whether a name means a path on this server: it says so (`/`, `.`, `~`) or such a path exists. A hub id
    that happens to be a local path is a local path, never handed to a loader that would read it."""
    return name.startswith(("/", ".", "~")) or Path(name).expanduser().exists()


def require_under(path: Path, roots: tuple[str, ...], noun: str, kind: str, flag: str, otherwise: str = "") -> None:
    """PERMISSION_DENIED unless `path`, symlinks resolved, lies inside one of `roots` (none: nothing does);
    the message calls it `noun` and names the `kind` of roots and the `flag` that sets them."""
    real = path.expanduser().resolve()
    if any(real.is_relative_to(Path(root).expanduser().resolve()) for root in roots):
        return
    where = f"the {kind} roots {list(roots)}" if roots else f"no {kind} roots (start the server with {flag} DIR)"
    raise PermissionDenied(f"{noun} {str(path)!r} is outside {where}{otherwise}")
