"""verify-alignment: per-tile checks, shift estimates, pictures."""
