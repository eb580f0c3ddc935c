"""The stages of a run, each a short function of its inputs, and the runner that skips what is done."""
