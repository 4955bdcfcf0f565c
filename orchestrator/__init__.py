"""Campaign configuration, loop runner, journal store, scheduler and the `labloop` command line."""
