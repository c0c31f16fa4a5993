"""Exchange formats: animation files that other tools read and write."""
