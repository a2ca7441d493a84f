"""`simu-bench eval`: evaluate one model on LUME without unlearning it.

    simu-bench eval --model runs/some-model            # on the embedded benchmark's data
    simu-bench eval --model allenai/OLMo-1B-hf --data path/to/lume --utility-tasks mmlu --device cuda
    simu-bench eval --model runs/some-model --relearn 20 --out runs/some-model-eval   # + the relearning attack

Prints the metrics JSON (the schema of `simu-bench score`) on stdout; `--out DIR` also stores
the metrics, per-sample generations and environment there. With `--relearn STEPS` the model is
then attacked (`simu_bench.evaluation.relearn`): a line on stderr gives the forget score of the
held-out documents before and after, and `--out` gets relearn.json. The flags are the fields of
`simu_bench.pipeline.plan.Plan`, spelled as in `run`.
"""

from __future__ import annotations

import json
import sys

from simu_bench.pipeline.plan import add_plan_flags, plan_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate one model without unlearning",
        description="Score a model on the LUME tasks, MIA and utility, as `simu-bench run` does.",
    )
    add_plan_flags(parser, "eval")
    parser.set_defaults(handler=main)


def main(args) -> int:
    plan = plan_from_args(args, "eval")
    from simu_bench.pipeline.one_model import evaluate_one  # torch: only once the flags are checked

    def show(result) -> None:
        print(json.dumps(result.metrics, indent=2, sort_keys=True))
        print(f"evaluated {result.rows} rows in {result.seconds:.1f} s", file=sys.stderr)

    record = evaluate_one(plan, show)
    if record is not None:
        print(f"relearning {record['steps']} steps on {len(record['relearn_documents'])} forget documents: forget "
              f"score of the other {len(record['heldout_documents'])} {record['forget_before']:.3f} -> "
              f"{record['forget_after']:.3f} ({record['seconds']['total']:.1f} s)", file=sys.stderr)
    return 0
