"""The bottom layer every other one may import: the error hierarchy, the timestamp format, stable seeds and
atomic file writes."""
