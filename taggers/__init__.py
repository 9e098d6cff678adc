"""Taggers: GNN/CNN modules, model architectures, inference backends and the model zoo."""
