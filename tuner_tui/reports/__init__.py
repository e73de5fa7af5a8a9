"""What the commands print: Rich tables and progress lines (no Textual)."""
