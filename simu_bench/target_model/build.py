"""The target model: build, cache and load the model that unlearning starts from.

The embedded benchmark's target is a small OLMo-architecture model (transformers'
`OlmoForCausalLM`, the family of the paper's OLMo-1B) with a byte-level BPE tokenizer trained
on the corpus, fine-tuned on forget + retain + world facts until it has memorised them (see
`simu_bench.target_model.finetune`). `prepare()` writes the data directory and the trained target into a
cache directory under a hash of (data files, config, seed, code version) and reuses a finished
entry; `load_model()` loads this target or any causal LM by path or hub id.

Command line: `simu-bench prepare` (see `simu_bench.commands.prepare`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from simu_bench import __version__
from simu_bench.data.lume import LumeData, load_lume
from simu_bench.errors import UserError, did_you_mean

# The modules whose code decides the weights: their source is part of the cache key, so any
# change to the recipe rebuilds the target instead of reusing a stale one.
RECIPE_MODULES = ("build.py", "finetune.py", "tokenizer.py")  # the data is hashed by content
# Real LUME (`prepare --data DIR`): documents per task and split to train on. Its documents are
# long (sc rows of ~250 tokens), and 5 per task and split still memorise in minutes on a CPU.
DEFAULT_DOCS_PER_TASK = 5
DATA_FILES = ("forget.jsonl", "retain.jsonl", "member.jsonl", "nonmember.jsonl", "world_facts.jsonl")


@dataclass(frozen=True)
class TargetConfig:
    """Size and training recipe of the tiny target. The defaults are the embedded benchmark's."""

    vocab_size: int = 2048  # upper bound; a small corpus yields fewer BPE merges
    # Six layers, so that selective methods have layers to choose among (SIMU's premise: a few
    # MLP units across many layers carry the forget set), kept narrow so that a run costs about
    # what the earlier two-layer, 128-wide target cost.
    hidden_size: int = 64
    num_layers: int = 6
    num_heads: int = 4
    intermediate_size: int = 256  # the MLP units SIMU attributes (the inputs of down_proj)
    max_position_embeddings: int = 2048  # rotary, so long contexts cost no parameters
    max_epochs: int = 80
    batch_size: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.0  # memorising is the goal; decay only slows it
    warmup_steps: int = 20
    stop_loss: float = 0.05  # stop once every row is memorised and the answer-token loss is below this


@dataclass(frozen=True)
class Prepared:
    """Where `prepare()` put things, the loaded data, and the build's record (manifest.json)."""

    data_dir: Path
    target_dir: Path
    data: LumeData
    info: dict = field(default_factory=dict, compare=False)


def cache_dir() -> Path:
    """The cache root: `$SIMU_BENCH_CACHE` if set, else `~/.cache/simu-bench`."""
    configured = os.environ.get("SIMU_BENCH_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "simu-bench"


def build_model(config: TargetConfig, tokenizer):
    """A randomly initialised `OlmoForCausalLM` sized by `config`, with the tokenizer's ids."""
    from transformers import OlmoConfig, OlmoForCausalLM

    model_config = OlmoConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_position_embeddings,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    model = OlmoForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    return model


def train_target(data: LumeData, config: TargetConfig, seed: int, out_dir: Path, progress: bool = True) -> dict:
    """Train tokenizer and model on `data`'s forget + retain + utility rows; save into `out_dir`.

    The tokenizer is trained on every text of the corpus, held-out documents included: they
    are tokenized like the rest (so MIA compares NLLs at the same granularity), but the model
    never trains on them. Returns the build statistics.
    """
    import torch

    from simu_bench.target_model.finetune import finetune
    from simu_bench.target_model.tokenizer import train_tokenizer

    rows = [{"input": e.input, "output": e.output} for e in (*data.forget, *data.retain, *data.utility)]
    corpus = [row["input"] + " " + row["output"] for row in rows]
    corpus += [document.text for document in (*data.member, *data.nonmember)]
    tokenizer = train_tokenizer(corpus, config.vocab_size, config.max_position_embeddings)
    torch.manual_seed(seed)
    model = build_model(config, tokenizer)
    started = time.perf_counter()
    # One intra-op thread: the matrices are too small to gain from more, a busy machine makes
    # extra threads spin (several times slower), and the weights then do not depend on the
    # machine's core count (summation order), so a seed gives the same bytes everywhere.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = finetune(model, tokenizer, rows, config, seed, progress=progress)
    finally:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # a one-shard "Writing model shards" bar says nothing
    try:
        model.save_pretrained(out_dir, safe_serialization=True)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out_dir)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "training_rows": len(rows),
        "epochs": result.epochs,
        "steps": result.steps,
        "tokens_trained": result.tokens_trained,
        "final_loss": round(result.final_loss, 6),
        "final_answer_loss": round(result.final_answer_loss, 6),
        "memorised_rows": round(result.memorised, 4),
        "train_seconds": round(time.perf_counter() - started, 2),
    }


