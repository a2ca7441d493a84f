"""`python -m simu_bench ...`: the `simu-bench` command, as `torchrun` starts it.

    torchrun --nproc_per_node=4 -m simu_bench run --methods so_graddiff --model allenai/OLMo-1B-hf --device cuda
"""

import os
import sys

from simu_bench.cli import main

if __name__ == "__main__":
    code = main()
    if code and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # Under torchrun, fail at once: torchrun stops the other ranks (by a signal) as soon as one
        # exits with an error, and the interpreter's teardown would let a rank refused with the
        # others (`distributed.together`) exit a second after them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
