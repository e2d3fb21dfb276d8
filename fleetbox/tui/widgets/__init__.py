"""The TUI's widgets: the status bar, the dialogs, and text helpers for tables and charts."""
