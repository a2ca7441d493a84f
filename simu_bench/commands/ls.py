"""`simu-bench ls`: the registered methods (with their papers and configs) and the LUME tasks.

    simu-bench ls
"""

from __future__ import annotations

from simu_bench.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ls",
        help="list methods (with papers) and tasks",
        description="List the registered unlearning methods and the lm-eval tasks of the LUME pack.",
    )
    parser.set_defaults(handler=main)


def main(args) -> int:
    from tabulate import tabulate

    from simu_bench import tasks as task_pack
    from simu_bench.unlearning import registry

    rows = []
    for name in registry.loadable():  # a broken plugin is left out with its one line on stderr
        cls = registry.get(name)
        try:
            config = str(registry.config_path(name))
        except UserError as error:  # a method without a shipped YAML still lists
            config = f"({error})"
        rows.append([name, cls.paper or "—", config])
    print("Methods (run with `simu-bench run --methods NAME`):\n")
    print(tabulate(rows, ["method", "paper", "config"], tablefmt="simple", disable_numparse=True))
    print(f"\nTasks (lm-eval, include path {task_pack.path()}):\n")
    tasks = [[task_pack.GROUP, "group of the 12 components below"]]
    tasks += [
        [name, "ROUGE-L recall" if name.endswith("regurgitation") else "exact match"]
        for name in task_pack.COMPONENT_TASKS
    ]
    tasks.append([task_pack.WORLD_FACTS_TASK, "exact match; the embedded benchmark's utility (stands in for MMLU)"])
    print(tabulate(tasks, ["task", "metric"], tablefmt="simple", disable_numparse=True))
    return 0
