"""One module per `simu-bench` subcommand (see simu_bench/cli.py)."""
