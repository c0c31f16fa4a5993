"""Exchange formats: files other programs read and write (Live Link Face CSV)."""
