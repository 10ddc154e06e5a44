"""The `cai` command line: one small module per command group."""
