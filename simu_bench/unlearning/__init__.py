"""Stage 3, unlearning: the `Unlearner` interface, the one training loop, losses, optimizers
(AdamW, SophiaG), method configs and the registry of methods."""
