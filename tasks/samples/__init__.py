"""Generators of sample inputs (tables, book requests, files) and the emulated sample runs."""
