"""What a command was asked to do: `Plan` (run, tune, eval) and `TunePlan` (tune), typed.

Each field with `flag(...)` metadata is a command-line flag (`simu_bench.pipeline.flags`): its
spelling, help, checks and default are written once here, and `add_flags`, `plan_from_args` and
the canonical command line stored with the results come from them. A flag has the same name and
meaning in every command that has it.

**Adding a flag** (two files: this one and the code that uses the value):

1. Add a field to `Plan` (or `TunePlan` for tune alone) with a default that does what the
   program did before, and ``metadata=flag("help line", commands=(...), metavar=..., check=...)``.
   Give it ``identity="section.key"`` when it changes the results, so each run's hashed config
   holds it; it is hashed only when it differs from its default, so existing run stores keep
   their hashes. Checks that involve two flags go into `check_plan`.
2. Read ``plan.your_field`` where it matters. Nothing else: the parser, the checks, the
   command line written into run.json and the run identity follow from the field.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS
from simu_bench.evaluation.relearn import DEFAULT_FRACTION, LR, check_fraction, check_steps
from simu_bench.leaderboard.floor import DEFAULT_FRACTION as FLOOR_FRACTION
from simu_bench.leaderboard.floor import UtilityFloor, parse_utility_floor
from simu_bench.pipeline.flags import add_flags, command_words, flag, positive, values_from
from simu_bench.pipeline.seeds import parse_seeds
from simu_bench.pipeline.workers import parse_workers
from simu_bench.target_model.sizes import target_config
from simu_bench.unlearning import registry

DTYPES = ("float32", "bfloat16", "float16", "auto")
# Five seeds: what the three tuned methods finish in about seven minutes on two CPU cores
# (17-52 s a run); paired comparisons need them (one seed gives no interval at all).
DEFAULT_SEEDS = "0,1,2,3,4"
RULES = ("final", "retain_at_forget")


def resolve_methods(text: str, flag: str = "--methods") -> tuple[str, ...]:
    """`all` or a comma-separated list of registered names, each checked against the registry."""
    available = registry.names()
    if text.strip() == "all":
        return tuple(registry.loadable())  # a broken plugin is left out with a warning, not the others
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError(
            f"{flag} {text!r} names no method; expected 'all' or a comma-separated list of: {', '.join(available)}"
        )
    for name in names:
        try:
            registry.get(name)  # unknown, or a plugin that is broken or misnamed: one line, before anything is done
        except UserError as error:
            raise UserError(f"{flag}: {error}") from None
    return tuple(dict.fromkeys(names))


def _size(name: str, flag: str) -> None:
    """A known target size (`simu_bench.target_model.sizes`), with suggestions otherwise."""
    target_config(name)


def _stop_level(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise UserError(f"{name} {value:g}: expected a forget level in (0, 1), e.g. 0.2")


def _floor(text: str, name: str) -> UtilityFloor:
    return parse_utility_floor(text)


def _tasks(text: str, name: str) -> tuple[str, ...] | None:
    """The comma-separated lm-eval task names, parsed once."""
    return tuple(task.strip() for task in text.split(",") if task.strip()) or None


@dataclass(frozen=True)
class Plan:
    """Everything `simu-bench run` (or a tune trial, or `eval`) was asked to do."""

    methods: tuple[str, ...] = field(default=(), metadata=flag(
        "methods to run (default: all registered)", commands=("run", "tune", "frontier"), metavar="all|a,b,c",
        default="all", parse=resolve_methods, always=True,
        per={"tune": {"help": "methods to tune (default: all registered)"}}))
    seeds: tuple[int, ...] = field(default=(0,), metadata=flag(
        f"seeds, comma-separated, or a range such as 0-19 (default: {DEFAULT_SEEDS})", commands=("run",),
        metavar="0,1,2|0-19",
        default=lambda: DEFAULT_SEEDS, parse=parse_seeds, always=True))
    data: Path | None = field(default=None, metadata=flag(
        "a LUME folder; without --model the embedded target is trained on a seeded subset of it (default: the "
        "embedded synthetic data)", metavar="DIR",
        per={"eval": {"help": "a LUME folder (default: the embedded benchmark's data)"}}))
    model: str | None = field(default=None, metadata=flag(
        "a causal LM folder or hub id (default: the embedded target)", metavar="NAME_OR_PATH",
        per={"eval": {"required": True, "help": "a causal LM folder or hub id"}}))
    utility_tasks: tuple[str, ...] | None = field(default=None, metadata=flag(
        "lm-eval tasks measuring utility, e.g. mmlu (default: the world-facts set of the data folder)", metavar="a,b",
        parse=_tasks, identity="evaluation.utility_tasks", identity_always=True))
    out: Path | None = field(default=Path("runs"), metadata=flag(
        "run store (default: runs/)", commands=("run", "eval"), metavar="DIR", always=True,
        per={"eval": {"default": None, "help": "also write metrics.json, generations.jsonl, environment.json here"}}))
    gradient_checkpointing: bool = field(default=False, metadata=flag(  # not part of a run's identity
        "recompute activations in the backward pass: less memory, about a third more time, the same numbers",
        commands=("run",)))
    backend: str = field(default="hf", metadata=flag(  # hashed in `resolve.run_config` when not hf
        'generation backend (default: hf); vllm needs pip install "simu-bench[vllm]" and checks its text against hf '
        "on the first 32 rows (parity in metrics.json)", commands=("run", "eval"), choices=("hf", "vllm")))
    strict: bool = field(default=False, metadata=flag(
        "with --backend vllm: generate with hf instead when any parity row differs", commands=("run", "eval")))
    config_dir: Path | None = field(default=None, metadata=flag(
        "load each method's config from DIR/<method>.yaml instead of the shipped YAML (e.g. the tuned/ folder of "
        "`simu-bench tune`)", commands=("run",), metavar="DIR"))
    overrides: tuple[str, ...] = field(default=(), metadata=flag(
        "override a method config key, e.g. optimizer.lr=1e-5 or simu.options.t=0.3 (repeatable)",
        commands=("run", "tune", "frontier"), name="--set", metavar="KEY=VALUE", repeat=True,
        per={"tune": {"help": "override a key that is not searched, e.g. train.max_steps=10 (repeatable)"}}))
    dtype: str | None = field(default=None, metadata=flag(  # also `train.dtype=D` in `overrides`
        "train every method in this dtype (sets train.dtype; default: each config's, float32; SOUL used bfloat16) "
        "and evaluate the target in it", commands=("run", "tune", "frontier"), choices=DTYPES))
    eval_dtype: str | None = field(default=None, metadata=flag(  # hashed as evaluation.dtype (`resolve`)
        "evaluate in this dtype (default: the dtype the run trained in)", choices=DTYPES, renamed={"eval": "--dtype"},
        per={"eval": {"help": "evaluate the model in this dtype (default: float32; auto: the checkpoint's; the "
                              "official scorer used bfloat16)"}}))
    size: str | None = field(default=None, metadata=flag(  # the model's fingerprint holds the shape
        "shape of the embedded target: tiny (the default), small or medium (see `simu-bench prepare --size`); "
        "not with --model", commands=("run", "tune"), metavar="NAME", check=_size))
    device: str = field(default="cpu", metadata=flag("torch device (default: cpu)"))
    threads: int | None = field(default=None, metadata=flag(  # None: 1 for the embedded target, else torch's
        "torch CPU threads (default: 1 for the embedded target, whose small matrices run fastest on one thread; "
        "otherwise torch's default)", commands=("run", "tune", "frontier"), metavar="N",
        check=positive("number of threads", 1)))
    max_new_tokens: int = field(default=MAX_NEW_TOKENS, metadata=flag(
        f"generation limit per row (default: {MAX_NEW_TOKENS}, as LUME's official scorer; lower only for quick "
        "checks)", metavar="N", check=positive("number of tokens", 256), identity="evaluation.max_new_tokens",
        identity_always=True))
    eval_batch_size: int = field(default=BATCH_SIZE, metadata=flag(
        f"generation batch size (default: {BATCH_SIZE})", metavar="N", check=positive("number", 32),
        identity="evaluation.batch_size", identity_always=True, renamed={"eval": "--batch-size"}))
    eval_every: int | None = field(default=None, metadata=flag(  # hashed in `resolve.run_config` when given
        "also evaluate every K optimizer steps and store trajectory.jsonl per run: step 0, K, 2K, ..., final "
        "(default: off)", commands=("run", "frontier"), metavar="K", check=positive("number of optimizer steps", 10)))
    eval_at: str | None = field(default=None, metadata=flag(  # hashed in `resolve.run_config` when given
        "also evaluate at steps 1, 2, 4, 8, ... (dense early) and store trajectory.jsonl; with --eval-every: both "
        "sets of steps (default: off)", commands=("run", "tune", "frontier"), choices=("log",),
        per={"tune": {"help": "evaluate each trial at steps 1, 2, 4, 8, ...: retain_at_forget then judges every "
                              "point, not only the end (default: the end only)"},
             "frontier": {"default": "log", "help": "the trials' evaluation points: steps 1, 2, 4, 8, ... and the "
                                                    "end (default: log)"}}))
    eval_rows: int | None = field(default=None, metadata=flag(
        "with --eval-every/--eval-at: evaluate the points before the final one on a seeded subset of N forget and N "
        "retain rows (default: all rows)", commands=("run", "tune", "frontier"), metavar="N",
        check=positive("number of rows per split", 32)))
    stop_at_forget: float | None = field(default=None, metadata=flag(  # applied as train.stop_at_forget
        "stop each run at the first evaluation point whose forget score (mean of the 6 raw forget components) is "
        "<= L, in (0, 1); sets train.stop_at_forget; needs --eval-at or --eval-every; unlearn.json records the step "
        "and whether L was reached", commands=("run",), metavar="L", check=_stop_level))
    # question rows stop decoding once their score is decided (`evaluation.decoding`): same scores,
    # shorter stored text; tuning trials always, final evaluations when asked
    fast_decode: bool = field(default=False, metadata=flag(
        "stop decoding each question row once its exact-match score is decided: the same scores, faster, but "
        "generations.jsonl holds shorter text for rows decided wrong (recorded in config.json; hf backend only; "
        "default: the official 256-token decode)", commands=("run",), identity="evaluation.fast_decode"))
    # recompute seed-independent results (SIMU's attribution) instead of reading them from OUT/.cache
    no_cache: bool = field(default=False, metadata=flag(
        "recompute SIMU's attribution instead of reading it from the run store's .cache (every seed and SIMU-mask "
        "method shares it by default)", commands=("run", "tune")))
    workers: int | None = field(default=None, metadata=flag(
        "worker processes that split the runs, one torch thread each (default: one per CPU core for the embedded "
        "target on CPU, else 1)", commands=("run", "tune", "frontier"), metavar="N", parse=parse_workers))
    relearn: int | None = field(default=None, metadata=flag(  # hashed in `resolve.run_config` when given
        f"relearning attack: fine-tune each unlearned model STEPS AdamW steps (lr {LR:g}) on a seeded fraction of "
        "the forget documents, then score the forget rows of the others again; writes relearn.json (default: off)",
        commands=("run", "eval"), metavar="STEPS", check=check_steps))
    relearn_fraction: float = field(default=DEFAULT_FRACTION, metadata=flag(
        f"with --relearn: the fraction of forget documents to fine-tune on, in (0, 1) (default: {DEFAULT_FRACTION})",
        commands=("run", "eval"), metavar="F"))
    reference: str | None = field(default=None, metadata=flag(
        "the model before unlearning (e.g. the target): adds the MIA suite's reference attack, each document's NLL "
        "minus its NLL under this model (default: none)", commands=("eval",), metavar="NAME_OR_PATH"))
    utility_floor: UtilityFloor = field(default=UtilityFloor(), metadata=flag(  # not part of a run's identity
        f"the leaderboard shows and counts runs whose utility is below F x the target's utility (or below V) but "
        f"does not rank them, as the official LUME evaluation discards them (default: {FLOOR_FRACTION}; 0: off)",
        commands=("run",), metavar="F|abs:V", default=str(FLOOR_FRACTION), parse=_floor))
    quiet: bool = field(default=False, metadata=flag(
        "no progress bars, log lines only", per={"eval": {"help": "no progress bar when the embedded data is built"}}))
    command: str = ""  # the canonical command line, written into the run store and the leaderboard

    def cpu_threads(self) -> int | None:
        """Threads to use. The embedded target (under a million parameters) runs fastest on one
        thread: its matrices are too small to split, and a second thread only adds waiting."""
        if self.threads is not None:
            return self.threads
        return 1 if self.model is None and self.device == "cpu" else None


def _trials(value: int, name: str) -> None:
    if value < 1:
        raise UserError(f"{name} {value}: expected a budget of at least 1 trial per method, e.g. {name} 12")


def _level(value: float, name: str) -> None:
    if not 0.0 <= value <= 1.0:
        raise UserError(f"{name} {value}: expected a score between 0 and 1, e.g. 0.2")


@dataclass(frozen=True)
class TunePlan:
    """What `simu-bench tune` was asked to do; `run` carries data, model, overrides and evaluation."""

    run: Plan  # methods, seeds = the dev seeds, out = DIR/trials
    out: Path = field(default=Path("tune"), metadata=flag(
        "output folder (default: tune/)", commands=("tune",), metavar="DIR", always=True))
    trials: int = field(default=12, metadata=flag(
        "trials per method, the same for every method (default: 12)", commands=("tune",), metavar="N",
        check=_trials, always=True))
    dev_seeds: tuple[int, ...] = field(default=(100, 101), metadata=flag(
        "seeds the trials run on; must not overlap --report-seeds (default: 100,101)", commands=("tune",),
        metavar="100,101", default="100,101", parse=parse_seeds, always=True))
    report_seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata=flag(
        "seeds the results are reported on, never tuned on (default: 0,1,2)", commands=("tune",), metavar="0,1,2",
        default="0,1,2", parse=parse_seeds))
    rule: str = field(default="final", metadata=flag(
        "final: best mean final score (default); retain_at_forget: best dev-mean retain at a point (evaluation point "
        "with --eval-at, or the end) with dev-mean forget <= --forget-level", commands=("tune",), choices=RULES,
        always=True))
    forget_level: float = field(default=0.2, metadata=flag(  # flag default None: given or not, see tune_plan_from_args
        "forget level of retain_at_forget (mean of the 6 raw forget components; default: 0.2)", commands=("tune",),
        metavar="L", check=_level, default=None))
    sampler_seed: int = field(default=0, metadata=flag(
        "seed of the TPE sampler (default: 0)", commands=("tune",), metavar="N"))
    utility_floor: UtilityFloor = field(default=UtilityFloor(), metadata=flag(
        f"trials whose utility is below F x the target's utility (or below V) cannot win, as the official LUME "
        f"evaluation discards such models (default: {FLOOR_FRACTION}; 0: off)", commands=("tune",),
        metavar="F|abs:V", default=str(FLOOR_FRACTION), parse=_floor))

    def rule_text(self, target_utility: float | None = None) -> str:
        """The rule in words; with the target's utility, the floor's threshold too."""
        given = self.utility_floor
        shown = given.text(target_utility) if target_utility is not None else given.rule()
        floor = "" if given.off else f"; trials below the {shown} cannot win"
        if self.rule == "final":
            return f"best mean final score over the dev seeds{floor}"
        return (f"best dev-mean retain score at a point (evaluation point or end) with dev-mean forget score <= "
                f"{self.forget_level:g}{floor}")


def add_plan_flags(parser, command: str) -> None:
    """The flags of `command` (run, tune or eval)."""
    add_flags(parser, Plan, command)
    if command == "tune":
        add_flags(parser, TunePlan, command)


def command_line(args, command: str) -> str:
    """The canonical command for these arguments (written into the run store and the leaderboard)."""
    words = command_words(Plan, args, command) + (command_words(TunePlan, args, command) if command == "tune" else [])
    return shlex.join(["simu-bench", command, *words])


def plan_from_args(args, command: str, **given) -> Plan:
    """The checked `Plan` of parsed arguments; `given` sets fields the command decides (tune's seeds and out)."""
    plan = Plan(**{**values_from(Plan, args, command), **given, "command": command_line(args, command)})
    check_plan(plan)
    if plan.dtype:  # --dtype D trains every method in D
        plan = dataclasses.replace(plan, overrides=plan.overrides + (f"train.dtype={plan.dtype}",))
    if plan.stop_at_forget is not None:  # --stop-at-forget L stops every method at L
        plan = dataclasses.replace(plan, overrides=plan.overrides + (f"train.stop_at_forget={plan.stop_at_forget!r}",))
    return plan


def tune_plan_from_args(args) -> TunePlan:
    values = values_from(TunePlan, args, "tune")
    plan = plan_from_args(args, "tune", seeds=values["dev_seeds"], out=values["out"] / "trials")
    overlap = sorted(set(values["dev_seeds"]) & set(values["report_seeds"]))
    if overlap:
        raise UserError(f"--dev-seeds overlaps --report-seeds at {', '.join(map(str, overlap))}: tuning on a "
                        f"reported seed biases the report; choose dev seeds outside "
                        f"{','.join(map(str, values['report_seeds']))}, e.g. 100,101")
    if values["forget_level"] is not None and values["rule"] != "retain_at_forget":
        raise UserError(f"--forget-level {values['forget_level']:g} is the level of --rule retain_at_forget; under "
                        f"--rule {values['rule']} it would be ignored: add --rule retain_at_forget, or leave "
                        "--forget-level out")
    if values["forget_level"] is None:
        values["forget_level"] = TunePlan.forget_level
    return TunePlan(run=plan, **values)


def check_plan(plan: Plan) -> None:
    """The checks that involve more than one flag."""
    if plan.fast_decode and plan.backend != "hf":
        raise UserError(f"--fast-decode works with --backend hf only (it decodes through transformers); drop "
                        f"--fast-decode or use --backend hf (got --backend {plan.backend})")
    if plan.eval_rows is not None and plan.eval_every is None and plan.eval_at is None:
        raise UserError(
            f"--eval-rows {plan.eval_rows} needs --eval-every K or --eval-at log: it sets the rows of the points "
            "evaluated along the way"
        )
    if plan.stop_at_forget is not None and not (plan.eval_every or plan.eval_at):
        raise UserError(f"--stop-at-forget {plan.stop_at_forget:g} needs evaluation points to stop at: add "
                        "--eval-at log or --eval-every K (e.g. --eval-at log --eval-rows 32)")
    if plan.relearn is not None:
        check_fraction(plan.relearn_fraction)
    elif plan.relearn_fraction != DEFAULT_FRACTION:
        raise UserError(
            f"--relearn-fraction {plan.relearn_fraction} needs --relearn STEPS: it sets the documents the relearning "
            "attack fine-tunes on"
        )


@dataclass
class Resolved:
    """A plan after preparation: where data and model are and each run's config."""

    data_dir: Path
    model: str
    configs: dict[tuple[str, int | None], dict] = field(default_factory=dict)
    unlearn_configs: dict[str, object] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # (member NLLs, non-member NLLs) of the target, for the `reference` MIA attack of every method run
    reference_nll: tuple[list[float], list[float]] | None = None
