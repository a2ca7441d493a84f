"""`python -m simu_bench ...`: the `simu-bench` command, as `torchrun` starts it.

    torchrun --nproc_per_node=4 -m simu_bench run --methods so_graddiff --model allenai/OLMo-1B-hf --device cuda
"""

import sys

from simu_bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
