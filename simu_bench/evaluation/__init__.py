"""Stage 4, evaluation: generation through lm-eval's task pack and the official LUME scoring
(`evaluator`, `scoring`), and membership inference (`mia`)."""
