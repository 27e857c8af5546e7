"""tools/bench/: the bench (prune, export, then latency, memory and reward side by side; ``harness.run_bench``),
its report and plots, and standalone bench scripts (``python -m tools.bench.<name>``)."""
