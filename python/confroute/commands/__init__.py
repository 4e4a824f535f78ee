"""One module per `confroute` subcommand: `add_arguments(parser)` and `run(args)`."""
