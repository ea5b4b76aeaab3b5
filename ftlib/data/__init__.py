"""Training data: synthetic songs and dataset loading."""
