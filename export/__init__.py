"""Bridge from trained float models to integer networks and interchange files (NIR, netx, ONNX)."""
