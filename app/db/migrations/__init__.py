"""Alembic migration scripts of the app's database (found as `app.db:migrations`)."""
