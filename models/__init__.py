"""Marker: makes models/ the package model.weights (the shipped checkpoint; see pyproject.toml)."""
