"""`python -m neo`: the neo command line."""
from neo.main import main

main()
