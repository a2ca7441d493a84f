"""Stage 2, target: the model unlearning starts from. The embedded tiny OLMo target's settings
(`settings`), recipe (`build`, `tokenizer`, `finetune`) and cache (`cache.prepare`), named sizes
(`sizes`), and any causal LM loaded by path or hub id (`load.load_model`).

Nothing is imported here: `simu_bench.target_model.pinning` must run before torch is imported.
"""
