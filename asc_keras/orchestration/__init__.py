r"""Orchestration: one system end to end (\`run\`) and the ablation over seeds, from the stages."""
