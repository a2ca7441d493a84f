"""Baseline unlearners and their YAML configs: GradDiff (`fo_graddiff`, `so_graddiff`)."""
