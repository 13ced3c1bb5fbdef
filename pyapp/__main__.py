from pyapp.cli import main

main()
