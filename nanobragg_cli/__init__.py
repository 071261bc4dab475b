"""nanobragg_cli: nanoBragg.c's diffraction simulator in PyTorch, with the same command line.

Importing the package is cheap (torch is imported only when a simulation runs).
"""

__version__ = "0.1.0"
