"""The bottom layer every other one may import: the error hierarchy, the timestamp format, stable seeds,
atomic file writes and text made safe for a terminal."""
