"""The catalog generation: a counter bumped in the same transaction as any change a reference's resolution
depends on, so a coordinator's cache of resolutions (and another coordinator's) knows when to drop them."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bank.models import Alias, Backbone, CatalogState, Prompt, PromptVersion

RESOLVING = (Prompt, PromptVersion, Alias, Backbone)  # what a reference's resolution depends on


def bump_generation(s: Session, _context: object = None, _instances: object = None) -> None:
    """A `before_flush` hook (bank.db.make_sessionmaker): when the flush changes anything a resolution depends
    on, bump the catalog generation in the same transaction."""
    if any(isinstance(o, RESOLVING) for o in (*s.new, *s.dirty, *s.deleted)):
        s.execute(update(CatalogState).where(CatalogState.id == 1)
                  .values(generation=CatalogState.generation + 1).execution_options(synchronize_session=False))


def generation(s: Session) -> int:
    return int(s.scalar(select(CatalogState.generation).where(CatalogState.id == 1)) or 0)
