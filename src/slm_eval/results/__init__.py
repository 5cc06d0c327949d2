"""Results on disk: append-only records, summaries and reports."""
