"""Training: datasets from the same producers as inference, training loop, metrics, export."""
