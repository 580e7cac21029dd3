"""Repositories: every query lives here. Team-scoped ones take the team at construction and apply it once."""
