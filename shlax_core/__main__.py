from shlax_core.cli import main

main()
