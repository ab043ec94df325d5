"""Coordination recipes with Curator 5.x node layouts (see docs and the README)."""
