"""`simu-bench tasks-path`: print the folder of the LUME task pack, for lm-eval's --include_path.

    lm_eval run --model hf --model_args pretrained=TARGET_DIR --include_path "$(simu-bench tasks-path)" \
        --tasks lume --metadata '{"data_dir": "DATA_DIR"}' --device cpu
"""

from __future__ import annotations


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tasks-path", help="print the LUME task folder (for lm_eval --include_path)",
        description="Print the folder that holds the LUME lm-eval task YAML files.",
    )
    parser.set_defaults(handler=main)


def main(args) -> int:
    from simu_bench import tasks

    print(tasks.path())
    return 0