def _write_data(directory: Path, data, seed: int, docs_per_task: int) -> None:
    """Write the data directory: the generator's output, or a seeded subset of a LUME folder."""
    if data is None or not isinstance(data, (str, Path)):
        from simu_bench.data.synthetic import SyntheticConfig, write_dataset

        write_dataset(directory, data if data is not None else SyntheticConfig(), seed)
        return
    from simu_bench.data.subset import subset_lume
    from simu_bench.data.synthetic import write_rows

    # subset_lume returns generate()-shaped rows, the embedded world facts as the utility measure
    write_rows(directory, subset_lume(load_lume(Path(data)), docs_per_task, seed))


def _data_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in DATA_FILES:
        path = directory / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _code_version() -> dict:
    """simu-bench's version, a hash of the recipe's source, and the libraries that train."""
    import importlib.metadata

    digest = hashlib.sha256()
    for name in RECIPE_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    versions = {package: importlib.metadata.version(package) for package in ("torch", "transformers", "tokenizers")}
    return {"simu_bench": __version__, "recipe_sha256": digest.hexdigest()[:16], **versions}


def _remove_abandoned_builds(targets: Path, older_than_s: float = 6 * 3600) -> None:
    """Delete staging folders of builds that were killed outright (no cleanup ran); a build
    takes minutes, so one untouched for hours is not in progress."""
    now = time.time()
    for staging in targets.glob(".building-*"):
        try:
            if now - staging.stat().st_mtime > older_than_s:
                shutil.rmtree(staging, ignore_errors=True)
        except OSError:  # removed by another process meanwhile
            pass


def _is_complete(entry: Path) -> bool:
    return (entry / "manifest.json").is_file() and (entry / "target" / "model.safetensors").is_file()


