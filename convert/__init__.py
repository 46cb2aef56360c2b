"""Model conversion for the server: PyTorch entry points to checked ONNX models in a model repository."""
