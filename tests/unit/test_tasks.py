"""The LUME task pack as lm-eval sees it: 13 tasks and the `lume` group through include_path."""

from __future__ import annotations

import pytest
from lm_eval import simple_evaluate
from lm_eval.api.model import LM
from lm_eval.models.utils import handle_stop_sequences
from lm_eval.tasks import TaskManager

from simu_bench import tasks as task_pack
from simu_bench.data import synthetic
from simu_bench.data.lume import load_lume
from simu_bench.errors import UserError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return synthetic.write_dataset(tmp_path_factory.mktemp("lume") / "data", synthetic.SyntheticConfig(), seed=1)


@pytest.fixture(scope="module")
def manager(data_dir):
    return TaskManager(include_path=str(task_pack.path()), include_defaults=False, metadata={"data_dir": str(data_dir)})


@pytest.fixture(scope="module")
def loaded(manager):
    return manager.load([task_pack.GROUP, task_pack.WORLD_FACTS_TASK])


def test_pack_registers_13_tasks_and_the_group(manager, loaded):
    names = set(task_pack.COMPONENT_TASKS) | {task_pack.WORLD_FACTS_TASK}
    assert len(task_pack.COMPONENT_TASKS) == 12 and len(names) == 13
    assert names | {task_pack.GROUP} <= set(manager.all_tasks)
    assert set(loaded["tasks"]) == names
    assert list(loaded["groups"]["lume"].child_names) == list(task_pack.COMPONENT_TASKS)


def test_every_task_generates_like_the_official_scorer(loaded):
    for name, task in loaded["tasks"].items():
        config = task.config
        assert config.output_type == "generate_until" and config.num_fewshot == 0
        # Greedy, at most 256 new tokens, and no stop string: lm-eval's "\n\n" default must not apply.
        assert config.generation_kwargs == {"until": [], "do_sample": False, "max_gen_toks": 256}, name
        # HFLM then stops at EOS only.
        assert handle_stop_sequences(list(config.generation_kwargs["until"]), eos="<eos>") == ["<eos>"]
        metric = "rougeL_recall" if name.endswith("regurgitation") else "exact_match"
        assert task.higher_is_better() == {metric: True}


def test_rows_and_prompts_are_the_raw_data(loaded, data_dir):
    data = load_lume(data_dir)
    for split in ("forget", "retain"):
        for example in data.split(split):
            task = loaded["tasks"][task_pack.task_name(split, example.task, example.kind)]
            docs = {doc["id"]: doc for doc in task.eval_docs}
            doc = docs[example.id]
            expected = (example.input, example.output, split, example.kind)
            assert (doc["input"], doc["output"], doc["split"], doc["kind"]) == expected
            # The prompt is the input itself: no template, delimiter or few-shot text.
            assert task.fewshot_context(doc, 0) == example.input
    world = loaded["tasks"][task_pack.WORLD_FACTS_TASK]
    assert [doc["output"] for doc in world.eval_docs] == [e.output for e in data.utility]
    cells = {(e.split, e.task, e.kind) for s in ("forget", "retain") for e in data.split(s)}
    for cell in cells:
        expected = sum(1 for e in data.split(cell[0]) if (e.task, e.kind) == cell[1:])
        assert len(loaded["tasks"][task_pack.task_name(*cell)].eval_docs) == expected


def test_missing_data_dir_is_a_clear_error():
    manager = TaskManager(include_path=str(task_pack.path()), include_defaults=False)
    with pytest.raises(UserError, match=r"--metadata '\{\"data_dir\": \"/path/to/lume\"\}'"):
        manager.load(["lume_forget_task1_knowledge"])


def test_empty_cell_and_bad_directory_are_clear_errors(tmp_path, data_dir):
    (tmp_path / "forget.jsonl").write_text((data_dir / "forget.jsonl").read_text())
    (tmp_path / "retain.jsonl").write_text((data_dir / "retain.jsonl").read_text())
    def manager_for(folder):
        return TaskManager(include_path=str(task_pack.path()), include_defaults=False,
                           metadata={"data_dir": str(folder)})

    manager = manager_for(tmp_path)
    with pytest.raises(UserError, match="no world_facts.jsonl"):
        manager.load([task_pack.WORLD_FACTS_TASK])
    manager = manager_for(tmp_path / "nope")
    with pytest.raises(UserError, match="is not a directory"):
        manager.load(["lume_forget_task1_knowledge"])


class AnswerLM(LM):
    """Answers every prompt with a fixed function of the row, and records what it was asked."""

    def __init__(self, answer):
        super().__init__()
        self.answer, self.requests = answer, []

    def generate_until(self, requests, disable_tqdm: bool = False):
        self.requests.extend(requests)
        return [self.answer(request.doc) for request in requests]

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


def _shouted(doc):
    return "  " + doc["output"].upper() + "\n"


def _silent(doc):
    return ""


@pytest.mark.parametrize("answer, expected", [(_shouted, 1.0), (_silent, 0.0)])
def test_pack_scores_through_lm_eval(manager, answer, expected):
    """A model that gives back each answer (upper-cased, padded) scores 1 everywhere; silence scores 0."""
    lm = AnswerLM(answer)
    out = simple_evaluate(model=lm, tasks=["lume", task_pack.WORLD_FACTS_TASK], task_manager=manager, bootstrap_iters=0)
    for name in (*task_pack.COMPONENT_TASKS, task_pack.WORLD_FACTS_TASK):
        metric = "rougeL_recall" if name.endswith("regurgitation") else "exact_match"
        assert out["results"][name][f"{metric},none"] == expected, name
    context, gen_kwargs = lm.requests[0].args
    assert gen_kwargs["until"] == [] and context == lm.requests[0].doc["input"]
