"""Geometry: rotations, detector frame, crystal orientation, sources (all torch, differentiable)."""
