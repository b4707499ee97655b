"""`formarket demo`: the whole journey on one machine, and its parts (`journey` runs them)."""
