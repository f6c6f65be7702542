"""mnist-canvas: the training library (no web code here)."""
