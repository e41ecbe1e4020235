"""Hyperparameter tuning (Optuna) over the classifier's class weights, lr and filter thresholds."""
