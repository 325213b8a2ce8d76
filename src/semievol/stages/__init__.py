"""One module per stage of the method, each with one entry function taking a RunContext."""
