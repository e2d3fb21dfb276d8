"""The TUI's screens: Queues, Queue detail, Dead letters, Job detail and Alerts."""
