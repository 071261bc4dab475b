"""Numerical and physical constants, each defined once, with nanoBragg.c's values.

``RTD`` is nanoBragg.c's ``180.0*M_1_PI`` (bit for bit ``180/math.pi``); ``DBL_MIN`` is C's
smallest normal double (nanoBragg.c's guard against a division by zero). Units: SI.
"""

RTD = 180.0 * 0.31830988618379067154    # degrees per radian (C: 180.0*M_1_PI)
DBL_MIN = 2.2250738585072014e-308       # C's DBL_MIN
R_E_SQR = 7.94079248018965e-30          # Thomson cross section r_e², m²
AVOGADRO = 6.02214179e23                # 1/mol, nanoBragg.c's value
WATER_F = 2.57                          # structure factor of water (nanoBragg.c's -water term)
WATER_MW = 18.0                         # molecular weight of water, g/mol
