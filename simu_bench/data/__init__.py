"""Stage 1, data: LUME-format files in and out (`lume`), the embedded benchmark's generator
(`synthetic`), seeded subsets of real LUME (`subset`), and forget/retain pairing and tokenising
for training (`pairing`)."""

from simu_bench.data.lume import Document, Example, LumeData, load_lume

__all__ = ["Document", "Example", "LumeData", "load_lume"]
