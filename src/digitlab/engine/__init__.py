"""Training, evaluation, checkpoints and distributed support."""
