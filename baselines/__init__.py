"""Baseline unlearners and their YAML configs: GradDiff (`fo_graddiff`, `so_graddiff`), `grad_ascent`,
`npo`, `simnpo`, `rmu`, `idk_dpo`, and the localized `wagle` and `selective_pruning`."""
