from tfft.cli import run_main

run_main()
