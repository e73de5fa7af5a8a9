"""The commands below the CLI: each takes parsed arguments and returns an exit code (no Textual)."""
