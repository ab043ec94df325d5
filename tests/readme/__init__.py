"""Helpers of tests/test_readme.py."""
