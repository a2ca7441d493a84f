"""Stage 5, run store: one folder per run with its config, environment, metrics and status,
written atomically so a finished result is never lost (`runs`, `environment`)."""
