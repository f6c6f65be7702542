"""Marker: makes templates/ the package app.templates (package data; see pyproject.toml)."""
