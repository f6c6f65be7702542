"""Benchmarks of mnist-canvas: training speed, HTTP throughput, sustained load, canvas fidelity.

Each module is a command-line script; run them from the repository root as modules, e.g.
`python -m benchmarks.canvas --quick`, or all at once with `python -m benchmarks.run_all`.
"""
