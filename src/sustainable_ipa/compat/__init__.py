"""The private names of dependencies that no public API replaces, one module per dependency (`optuna_private`,
`ultralytics_private`), each name with why. The rest of the project imports them from here only, and
tests/compat/ checks each against the pinned version, so an upgrade that moves one fails there, naming it."""
