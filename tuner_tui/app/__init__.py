"""Everything Textual: the app, its screens and widgets, messages, commands and draw pacing."""
