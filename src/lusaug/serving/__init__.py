"""Serving: one preprocessing path, an onnxruntime session, the FastAPI app, `lusaug predict`."""
