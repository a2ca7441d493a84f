"""The LUME task pack for lm-eval: YAML task files plus their helper module `utils.py`.

`path()` is the folder to hand to lm-eval (`TaskManager(include_path=path())`, or
`--include_path "$(simu-bench tasks-path)"` in the shell).
"""

from pathlib import Path

# The 12 LUME component tasks in the order of the `lume` group: split, task, kind.
COMPONENT_TASKS = tuple(
    f"lume_{split}_task{n}_{kind}"
    for split in ("forget", "retain")
    for n in (1, 2, 3)
    for kind in ("regurgitation", "knowledge")
)
WORLD_FACTS_TASK = "lume_world_facts"
GROUP = "lume"


def path() -> Path:
    """The folder that holds the task YAML files."""
    return Path(__file__).resolve().parent


def task_name(split: str, task: str, kind: str) -> str:
    """lm-eval task name of one component, e.g. ('forget', 'Task1', 'knowledge') -> 'lume_forget_task1_knowledge'."""
    return f"lume_{split}_{task.lower()}_{kind}"
