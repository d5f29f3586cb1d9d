"""norsparse: train, calibrate, evaluate and publish Norwegian sparse retrieval encoders."""

__version__ = "0.1.0"
