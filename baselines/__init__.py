"""Baseline unlearners (FO-GradDiff, SO-GradDiff) and their YAML configs."""
