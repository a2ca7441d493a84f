"""Seeds as every command takes them: `0,1,2`, a range `0-19`, or both, each checked to fit numpy."""

from __future__ import annotations

from simu_bench.errors import UserError

MAX_SEED = 2**32 - 1  # numpy's np.random.seed takes 0 .. 2**32 - 1; python and torch take more
MAX_RANGE = 10_000  # seeds one range may name: more is a typo, and would only fill memory with run folders


def parse_seeds(text: str, flag: str = "--seeds") -> tuple[int, ...]:
    """`0,1,2`, a range `0-19` (both ends included), or both (`0-4,10`), in every command."""
    seeds: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            if dash and low.strip():  # a range; "-1" (no low end) is a negative seed, refused below
                low_seed, high_seed = int(low), int(high)
                for seed in (low_seed, high_seed):
                    check_seed(seed, flag)
                if low_seed > high_seed or high_seed - low_seed >= MAX_RANGE:
                    raise UserError(f"{flag} {text!r}: the range {part} must run upwards and name at most "
                                    f"{MAX_RANGE:,} seeds, e.g. {flag} 0-19")
                seeds.extend(range(low_seed, high_seed + 1))
            elif part:
                seeds.append(int(part))
        except ValueError:
            raise UserError(f"{flag} {text!r}: expected comma-separated whole numbers or ranges, "
                            f"e.g. {flag} 0,1,2 or {flag} 0-19") from None
    seeds = list(dict.fromkeys(seeds))
    if not seeds or any(seed < 0 for seed in seeds):
        raise UserError(f"{flag} {text!r}: expected one or more non-negative whole numbers, e.g. {flag} 0,1,2")
    for seed in seeds:
        check_seed(seed, flag)
    return tuple(seeds)


def check_seed(seed: int, flag: str = "--seed") -> None:
    """A seed must fit every generator it seeds: numpy takes 0 .. 2**32 - 1."""
    if not 0 <= seed <= MAX_SEED:
        raise UserError(f"{flag} {seed}: out of range; expected a whole number from 0 to {MAX_SEED:,} (2**32 - 1), "
                        "the range numpy's generator accepts")
