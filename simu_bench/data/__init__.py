"""Stage 1, data: LUME-format files in and out (`lume`), the embedded benchmark's generator
(`synthetic`), seeded subsets of real LUME (`subset`), and forget/retain pairing and tokenising
for training (`pairing`)."""
