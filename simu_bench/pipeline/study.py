"""A persistent, shareable Optuna study: several `simu-bench frontier` processes split its trials.

The study lives in Optuna's own journal storage under `--out` (`study.journal`: an append-only log
of every ask and tell, written under Optuna's file lock), one study per method. A worker takes
the next trial under a file lock of ours (`<study>.lock`, so two workers never both see room for
one more trial), claims it (`simu_bench.store.claims`: a lock the OS releases when the worker
dies), runs it, and tells the study. A trial left RUNNING by a worker that died is taken over by
the next worker with the same parameters; the trial folder's finished runs are kept. The budget
counts trials that finished (complete or pruned) or run; failed ones do not.

A journal written by another Optuna version is refused (`check_version`): its sampler could
propose other parameters and its format may differ.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from filelock import FileLock
from optuna.storages import JournalStorage

try:
    from optuna.storages.journal import JournalFileBackend as Backend
except ImportError:  # Optuna 3.x names it JournalFileStorage (the same file format)
    from optuna.storages import JournalFileStorage as Backend

from simu_bench.errors import UserError
from simu_bench.files import read_json
from simu_bench.store import claims

JOURNAL = "study.journal"


def differences(path: Path, wanted: dict) -> list[str]:
    """How a folder's recorded plan (`path`, JSON; none yet: no difference) differs from `wanted`,
    one phrase per key; a plan recorded by another Optuna version is refused first."""
    if not path.exists():
        return []
    recorded = read_json(path, expect=dict)
    check_version(recorded.get("optuna"), path)
    return [f"{key} {recorded.get(key)!r} (this command: {value!r})" for key, value in wanted.items()
            if recorded.get(key) != value]


def journal_storage(path: Path):
    """Optuna's JournalStorage on a file: `JournalFileBackend` (Optuna >= 4.0), else the older
    `JournalFileStorage` of the same format."""
    return JournalStorage(Backend(str(path)))


def check_version(recorded: str | None, where: Path) -> None:
    """Refuse a study made with another Optuna version (one line)."""
    if recorded is not None and recorded != optuna.__version__:
        raise UserError(f"{where} was made with Optuna {recorded} and this is Optuna {optuna.__version__}: a study "
                        f"is resumed only with the version that made it; install optuna=={recorded} or use another "
                        "--out")


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """Optuna's TPE, seeded afresh for each trial from (seed, trial number). A TPESampler seeded
    once draws from one random stream per process, so a resumed study (a new process) would draw
    its next start-up trial like trial 0 again, and a trial's parameters would depend on which
    process asked for it. Seeded per trial, trial k's parameters depend only on the seed and the
    trials told before it: a resumed study proposes what an uninterrupted one would."""

    def __init__(self, seed: int, startup_trials: int):
        self.seed, self.startup_trials = seed, startup_trials
        self._tpe = self._for(0)

    def _for(self, number: int):
        seed = (self.seed * 1_000_003 + number) % 2**32
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup_trials)

    def before_trial(self, study, trial) -> None:
        self._tpe = self._for(trial.number)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._tpe.after_trial(study, trial, state, values)


def open_study(folder: Path, name: str, sampler_seed: int, startup_trials: int, pruner: str = "none"):
    """The study `name` in `folder`/study.journal (created or loaded), maximising one value."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder.mkdir(parents=True, exist_ok=True)
    sampler = TrialSeededTPE(sampler_seed, startup_trials)
    chosen = optuna.pruners.SuccessiveHalvingPruner() if pruner == "halving" else optuna.pruners.NopPruner()
    return optuna.create_study(study_name=name, storage=journal_storage(folder / JOURNAL), sampler=sampler,
                               pruner=chosen, direction="maximize", load_if_exists=True)


@dataclass
class Taken:
    """A trial this worker runs: the Optuna trial, its number, parameters and the held claim."""

    trial: object  # optuna.trial.Trial: reports intermediate values to the pruner
    number: int
    params: dict
    claim: object
    resumed: bool  # taken over from a worker that stopped


def next_trial(study, folder: Path, name: str, budget: int, distributions: dict, round_params) -> Taken | None:
    """Under the study's lock: a RUNNING trial whose worker died, else a new trial while the budget
    allows, else None (every trial is done or held by a live worker)."""
    with FileLock(str(folder / f"{name}.lock"), timeout=600):
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state == optuna.trial.TrialState.RUNNING:
                held = claims.claim(claims.claim_path(folder, name, trial.number), f"{name} trial {trial.number}")
                if held.held:
                    live = optuna.trial.Trial(study, trial._trial_id)
                    return Taken(live, trial.number, round_params(trial.params), held, resumed=True)
        counted = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.RUNNING)
        if sum(1 for t in trials if t.state in counted) >= budget:
            return None
        trial = study.ask(distributions)
        held = claims.claim(claims.claim_path(folder, name, trial.number), f"{name} trial {trial.number}")
        return Taken(trial, trial.number, round_params(trial.params), held, resumed=False)


def running(study) -> int:
    """How many of the study's trials some worker is running."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING)


def finished(study) -> list:
    """The study's complete and pruned trials, by number."""
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return sorted((t for t in study.get_trials(deepcopy=False) if t.state in done), key=lambda t: t.number)


def work_through(study, folder: Path, name: str, budget: int, distributions: dict, round_params, run_taken) -> None:
    """Take trials (`next_trial`) and `run_taken(taken)` each under its claim until none is left to
    take; trials other workers are running are left to them (see `finish`)."""
    while (taken := next_trial(study, folder, name, budget, distributions, round_params)) is not None:
        with taken.claim:
            run_taken(taken)


def finish(study, folder: Path, name: str, budget: int, distributions: dict, round_params, run_taken, say,
           poll_s: float = 2.0) -> None:
    """Wait until no trial of the study runs, taking over any whose worker stopped. Polls often (a
    journal read is cheap; a long poll left a worker idle after the others' trials had ended) and
    says so when the count changes."""
    said = None
    while True:
        work_through(study, folder, name, budget, distributions, round_params, run_taken)
        count = running(study)
        if not count:
            return
        if count != said:
            say(f"{name}: waiting for {count} trial(s) other workers run")
            said = count
        time.sleep(poll_s)


def run_studies(work: list[tuple], say) -> None:
    """Every study's trials first (a worker never idles while another study has trials left to
    take), then wait for those other workers run; `work`: `work_through`'s arguments per study."""
    for args in work:
        work_through(*args)
    for args in work:
        finish(*args, say)