def prepare(data=None, target: TargetConfig = TargetConfig(), seed: int = 0, cache: Path | None = None,
            progress: bool = True, *, docs_per_task: int = DEFAULT_DOCS_PER_TASK) -> Prepared:
    """Build (or reuse) the data directory and the memorised target; return where they are.

    Args:
        data: None for the default synthetic data, a `SyntheticConfig`, or a LUME folder (a
            seeded subset of `docs_per_task` documents per task and split is used; the unused
            documents become the held-out non-members).
        target: the model size and training recipe.
        seed: seeds the data generator (or subset) and the training.
        cache: the cache root; default `cache_dir()`.
        progress: show a progress bar while training.

    The cache entry is `<cache>/targets/<hash>/{data,target,manifest.json}`. It is built in a
    temporary folder and renamed into place, so an interrupted build leaves no partial entry.
    """
    root = Path(cache) if cache is not None else cache_dir()
    targets = root / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(targets)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=targets))
    try:
        _write_data(staging / "data", data, seed, docs_per_task)
        recipe = {
            "data_sha256": _data_hash(staging / "data"),
            "target": asdict(target),
            "seed": seed,
            "code": _code_version(),
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        entry = targets / key
        if not _is_complete(entry):
            started = time.perf_counter()
            loaded = load_lume(staging / "data")
            stats = train_target(loaded, target, seed, staging / "target", progress=progress)
            manifest = {**recipe, **stats, "prepare_seconds": round(time.perf_counter() - started, 2)}
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if entry.exists():  # an incomplete leftover under the same key: replace it
                shutil.rmtree(entry)
            try:
                staging.rename(entry)
            except OSError:
                if not _is_complete(entry):  # another process finished first: keep theirs
                    raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    info = json.loads((entry / "manifest.json").read_text())
    return Prepared(entry / "data", entry / "target", load_lume(entry / "data"), info)


def looks_local(name: str) -> bool:
    """Whether a model name is meant as a folder (else it is a hub id such as allenai/OLMo-1B-hf)."""
    return Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1 or (
        os.sep == "\\" and "\\" in name)


def check_model_path(model: str | None, flag: str = "--model") -> None:
    """A model that looks like a local path must be a folder (a hub id is checked when it loads)."""
    if model is not None and looks_local(model) and not Path(model).expanduser().is_dir():
        raise UserError(f"{flag} {model}: no such model folder; expected a folder written by save_pretrained "
                        f"(config.json + *.safetensors) or a hub id like allenai/OLMo-1B-hf")


# Files of which a model folder needs one for its tokenizer (fast, sentencepiece, BPE, WordPiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def check_model(model: str | None, flag: str = "--model", trust_remote_code: bool = False) -> None:
    """Everything about a local model folder that can be checked without loading its weights.

    `check_model_path`, then: config.json is a JSON object whose `model_type` this transformers
    knows (a config that needs the folder's own code says how to allow it); every *.safetensors
    file has a complete header that covers the file (a truncated or garbage file fails here);
    tokenizer files are there. Reads headers only, so it costs milliseconds even for a 7B model;
    `simu-bench run` and `eval` call it before anything is written. A hub id is checked when it loads.
    """
    check_model_path(model, flag)
    if model is None or not looks_local(model):
        return
    from simu_bench.files import read_json

    path = Path(model).expanduser()
    fix = "expected the config.json that save_pretrained writes: restore or re-save the model"
    if not (path / "config.json").is_file():
        raise UserError(f"{flag} {model}: no config.json; expected a folder written by save_pretrained "
                        "(config.json, *.safetensors, tokenizer files)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise UserError(f"{flag} {model}: no *.safetensors weights; expected a folder written by "
                        "save_pretrained(safe_serialization=True)")
    config = read_json(path / "config.json", fix, expect=dict)
    model_type = config.get("model_type")
    from transformers import CONFIG_MAPPING

    if model_type not in CONFIG_MAPPING:
        if config.get("auto_map") and not trust_remote_code:
            raise UserError(
                f"{flag} {model}: config.json needs the folder's own Python code (model_type {model_type!r}, "
                "auto_map), which simu-bench does not run unasked; expected a model type transformers knows: "
                "convert the checkpoint, or review its code and load it in Python with "
                "simu_bench.target_model.load_model(path, trust_remote_code=True)"
            )
        if not config.get("auto_map"):
            raise UserError(f"{path / 'config.json'}: model_type {model_type!r} is not a model type this "
                            f"transformers knows{did_you_mean(str(model_type), CONFIG_MAPPING.keys())}; "
                            "fix config.json or upgrade transformers")
    from safetensors import safe_open

    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                handle.keys()
        except Exception as error:  # SafetensorError for a bad header, OSError for an unreadable file
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f"{file}: not a complete safetensors file ({reason}); expected the weights "
                            "save_pretrained writes: copy or download the file again") from None
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"{flag} {model}: no tokenizer files (expected one of {', '.join(TOKENIZER_FILES)}); "
                        f"save the tokenizer next to the weights: tokenizer.save_pretrained({str(path)!r})")


def check_device(device: str, flag: str = "--device") -> None:
    """`device` must name a torch device that exists here (cpu, cuda, cuda:N, mps, ...)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):  # torch's message lists two dozen device types
        raise UserError(f"{flag} {device}: not a torch device; expected cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cpu":
        return
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{flag} {device}: no CUDA device is available here; use {flag} cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UserError(f"{flag} {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                        f"cuda:0 to cuda:{torch.cuda.device_count() - 1}; choose one of them")
    try:
        torch.empty(1, device=parsed)
    except Exception as error:  # a device type torch knows but this machine lacks (mps, xpu, ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{flag} {device}: not usable here ({reason}); use {flag} cpu") from None


def load_model(name_or_path, device: str = "cpu", dtype=None, trust_remote_code: bool = False):
    """Load any causal LM and its tokenizer by local path or hub id; safetensors weights only.

    `dtype` None loads float32 (exact and safe on CPU); pass "auto" for the checkpoint's own
    dtype or e.g. torch.bfloat16 on a GPU. Sets a pad token (the EOS token) when the tokenizer
    has none, so batched generation works.
    Raises UserError for a missing path, a folder `check_model` refuses, or weights that fail to load.
    """
    name = str(name_or_path)
    path = Path(name).expanduser()
    if looks_local(name):
        if not path.is_dir():
            raise UserError(
                f"target {name!r} does not exist; expected a model folder (config.json + *.safetensors) "
                "or a hub id like 'allenai/OLMo-1B-hf'; run `simu-bench prepare` to build the embedded target"
            )
        check_model(name, "target", trust_remote_code)
        name = str(path)
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            name,
            dtype=dtype if dtype is not None else torch.float32,
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:  # a broken or unknown checkpoint
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"cannot load target {name!r}: {first_line}; "
            "expected a local model folder or a reachable hub id with safetensors weights"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.generation_config, "pad_token_id", None) is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.to(device)
    model.eval()
    return model, tokenizer
