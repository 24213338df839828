"""Revision files, applied in order by Alembic (this file is not a revision)."""
