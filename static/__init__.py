"""Marker: makes static/ the package app.static (package data; see pyproject.toml)."""
