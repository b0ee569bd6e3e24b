"""Command-line recipes (each registers one `rfmfast` subcommand)."""
