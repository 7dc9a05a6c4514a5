from mathverify.cli import cli_main

cli_main()
