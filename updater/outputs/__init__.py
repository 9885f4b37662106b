"""What a run says: the log, the metrics file, notifications, what to tell people, history."""
