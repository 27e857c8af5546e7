"""tools/dev/: developer tools (the libFuzzer driver of the frame parser)."""
