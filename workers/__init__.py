"""devicehooks workers: turn queued batches into Events and deliver them to handlers."""
