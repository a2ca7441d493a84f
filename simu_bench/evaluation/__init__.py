"""Stage 4, evaluation: generation through lm-eval's task pack and the official LUME scoring
(`evaluator`, `scoring`), and membership inference (`mia`)."""

MAX_NEW_TOKENS = 256  # the official LUME scorer's generation length
BATCH_SIZE = 64  # generation batch size (evaluate's default); part of a run's identity
