"""One module per driver family; each holds its connection wrapper and database class."""
