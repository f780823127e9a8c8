"""One module per `btse-recorder` subcommand: HELP, add_arguments(parser), run(args) -> int."""
