"""Benchmarks of formarket's registry checks against their baselines (`make bench`)."""
