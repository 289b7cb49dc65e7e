"""The `carve` command line: one entry point (`main`) and one module of subcommands per area."""
