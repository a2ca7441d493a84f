"""Loading the model that unlearning starts from: any causal LM by local path or hub id,
safetensors weights only, and the checks of `--model` and `--device` that run before anything
is written (they read headers, never the weights)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import CONFIG_MAPPING, AutoModelForCausalLM, AutoTokenizer

from simu_bench.errors import UserError, did_you_mean
from simu_bench.files import read_json


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
    if model_type not in CONFIG_MAPPING:
        if config.get("auto_map") and not trust_remote_code:
            raise UserError(
                f"{flag} {model}: config.json needs the folder's own Python code (model_type {model_type!r}, "
                "auto_map), which simu-bench does not run unasked; expected a model type transformers knows: "
                "convert the checkpoint, or review its code and load it in Python with "
                "simu_bench.target_model.load.load_model(path, trust_remote_code=True)"
            )
        if not config.get("auto_map"):
            raise UserError(f"{path / 'config.json'}: model_type {model_type!r} is not a model type this "
                            f"transformers knows{did_you_mean(str(model_type), CONFIG_MAPPING.keys())}; "
                            "fix config.json or upgrade transformers")
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
