"""The lowest layer: what every app shares (the error family, its HTTP translation)."""
