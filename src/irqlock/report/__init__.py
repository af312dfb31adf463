"""What users keep and look at: SQLite recordings, console summaries, HTML reports, metrics."""
