"""Benchmarks: the gateway against direct gRPC and a bare Hypercorn, side by side in one run.

Run them with ``scripts/bench``; see ``benchmarks/README.md`` for what each figure means.
"""
