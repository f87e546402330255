"""Plumbing shared by the entry points."""
