"""One file per revision, named after its id (Alembic skips this file)."""
