"""Invertible residual networks as learned forward operators for inverse problems."""

__version__ = "0.1.0"
