"""Techniques that trade training compute against inference compute, one family per file."""
