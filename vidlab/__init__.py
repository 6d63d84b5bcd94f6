"""vidlab."""
