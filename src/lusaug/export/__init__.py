"""ONNX export of a classifier checkpoint: checked graph, PyTorch parity, int8, MLflow pyfunc."""
