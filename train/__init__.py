"""STBP training in PyTorch: neurons, surrogates, layers, encoders, losses, datasets, trainer."""
