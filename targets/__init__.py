"""Runtimes that execute an integer network (Lava first); Lava is imported lazily here only."""
