"""Hyperparameter tuning (Optuna), nested per fold: class weights, lr and filter thresholds."""
