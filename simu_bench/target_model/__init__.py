"""Stage 2, target: the model unlearning starts from. Builds and caches the embedded tiny OLMo
target (`tokenizer`, `finetune`, `build`) and loads any causal LM by path or hub id (`build.load_model`)."""

from simu_bench.target_model.build import TargetConfig, load_model, prepare

__all__ = ["TargetConfig", "load_model", "prepare"]
