"""Alembic migrations of the bank schema; `bank.db.make_engine` runs them to head. See env.py."""
