"""Deployment: exported reward models (ONNX, INT8, half-precision checkpoints) and the scoring
endpoint that serves a model version to an RLHF pipeline."""
