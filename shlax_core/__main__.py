from shlax_core.console import main

main()
