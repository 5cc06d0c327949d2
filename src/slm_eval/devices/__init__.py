"""Device profiles, the sandboxed worker and projections to target devices."""
