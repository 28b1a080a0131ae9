from shlax_core.fastpath import main

main()
