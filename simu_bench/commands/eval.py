"""`simu-bench eval`: evaluate one model on LUME without unlearning it.

    simu-bench eval --model runs/some-model            # on the embedded benchmark's data
    simu-bench eval --model allenai/OLMo-1B-hf --data ../shared/lume --utility-tasks mmlu --device cuda
    simu-bench eval --model runs/some-model --relearn 20 --out runs/some-model-eval   # + the relearning attack

Prints the metrics JSON (the schema of `simu-bench score`) on stdout; `--out DIR` also stores
the metrics, per-sample generations and environment there. With `--relearn STEPS` the model is
then attacked (`simu_bench.evaluation.relearn`): a line on stderr gives the forget score of the
held-out documents before and after, and `--out` gets relearn.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from simu_bench.commands.run import add_relearn_arguments, check_relearn_arguments
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate one model without unlearning",
        description="Score a model on the LUME tasks, MIA and utility, as `simu-bench run` does.",
    )
    parser.add_argument("--model", required=True, metavar="NAME_OR_PATH", help="a causal LM folder or hub id")
    parser.add_argument(
        "--data", type=Path, metavar="DIR", help="a LUME folder (default: the embedded benchmark's data)"
    )
    parser.add_argument(
        "--utility-tasks", metavar="a,b", help="lm-eval tasks measuring utility, e.g. mmlu (default: world facts)"
    )
    parser.add_argument(
        "--out", type=Path, metavar="DIR", help="also write metrics.json, generations.jsonl, environment.json here"
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--dtype", default="float32", choices=("float32", "bfloat16", "float16", "auto"),
        metavar="float32|bfloat16|float16|auto",
        help="evaluate the model in this dtype (default: float32; auto: the checkpoint's; the official scorer "
        "used bfloat16)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, metavar="N", help=f"generation batch size (default: {BATCH_SIZE})"
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=MAX_NEW_TOKENS,
        metavar="N",
        help=f"generation limit per row (default: {MAX_NEW_TOKENS}, as LUME)",
    )
    parser.add_argument(
        "--reference", metavar="NAME_OR_PATH",
        help="the model before unlearning (e.g. the target): adds the MIA suite's reference attack, each "
        "document's NLL minus its NLL under this model (default: none)",
    )
    add_relearn_arguments(parser)
    from simu_bench.commands.run import add_backend_arguments

    add_backend_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar when the embedded data is built")
    parser.set_defaults(handler=main)


def main(args) -> int:
    from simu_bench.data.lume import check_data_dir, load_lume
    from simu_bench.errors import UserError
    from simu_bench.evaluation.evaluator import check_utility_tasks, evaluate
    from simu_bench.files import atomic_write_json, write_jsonl
    from simu_bench.store.environment import environment
    from simu_bench.store.runs import check_writable
    from simu_bench.target_model.build import check_device, check_model, load_model, prepare

    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise UserError(
            f"--batch-size {args.batch_size} --max-new-tokens {args.max_new_tokens}: expected positive numbers, "
            "e.g. 32 and 256"
        )
    check_data_dir(args.data)
    check_model(args.model)
    check_model(args.reference, "--reference")
    check_device(args.device)
    utility = [t.strip() for t in args.utility_tasks.split(",") if t.strip()] if args.utility_tasks else None
    check_utility_tasks(utility)
    from simu_bench.evaluation.backends import check_backend

    backend = check_backend(args.backend, args.strict)
    check_relearn_arguments(args)
    if args.out is not None:
        check_writable(args.out)
    data_dir = args.data if args.data is not None else prepare(None, progress=not args.quiet).data_dir
    data = load_lume(data_dir)
    if args.relearn is not None:
        from simu_bench.evaluation.relearn import split_documents

        split_documents(data.forget, args.relearn_fraction)  # one forget document: refused before any work
    started = time.perf_counter()
    import torch

    model, tokenizer = load_model(args.model, device=args.device,
                                  dtype="auto" if args.dtype == "auto" else getattr(torch, args.dtype))
    reference = None
    if args.reference is not None and data.member and data.nonmember:
        from simu_bench.evaluation.mia import reference_nll

        before, before_tokenizer = load_model(args.reference, device=args.device)
        reference = reference_nll(before, before_tokenizer, data.member, data.nonmember, args.batch_size)
        del before  # only its document NLLs are needed
    result = evaluate(
        model, tokenizer, data, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens, utility_tasks=utility,
        backend=backend, reference_nll=reference,
    )
    metrics = result.to_dict()
    if args.out is not None:
        atomic_write_json(args.out / "metrics.json", metrics)
        write_jsonl(args.out / "generations.jsonl", [dict(s) for s in result.samples])
        atomic_write_json(
            args.out / "environment.json", {**environment(args.device), "model": args.model, "data": str(data_dir),
                                             "dtype": args.dtype}
        )
    print(json.dumps(metrics, indent=2, sort_keys=True))
    print(f"evaluated {len(result.samples)} rows in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if args.relearn is not None:
        from simu_bench.evaluation.relearn import relearn

        def evaluate_rows(model, tokenizer, rows):
            return evaluate(model, tokenizer, rows, batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)

        # In place: the model's metrics and generations are written above, and it is not used again.
        record = relearn(model, tokenizer, data, args.relearn, evaluate_rows, fraction=args.relearn_fraction,
                         before=result.samples, in_place=True)
        if args.out is not None:
            atomic_write_json(args.out / "relearn.json", record)
        print(f"relearning {record['steps']} steps on {len(record['relearn_documents'])} forget documents: forget "
              f"score of the other {len(record['heldout_documents'])} {record['forget_before']:.3f} -> "
              f"{record['forget_after']:.3f} ({record['seconds']['total']:.1f} s)", file=sys.stderr)
    return 0
