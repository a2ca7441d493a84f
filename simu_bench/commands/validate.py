"""`simu-bench validate CONFIG`: check a method YAML (and overrides) without loading a model.

    simu-bench validate baselines/so_graddiff.yaml
    simu-bench validate simu --set options.t=0.3     # a registered method's shipped config
"""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate", help="check a method config without loading a model",
        description="Load a method YAML (or a registered method's shipped config), apply --set overrides, check "
                    "every key and value, and print the resolved config. Every problem is reported at once.",
    )
    parser.add_argument("config", metavar="CONFIG", help="a YAML file or a registered method name")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key, e.g. optimizer.lr=1e-5 (repeatable)")
    parser.add_argument(
        "--reference", action="store_true", help="apply the file's reference block (settings for real 1B-7B models)"
    )
    parser.set_defaults(handler=main)


def main(args) -> int:
    from simu_bench.unlearning.registry import load_config

    config = load_config(args.config, args.overrides, reference=args.reference)
    print(f"{config.source}: ok (method {config.method})")
    print(json.dumps(config.to_dict(), indent=2, sort_keys=True))
    return 0
