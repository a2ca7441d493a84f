"""The benchmark run: validate the whole plan before anything is written (`plan`), then run
every stage for each method and seed into the run store (`runner`)."""
