"""simu-bench: a benchmark harness for machine unlearning in language models."""

__version__ = "0.1.0"
