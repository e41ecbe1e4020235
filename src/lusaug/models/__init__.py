"""timm classifiers: construction, checkpoints, training and evaluation."""
