from recorder.cli import COMMANDS, build_parser


def test_every_subcommand_is_registered():
    parser = build_parser()
    for name in COMMANDS:
        args = parser.parse_args([name] if name not in ("info", "verify") else [name, "x"])
        assert args.command == name
