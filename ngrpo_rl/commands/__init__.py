"""The subcommands of ``ngrpo-rl`` beyond training, one module each (see ``ngrpo_rl.cli.COMMANDS``)."""
