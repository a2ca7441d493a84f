"""The LUME task pack for lm-eval (YAML files plus the helper module `utils.py`)."""
