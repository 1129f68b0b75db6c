"""robustlit: robust-by-default training and evaluation for PyTorch Lightning."""

__version__ = "0.1.0"
