"""The bottom layer every other one may import: the error hierarchy and the timestamp format."""
