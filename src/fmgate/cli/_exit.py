"""The command line's exit codes, for scripts: one module below every subcommand."""

OK = 0
"""Done, and every call succeeded."""
CALLS_FAILED = 1
"""Done, but some calls failed (they are recorded, and in the report)."""
USAGE = 2
"""Bad arguments or configuration, or a call refused before sending: nothing ran."""
NOTHING = 3
"""No records matched: nothing to report."""
INTERRUPTED = 130
